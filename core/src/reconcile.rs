//! `Profile:Reconcile()` (spec §15): fill missing template fields into `Profile.Data`.

use crate::value::Value;

/// Fills `data` from `template`: for each string-keyed template entry, a missing value is set (a
/// copy); when both are tables the rule recurses; any other existing value is left alone even if
/// its type differs. Array parts are never filled and nothing is removed.
///
/// An empty JSON array in `data` is an empty Luau table, so it is filled like an empty object.
/// A non-empty array where the template has a dictionary is left as it is: the original adds
/// the template's fields beside the array's items, a mixed table with no JSON form that keeps
/// both (`docs/DEVIATIONS.md`, "Reconcile leaves arrays alone").
/// A template entry whose value is JSON null is no entry (a Luau table cannot hold nil), at any
/// level of what is copied.
pub fn reconcile(template: &Value, data: &mut Value) {
    let Some(template) = template.as_object() else {
        return;
    };
    if data.as_array().is_some_and(|a| a.is_empty()) && !template.is_empty() {
        *data = Value::Object(Default::default());
    }
    let Some(target) = data.as_object_mut() else {
        return;
    };
    for (k, tv) in template {
        // A JSON null is an absent field to a Luau reader: the template has nothing there.
        if tv.is_null() {
            continue;
        }
        match target.get_mut(k) {
            None | Some(Value::Null) => {
                target.insert(k.clone(), without_null_fields(tv));
            }
            Some(dv) if crate::wire::is_table(dv) && crate::wire::is_table(tv) => reconcile(tv, dv),
            Some(_) => {}
        }
    }
}

/// A copy of `v` whose objects, at every level (inside arrays too), leave out their null
/// fields (fields a Luau table cannot have).
pub(crate) fn without_null_fields(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), without_null_fields(x)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_null_fields).collect()),
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::json;

    /// The original's test (T:720-735): `{Array = false}` keeps `false` and gains `Counter = 0`.
    #[test]
    fn reconcile_keeps_existing_values_and_fills_missing() {
        let template = json!({"Counter": 0, "Array": [1, 2], "Nested": {"A": 1, "B": {"C": 2}}});
        let mut data = json!({"Array": false, "Nested": {"A": 5, "B": {}}});
        reconcile(&template, &mut data);
        assert_eq!(
            data,
            json!({"Counter": 0, "Array": false, "Nested": {"A": 5, "B": {"C": 2}}})
        );
    }

    /// A null in the template (JSON from a host; a Luau template cannot hold nil) fills nothing:
    /// it used to write `"A": null` into `Data`.
    #[test]
    fn a_null_template_entry_fills_nothing() {
        let mut data = json!({"B": 1});
        reconcile(
            &json!({"A": null, "B": null, "C": {"D": null, "E": {"F": null, "G": 2}}, "L": [{"H": null}]}),
            &mut data,
        );
        assert_eq!(data, json!({"B": 1, "C": {"E": {"G": 2}}, "L": [{}]}));
    }

    #[test]
    fn reconcile_never_fills_array_parts() {
        let mut data = json!({"List": [9]});
        reconcile(&json!({"List": [1, 2, 3]}), &mut data);
        assert_eq!(data, json!({"List": [9]}));
        let mut empty = json!([]);
        reconcile(&json!({"Coins": 0}), &mut empty);
        assert_eq!(empty, json!({"Coins": 0}));
    }

    /// A non-empty array where the template has a dictionary stays an array: filling it would
    /// make a table with both parts, which no JSON value holds.
    #[test]
    fn reconcile_does_not_mix_array_and_dictionary_parts() {
        let mut data = json!({"Inv": [5], "Stats": {"Hp": 3}});
        reconcile(
            &json!({"Inv": {"Count": 0}, "Stats": {"Hp": 1, "Mp": 2}}),
            &mut data,
        );
        assert_eq!(data, json!({"Inv": [5], "Stats": {"Hp": 3, "Mp": 2}}));
    }
}
