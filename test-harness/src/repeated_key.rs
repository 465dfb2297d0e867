//! The first key a JSON text repeats in one object. Parsed, a repeated key keeps its last
//! value and the other is lost without a word; documents a person edits (exports to import,
//! scenario files) are refused instead, naming the key and where it is, as one of the two is a
//! mistake and nothing says which.

/// The first key of `text` that appears twice in one JSON object, with that object's place in
/// the document (`stores[0].keys`), if any.
pub(crate) fn repeated_key(text: &str) -> serde_json::Result<Option<(String, String)>> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    /// One step into the document: an object's key or an array's index.
    enum Step {
        Key(String),
        Index(usize),
    }
    /// Walks a value, noting the first repeated key; `path` is where the value is.
    struct Walk<'a> {
        path: &'a mut Vec<Step>,
        found: &'a mut Option<(String, String)>,
    }
    fn place(path: &[Step]) -> String {
        // A key written bare (`stores`, `.keys`): a name of letters, digits and `_` (the empty
        // key is no such name: it is `[""]`).
        let bare =
            |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let mut at = String::new();
        for step in path {
            match step {
                Step::Key(k) if !at.is_empty() && bare(k) => at = format!("{at}.{k}"),
                Step::Key(k) if bare(k) => at = k.clone(),
                Step::Key(k) => at = format!("{at}[{k:?}]"),
                Step::Index(i) => at = format!("{at}[{i}]"),
            }
        }
        if at.is_empty() {
            "its top level".to_string()
        } else {
            at
        }
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            loop {
                self.path.push(Step::Index(i));
                let more = seq.next_element_seed(Walk {
                    path: &mut *self.path,
                    found: &mut *self.found,
                })?;
                self.path.pop();
                if more.is_none() {
                    return Ok(());
                }
                i += 1;
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::BTreeSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) && self.found.is_none() {
                    *self.found = Some((place(self.path), key.clone()));
                }
                self.path.push(Step::Key(key));
                map.next_value_seed(Walk {
                    path: &mut *self.path,
                    found: &mut *self.found,
                })?;
                self.path.pop();
            }
            Ok(())
        }
    }

    let (mut path, mut found) = (Vec::new(), None);
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    Walk {
        path: &mut path,
        found: &mut found,
    }
    .deserialize(serde_stacker::Deserializer::new(&mut de))?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::repeated_key;

    /// The place of the object holding a repeated key: bare names joined by dots, other keys
    /// and indexes in brackets; the empty key is `[""]` (it used to vanish, or leave a
    /// trailing dot).
    #[test]
    fn a_repeated_key_is_named_with_its_objects_place() {
        for (text, place) in [
            (r#"{"a": 1, "a": 2}"#, "its top level"),
            (
                r#"{"stores": [{"keys": {"k": 1, "k": 2}}]}"#,
                "stores[0].keys",
            ),
            (r#"{"x y": {"k": 1, "k": 2}}"#, r#"["x y"]"#),
            (r#"{"": {"a": 1, "a": 2}}"#, r#"[""]"#),
            (r#"{"": {"b": {"a": 1, "a": 2}}}"#, r#"[""].b"#),
            (r#"{"v": {"": {"a": 1, "a": 2}}}"#, r#"v[""]"#),
        ] {
            let (at, key) = repeated_key(text).unwrap().expect(text);
            assert_eq!((at.as_str(), key.len()), (place, 1), "{text}");
        }
        assert_eq!(repeated_key(r#"{"a": {"b": 1}, "b": 2}"#).unwrap(), None);
    }
}
