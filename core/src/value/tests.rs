use super::*;

fn samples() -> Vec<serde_json::Value> {
    use serde_json::json as sj;
    vec![
        sj!(null),
        sj!(true),
        sj!(false),
        sj!(0),
        sj!(-7),
        sj!(9),
        sj!(10),
        sj!(i64::MIN),
        sj!(i64::MAX),
        sj!(u64::MAX),
        sj!(2.5),
        sj!(-0.0),
        sj!(1e300),
        sj!(1.0e-7),
        sj!(123456789.125),
        sj!(204.12325343580258),
        sj!(""),
        sj!("plain"),
        sj!("quote \" backslash \\ slash /"),
        sj!("\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f} \u{7f}"),
        sj!("é 日本 🎮"),
        sj!("an escape after the first eight bytes: \" and \\ and \n and \u{1}!"),
        sj!("12345678\"2345678\\2345678\u{1f}2345678 1234567\u{7f}"),
        sj!("ÿÿÿÿÿÿÿÿ\u{80}\u{a0}\u{ff} bytes at and above 0x80 need no escape"),
        sj!([]),
        sj!({}),
        sj!([1, [2, [3, []]], {"a": {}}]),
        sj!({"k\"ey": "v", "Data": {"Ops": ["Player_1:op1", "Player_1:op2"], "n": 3.25}}),
    ]
}

#[test]
fn text_length_and_debug_are_serde_jsons() {
    for s in samples() {
        let v = Value::from(s.clone());
        let text = s.to_string();
        assert_eq!(v.to_string(), text);
        assert_eq!(format!("{v:#}"), format!("{s:#}"));
        assert_eq!(format!("{v:?}"), format!("{s:?}"));
        assert_eq!(v.json_len(), text.len(), "{text}");
        assert_eq!(v.json_len(), text.len(), "measured again: {text}");
        assert_eq!(v.to_serde(), s);
        assert_eq!(v, s);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, v, "{text}");
    }
}

/// Every ASCII byte at every position of strings of 1 to 25 characters of bytes below or at and
/// above 0x80, as a string and as an object key: every escape is counted, wherever it is in or
/// across 8-byte words.
#[test]
fn json_len_counts_escapes_at_every_position() {
    for len in 0..25 {
        for b in 0u8..0x80 {
            for at in 0..=len {
                for filler in ["a", "\u{e9}"] {
                    let mut s: String = filler.repeat(len);
                    let i = s.char_indices().nth(at).map(|(i, _)| i).unwrap_or(s.len());
                    s.insert(i, char::from(b));
                    // As an object key too: objects keep each key's measured length.
                    let mut o = json!({});
                    let map = o.as_object_mut().unwrap();
                    map.insert(s.as_str().into(), Value::Null);
                    assert_eq!(
                        o.json_len(),
                        o.to_string().len(),
                        "key {b:#x} at {at} of {len}"
                    );
                    let v = Value::from(s);
                    assert_eq!(v.json_len(), v.to_string().len(), "{b:#x} at {at} of {len}");
                }
            }
        }
    }
}

#[test]
fn a_copy_is_shared_until_written_and_a_write_changes_only_the_copy() {
    let original = json!({"Data": {"Coins": 5, "Items": ["a", "b"]}, "MetaData": {"Tags": []}});
    let before = original.json_len();
    let mut copy = original.clone();
    let (Value::Object(a), Value::Object(b)) = (&original, &copy) else {
        unreachable!()
    };
    assert!(a.ptr_eq(b));

    copy["Data"]["Items"]
        .as_array_mut()
        .unwrap()
        .push(json!("c"));
    copy["Data"]["Coins"] = json!(6);
    assert_eq!(
        original,
        json!({"Data": {"Coins": 5, "Items": ["a", "b"]}, "MetaData": {"Tags": []}})
    );
    assert_eq!(original.json_len(), before);
    assert_eq!(
        copy,
        json!({"Data": {"Coins": 6, "Items": ["a", "b", "c"]}, "MetaData": {"Tags": []}})
    );
    assert_eq!(copy.json_len(), copy.to_string().len());
    // The untouched branch is still shared.
    let (Value::Object(a), Value::Object(b)) = (&original["MetaData"], &copy["MetaData"]) else {
        unreachable!()
    };
    assert!(a.ptr_eq(b));
}

/// A measured length is forgotten by every kind of write on the way down to the changed value,
/// even when the container is not shared (no copy is made then).
#[test]
fn every_write_forgets_the_measured_length() {
    let mut v = json!({"a": {"b": [1, {"c": "x"}]}});
    let writes: Vec<fn(&mut Value)> = vec![
        |v| v["a"]["b"][1]["c"] = json!("longer"),
        |v| {
            v.get_mut("a")
                .unwrap()
                .get_mut("b")
                .unwrap()
                .as_array_mut()
                .unwrap()
                .clear()
        },
        |v| {
            v.as_object_mut()
                .unwrap()
                .insert("d".into(), json!([true, null]));
        },
        |v| {
            v["a"]
                .as_object_mut()
                .unwrap()
                .values_mut()
                .for_each(|x| *x = json!(12345))
        },
        |v| {
            if let Value::Object(o) = v {
                o.remove("d");
            }
        },
        |v| {
            let taken = v["a"].take();
            v["e"] = taken;
        },
    ];
    for write in writes {
        assert_eq!(v.json_len(), v.to_string().len());
        write(&mut v);
        assert_eq!(v.json_len(), v.to_string().len(), "{v}");
    }
    assert_eq!(v, json!({"a": null, "e": {"b": 12345}}));
}

#[test]
fn indexing_follows_serde_json() {
    let mut v = json!({"a": [10, 20]});
    assert_eq!(v["a"][1], json!(20));
    assert_eq!(v["missing"], Value::Null);
    assert_eq!(v["a"][7], Value::Null);
    assert_eq!(v["a"]["key of an array"], Value::Null);
    assert_eq!(v.get("a").and_then(|a| a.get(0)), Some(&json!(10)));
    let mut null = Value::Null;
    null["x"]["y"] = json!(1);
    assert_eq!(null, json!({"x": {"y": 1}}));
    v["b"] = json!("s");
    assert!(v["b"] == "s" && v["a"][0] == 10 && v["a"][0] == 10.0);
    assert_eq!(v.to_string(), r#"{"a":[10,20],"b":"s"}"#);
}

#[test]
#[should_panic(expected = "cannot access key \"k\" in JSON number")]
fn assigning_a_key_of_a_number_panics_like_serde_json() {
    let mut v = json!(5);
    v["k"] = json!(1);
}

#[test]
fn non_finite_doubles_become_null() {
    assert_eq!(Value::from(f64::NAN), Value::Null);
    assert_eq!(Value::from(f64::INFINITY), Value::Null);
    assert_eq!(Value::from(-0.5), json!(-0.5));
}

/// `push` and `pop` keep a measured length exact without measuring the array again.
#[test]
fn push_and_pop_keep_the_measured_length() {
    let mut v = json!({"Ops": []});
    let shared = v.clone();
    assert_eq!(v.json_len(), 10);
    for i in 0..5 {
        v["Ops"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("op\"{i}")));
        assert_eq!(v.json_len(), v.to_string().len(), "{v}");
    }
    v["Ops"]
        .as_array_mut()
        .unwrap()
        .push(json!({"k": [1, 2.5, null]}));
    assert_eq!(v.json_len(), v.to_string().len(), "{v}");
    while v["Ops"].as_array_mut().unwrap().pop().is_some() {
        assert_eq!(v.json_len(), v.to_string().len(), "{v}");
    }
    assert_eq!(v, json!({"Ops": []}));
    assert_eq!(shared.json_len(), 10);
}

mod map_model {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::{Map, Value};

    #[derive(Clone, Debug)]
    enum Op {
        Insert(String, i64),
        Remove(String),
        Entry(String, i64),
        Retain(i64),
    }

    /// Keys of several lengths that share prefixes, so that ordering and length shortcuts meet:
    /// short ones, ones longer than the eight-byte prefix that share it, NUL bytes (which the
    /// prefix's zero padding must not confuse with the end of a key), keys of nine to twenty
    /// bytes that differ only after the prefix, and non-ASCII text.
    fn key() -> impl Strategy<Value = String> {
        "[ab]{0,3}|[a-z]{4,6}|[a\u{0}é]{0,4}|abcdefg[ab]{0,4}|[ab]{7,10}|abcdefgh[ab\u{0}]{1,12}"
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (key(), any::<i64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            key().prop_map(Op::Remove),
            (key(), any::<i64>()).prop_map(|(k, v)| Op::Entry(k, v)),
            (1i64..5).prop_map(Op::Retain),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            // A fixed seed: every run, CI's too, tries the same cases.
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED),
            ..ProptestConfig::default()
        })]

        /// A `Map` behaves as a `BTreeMap` under any sequence of writes, small (searched front to
        /// back) and large (bisected): same lookups, same order, same JSON text.
        #[test]
        fn a_map_is_a_sorted_map(
            ops in prop::collection::vec(op(), 0..80),
            probes in prop::collection::vec(key(), 0..12),
        ) {
            let mut map = Map::new();
            let mut model: BTreeMap<String, i64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let old = map.insert(k.as_str().into(), Value::from(v));
                        prop_assert_eq!(old.and_then(|o| o.as_i64()), model.insert(k, v));
                    }
                    Op::Remove(k) => {
                        let old = map.remove(&k);
                        prop_assert_eq!(old.and_then(|o| o.as_i64()), model.remove(&k));
                    }
                    Op::Entry(k, v) => {
                        let got = map.entry(k.as_str().into()).or_insert(Value::from(v)).as_i64();
                        prop_assert_eq!(got, Some(*model.entry(k).or_insert(v)));
                    }
                    Op::Retain(m) => {
                        map.retain(|_, v| v.as_i64().is_some_and(|n| n % m != 0));
                        model.retain(|_, n| *n % m != 0);
                    }
                }
                prop_assert_eq!(map.len(), model.len());
                for (k, v) in &model {
                    prop_assert_eq!(map.get(k).and_then(Value::as_i64), Some(*v));
                }
                // Keys that may be absent: no other key is taken for them.
                for k in &probes {
                    prop_assert_eq!(map.get(k).and_then(Value::as_i64), model.get(k).copied());
                }
                let keys: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
                prop_assert_eq!(keys, model.keys().map(String::as_str).collect::<Vec<_>>());
            }
            let text = Value::from(map).to_string();
            prop_assert_eq!(text, serde_json::to_string(&model).unwrap());
        }
    }
}

#[test]
fn objects_built_in_any_order_are_sorted_and_the_last_repeated_key_wins() {
    let parsed: Value = serde_json::from_str(r#"{"b":1,"a":2,"b":3,"c":{"z":1,"y":2}}"#).unwrap();
    assert_eq!(parsed.to_string(), r#"{"a":2,"b":3,"c":{"y":2,"z":1}}"#);
    let serde: serde_json::Value =
        serde_json::from_str(r#"{"b":1,"a":2,"b":3,"c":{"z":1,"y":2}}"#).unwrap();
    assert_eq!(parsed, serde);
    let collected: Map = [("k", 1), ("j", 2), ("k", 3)].into_iter().collect();
    assert_eq!(Value::from(collected), json!({"j": 2, "k": 3}));
}

mod shared_copies {
    use proptest::prelude::*;

    use super::super::Value;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-c\"\\\\\u{1}é]{0,10}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::vec(("[a-d]{1,2}", inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// A write somewhere in `v`, chosen by `path` (each step picks a child), then `edit`.
    fn write(v: &mut Value, path: &[usize], edit: u8, with: &Value) {
        let next = match v {
            Value::Array(a) if !a.is_empty() && !path.is_empty() => {
                let i = path[0] % a.len();
                Some(&mut a[i])
            }
            Value::Object(o) if !o.is_empty() && !path.is_empty() => {
                let i = path[0] % o.len();
                o.values_mut().nth(i)
            }
            _ => None,
        };
        if let Some(child) = next
            && !edit.is_multiple_of(4)
        {
            return write(child, &path[1..], edit / 4, with);
        }
        match (v, edit % 3) {
            (Value::Array(a), 0) => a.push(with.clone()),
            (Value::Array(a), 1) => {
                a.pop();
            }
            (Value::Object(o), 0) => {
                o.insert("new".into(), with.clone());
            }
            (Value::Object(o), 1) => {
                let first = o.keys().next().cloned();
                if let Some(k) = first {
                    o.remove(&k);
                }
            }
            (v, _) => *v = with.clone(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            // A fixed seed: every run, CI's too, tries the same cases.
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED),
            ..ProptestConfig::default()
        })]

        /// Writes to a copy never show in the original or in other copies, and every measured
        /// length stays the length of the text, however the values share structure.
        #[test]
        fn writes_to_copies_stay_in_their_copy(
            original in value(),
            writes in prop::collection::vec(
                (prop::collection::vec(any::<usize>(), 0..5), any::<u8>(), value(), any::<bool>()),
                1..12,
            ),
        ) {
            let text = original.to_string();
            prop_assert_eq!(original.json_len(), text.len());
            let mut copies = vec![original.clone()];
            let mut model: Vec<serde_json::Value> = vec![original.to_serde()];
            for (path, edit, with, fork) in writes {
                if fork {
                    copies.push(copies.last().unwrap().clone());
                    model.push(model.last().unwrap().clone());
                }
                let (copy, expected) = (copies.last_mut().unwrap(), model.last_mut().unwrap());
                let _ = copy.json_len(); // measured before the write, as a stored value is
                let mut serde_copy = Value::from(expected.clone());
                write(copy, &path, edit, &with);
                write(&mut serde_copy, &path, edit, &with);
                *expected = serde_copy.to_serde();
                for (c, m) in copies.iter().zip(&model) {
                    prop_assert_eq!(c, m);
                    prop_assert_eq!(c.json_len(), c.to_string().len());
                    let depth = super::serde_depth(m);
                    prop_assert_eq!(c.depth(), depth);
                    prop_assert!(!c.nested_deeper_than(depth));
                    prop_assert!(depth == 0 || c.nested_deeper_than(depth - 1));
                }
            }
            prop_assert_eq!(original.to_string(), text);
        }
    }
}

/// Formats other than JSON text may hand over 128-bit integers: those that fit are numbers, the
/// others an error (as `serde_json::Value` does).
#[test]
fn wide_integers_deserialize_when_they_fit() {
    use serde::Deserialize;
    use serde::de::IntoDeserializer;
    use serde::de::value::Error;
    let fits = Value::deserialize(IntoDeserializer::<Error>::into_deserializer(-5i128)).unwrap();
    assert_eq!(fits, json!(-5));
    let fits = Value::deserialize(IntoDeserializer::<Error>::into_deserializer(u128::from(
        u64::MAX,
    )));
    assert_eq!(fits.unwrap(), json!(u64::MAX));
    let wide = Value::deserialize(IntoDeserializer::<Error>::into_deserializer(u128::MAX));
    assert!(wide.unwrap_err().to_string().contains("out of range"));
}

#[test]
fn concat_builds_short_and_long_strings() {
    assert_eq!(Str::concat(&["Player_7", ":op", "12"]), "Player_7:op12");
    assert_eq!(Str::concat(&[]), "");
    let long = Str::concat(&["a".repeat(20).as_str(), "é", "bc"]);
    assert_eq!(long.as_str(), format!("{}ébc", "a".repeat(20)));
    assert_eq!(Value::from(long).json_len(), 2 + 20 + 2 + 2);
}

/// How deep `v` nests, counted on `serde_json`'s tree: the reference for [`Value::depth`].
fn serde_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(serde_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(serde_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Depth counts levels of arrays and objects: a scalar is 0 deep, `[]` and `{}` 1.
#[test]
fn depth_counts_levels_of_containers() {
    let cases = [
        ("1", 0),
        ("\"[[\"", 0),
        ("[]", 1),
        ("{}", 1),
        ("[1, 2]", 1),
        ("[[]]", 2),
        (r#"{"a": [1, {"b": []}], "c": {}}"#, 4),
        (r#"[[[1]], {"x": "]]]"}]"#, 3),
    ];
    for (text, depth) in cases {
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v.depth(), depth, "{text}");
        assert_eq!(v.depth(), depth, "measured again: {text}");
        let fresh: Value = serde_json::from_str(text).unwrap();
        assert!(!fresh.nested_deeper_than(depth), "{text}");
        assert_eq!(
            fresh.nested_deeper_than(depth.saturating_sub(1)),
            depth > 0,
            "{text}"
        );
    }
    // A push keeps a measured depth exact; popping the deepest item measures again.
    let mut a = json!([1]);
    assert_eq!(a.depth(), 1);
    a.as_array_mut().unwrap().push(json!([[2]]));
    assert_eq!(a.depth(), 3);
    a.as_array_mut().unwrap().pop();
    assert_eq!(a.depth(), 1);
}

/// `[[...]]` nested `depth` levels, alternating arrays and objects.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for i in 0..depth {
        v = if i % 2 == 0 {
            Value::from(vec![v])
        } else {
            let mut o = json!({});
            o["k"] = v;
            o
        };
    }
    v
}

/// Text nested deeper than `serde_json`'s 128-level parsing limit reads back up to
/// [`MAX_DEPTH`], as deep as a store takes; deeper text is refused with an error naming the
/// limit and where the text passes it, before any of it is parsed (a million levels would
/// overflow the stack of every recursive walk of the value).
#[test]
fn text_reads_back_to_the_depth_limit_and_no_deeper() {
    let v = nested(MAX_DEPTH);
    assert_eq!(v.depth(), 512);
    let text = v.to_string();
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    let back = Value::from_json_text(&text).unwrap();
    assert_eq!(back, v);
    assert_eq!(back.json_len(), text.len());
    assert_eq!(back.depth(), MAX_DEPTH);

    // One more level outside: the innermost `[` (1 + 256 × `{"k":` + 255 × `[`) opens 513.
    let deeper = format!("[{text}]");
    assert_eq!(deeper.rfind('['), Some(1536));
    assert_eq!(
        Value::from_json_text(&deeper).unwrap_err().to_string(),
        "JSON text nests deeper than 512 levels (byte 1536 opens level 513)"
    );
    let million = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    assert_eq!(
        Value::from_json_text(&million).unwrap_err().to_string(),
        "JSON text nests deeper than 512 levels (byte 512 opens level 513)"
    );
    // Brackets inside strings, escaped quotes included, are not levels.
    let in_strings = format!(r#"["{}\"{}", "\\"]"#, "[".repeat(600), "{".repeat(600));
    assert_eq!(Value::from_json_text(&in_strings).unwrap().depth(), 1);
    // Trailing text is still refused, as `serde_json::from_str` refuses it.
    assert!(Value::from_json_text("[1] x").is_err());
    assert!(Value::from_json_text("[[1]").is_err());
}

/// A value built deeper than any text could bring in is found too deep without recursing
/// more than the limit (the check a store makes before measuring it).
#[test]
fn a_value_of_any_depth_is_checked_within_the_limit() {
    // Building and dropping a value this deep recurses once per level: do it on a large stack.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(|| {
            let v = nested(200_000);
            // The check itself on a thread with an ordinary 2 MB stack, which a walk of all
            // 200,000 levels would overflow (the process would abort): it stops at the limit.
            std::thread::scope(|scope| {
                let checked = std::thread::Builder::new()
                    .stack_size(2 << 20)
                    .spawn_scoped(scope, || v.nested_deeper_than(MAX_DEPTH))
                    .unwrap();
                assert!(checked.join().unwrap());
            });
            assert!(v.nested_deeper_than(199_999));
            assert!(!v.nested_deeper_than(200_000));
        })
        .unwrap()
        .join()
        .unwrap();
}
