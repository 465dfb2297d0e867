//! The behaviour journal of `shared/fixtures/README.md` ("Journal format"): one JSON object per
//! line — calls and returns, committed writes, removals, publishes, signals, and a last `end`
//! line — and the comparison of two journals ("Comparing"): per key, the same sequence of stored
//! values, calls, returns and signals, and per topic the same publishes, at the same times to
//! within one frame; job ids and session GUIDs are compared by role (numbered key by key, in
//! the order they first appear, so that events at one instant on different keys may come in
//! another order), and an empty table may be `{}` or `[]`.

use std::collections::BTreeMap;

use profilestore_core::value::{MAX_DEPTH, Object as Map, Value, json};

/// One journal line.
pub type Line = Value;

/// Parses a `.jsonl` journal: one JSON object per line (blank lines are skipped).
pub fn parse(text: &str) -> Result<Vec<Line>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            // A line holds a stored value two levels down (`{"value": ...}`), and a store keeps
            // values up to MAX_DEPTH levels: serde_json's own limit is 128.
            let line = Value::from_json_text_within(l, MAX_DEPTH + 2)
                .map_err(|e| format!("journal line {}: {e}", i + 1))?;
            if !line.is_object() {
                return Err(format!(
                    "journal line {}: expected a JSON object, found {line}",
                    i + 1
                ));
            }
            Ok(line)
        })
        .collect()
}

/// Writes a journal as `.jsonl` (keys sorted, one object per line).
pub fn render(lines: &[Line]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(&l.to_string());
        out.push('\n');
    }
    out
}

/// Replaces job ids and GUIDs by their role, in order of first appearance.
#[derive(Default)]
struct Roles {
    jobs: BTreeMap<String, usize>,
    guids: BTreeMap<String, usize>,
}

impl Roles {
    fn job(&mut self, s: &str) -> String {
        let n = self.jobs.len();
        format!("<job{}>", self.jobs.entry(s.to_string()).or_insert(n))
    }
    fn guid(&mut self, s: &str) -> String {
        let n = self.guids.len();
        format!("<guid{}>", self.guids.entry(s.to_string()).or_insert(n))
    }

    /// A stored value with lock tags by role and empty tables as `[]`.
    fn value(&mut self, v: &Value, key: Option<&str>) -> Value {
        match v {
            Value::Object(m) if m.is_empty() => json!([]),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), self.value(v, Some(k))))
                    .collect::<Map>(),
            ),
            Value::Array(a) if matches!(key, Some("ActiveSession" | "ForceLoadSession")) => {
                let mut out = a.clone();
                if let Some(job) = a.get(1).and_then(Value::as_str) {
                    out[1] = json!(self.job(job));
                }
                if let Some(guid) = a.get(2).and_then(Value::as_str) {
                    out[2] = json!(self.guid(guid));
                }
                Value::Array(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value(x, None)).collect()),
            other => other.clone(),
        }
    }

    fn topic(&mut self, topic: &str) -> String {
        match topic.strip_prefix("PS_") {
            Some(guid) => format!("PS_{}", self.guid(guid)),
            None => topic.to_string(),
        }
    }
}

/// A journal line reduced to what is compared, with its time.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparable {
    /// Virtual seconds.
    pub t: f64,
    /// Which sequence it belongs to: a key, `"<module>"`, or a topic's publishes
    /// (`"<publish PS_<guid0>>"`).
    pub stream: String,
    /// The line without its time, roles substituted.
    pub body: Value,
}

/// Reduces a journal to comparable lines (the `end` line is dropped), in journal order.
///
/// Roles are numbered stream by stream — keys in name order, then the module's lines, then
/// publishes — each stream in journal order, so events at one instant on different keys may
/// come in either order (the format allows it) without renumbering anything. Publishes form one
/// stream per topic (`<publish PS_<guid0>>`), for the same reason.
pub fn normalise(lines: &[Line]) -> Vec<Comparable> {
    // Each line's kind, stream (for publishes: by topic, substituted below), time and body.
    let mut parsed: Vec<(String, String, f64, Value)> = Vec::new();
    for line in lines {
        let kind = line["type"].as_str().unwrap_or_default().to_string();
        if kind == "end" {
            continue;
        }
        let mut body = line.clone();
        // `parse` admits objects only; anything else has nothing to compare.
        let Some(obj) = body.as_object_mut() else {
            continue;
        };
        let t = obj.remove("t").and_then(|t| t.as_f64()).unwrap_or(0.0);
        let stream = match kind.as_str() {
            "publish" => "<publish>".to_string(),
            _ => obj
                .get("key")
                .and_then(Value::as_str)
                .map_or("<module>".to_string(), str::to_string),
        };
        parsed.push((kind, stream, t, body));
    }
    let rank = |stream: &str| match stream {
        "<publish>" => 2,
        "<module>" => 1,
        _ => 0,
    };
    let mut order: Vec<usize> = (0..parsed.len()).collect();
    order.sort_by(|&a, &b| {
        let (sa, sb) = (&parsed[a].1, &parsed[b].1);
        (rank(sa), sa, a).cmp(&(rank(sb), sb, b))
    });
    let mut roles = Roles::default();
    for i in order {
        let (kind, stream, _, body) = &mut parsed[i];
        let Some(obj) = body.as_object_mut() else {
            continue;
        };
        match kind.as_str() {
            "publish" => {
                let topic = obj
                    .get("topic")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let topic = roles.topic(&topic);
                *stream = format!("<publish {topic}>");
                obj.insert("topic".into(), json!(topic));
            }
            "write" => {
                for field in ["value", "metadata", "userIds"] {
                    if let Some(v) = obj.get(field).cloned() {
                        obj.insert(field.into(), roles.value(&v, None));
                    }
                }
            }
            "signal" => {
                if let Some(data) = obj.get("data").cloned() {
                    obj.insert("data".into(), roles.value(&data, None));
                }
                // Error texts are the DataStore's, not ProfileStore's: compare that an error
                // fired.
                if obj.get("signal").and_then(Value::as_str) == Some("OnError") {
                    obj.insert("message".into(), json!("<error>"));
                }
            }
            _ => {}
        }
    }
    parsed
        .into_iter()
        .map(|(_, stream, t, body)| Comparable {
            t,
            stream,
            body: one_number_form(&body),
        })
        .collect()
}

/// `v` with every integral number written as an integer: Luau numbers are doubles, so 5 and
/// 5.0 are one number however a journal spells it.
fn one_number_form(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 => json!(x as i64),
            _ => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(one_number_form).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), one_number_form(v)))
                .collect::<Map>(),
        ),
        other => other.clone(),
    }
}

/// One difference between two journals.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// The stream (key, `<module>` or a topic's `<publish …>`).
    pub stream: String,
    /// Position in that stream.
    pub index: usize,
    /// What the original did (`None`: nothing more).
    pub expected: Option<(f64, Value)>,
    /// What we did (`None`: nothing more).
    pub actual: Option<(f64, Value)>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |x: &Option<(f64, Value)>| match x {
            Some((t, v)) => format!("t={t:.3} {v}"),
            None => "nothing".to_string(),
        };
        write!(
            f,
            "[{} #{}]\n  original: {}\n  ours:     {}",
            self.stream,
            self.index,
            side(&self.expected),
            side(&self.actual)
        )
    }
}

/// Compares two journals stream by stream; times must agree within `tolerance` seconds.
pub fn compare(expected: &[Line], actual: &[Line], tolerance: f64) -> Vec<Difference> {
    let group = |lines: &[Line]| {
        let mut streams: BTreeMap<String, Vec<Comparable>> = BTreeMap::new();
        for c in normalise(lines) {
            streams.entry(c.stream.clone()).or_default().push(c);
        }
        streams
    };
    let (want, got) = (group(expected), group(actual));
    let mut names: Vec<&String> = want.keys().chain(got.keys()).collect();
    names.sort();
    names.dedup();
    let mut diffs = Vec::new();
    let empty = Vec::new();
    for name in names {
        let (w, g) = (
            want.get(name).unwrap_or(&empty),
            got.get(name).unwrap_or(&empty),
        );
        for i in 0..w.len().max(g.len()) {
            let (a, b) = (w.get(i), g.get(i));
            let same = match (a, b) {
                (Some(a), Some(b)) => a.body == b.body && (a.t - b.t).abs() <= tolerance,
                _ => false,
            };
            if !same {
                diffs.push(Difference {
                    stream: name.clone(),
                    index: i,
                    expected: a.map(|c| (c.t, c.body.clone())),
                    actual: b.map(|c| (c.t, c.body.clone())),
                });
                break; // later lines of a diverged stream say nothing new
            }
        }
    }
    diffs
}

/// A difference from the original that a defect we fixed on purpose explains (issue "harness"
/// §6): the deviation's heading in `docs/DEVIATIONS.md` and the journal stream (key,
/// `<module>` or a topic's `<publish …>`) whose lines it changes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnownDeviation<'a> {
    /// The heading of the deviation in `docs/DEVIATIONS.md`.
    pub deviation: &'a str,
    /// The stream it changes.
    pub stream: &'a str,
}

/// Differences from the original's journals of `shared/fixtures/traces/` that come from a
/// defect we fixed on purpose (`docs/DEVIATIONS.md`), by scenario name: each names the
/// deviation and the journal stream it changes.
pub const KNOWN_DEVIATIONS: &[(&str, KnownDeviation<'static>)] = &[
    // §19 item 7 (row 7): a lock that looks dead is asked for first and taken at the next poll,
    // 5 s later, where the original takes it at once: key `k`'s writes and return move, and the
    // session starts after the scenario's `EndSession` (8 s) has found nothing to end. The
    // topic of the dead session gets the request at 3.3 s and, once the lock is taken, the
    // notice of row 8.
    (
        "assume_dead",
        KnownDeviation {
            deviation: "§19 item 7",
            stream: "k",
        },
    ),
    (
        "assume_dead",
        KnownDeviation {
            deviation: "§19 item 7",
            stream: "<publish PS_<guid0>>",
        },
    ),
    // §19 item 8 (row 8): the start that took the lock tells the session it took it from. In
    // `handoff_steal` the notice is lost like the requests before it, so A still learns at its
    // next auto-save.
    (
        "handoff_steal",
        KnownDeviation {
            deviation: "§19 item 8",
            stream: "<publish PS_<guid0>>",
        },
    ),
];

/// The known deviations of scenario `name` ([`KNOWN_DEVIATIONS`]); none for a scenario that is
/// not one of the fixtures.
pub fn known_deviations(name: &str) -> Vec<KnownDeviation<'static>> {
    KNOWN_DEVIATIONS
        .iter()
        .filter(|(case, _)| *case == name)
        .map(|(_, k)| *k)
        .collect()
}

/// How a comparison's differences split over the known deviations of one case.
#[derive(Debug, Default, PartialEq)]
pub struct Explained<'a> {
    /// Each difference a known deviation explains, with the deviation's name.
    pub named: Vec<(&'a str, Difference)>,
    /// Differences no known deviation explains: a conformance failure.
    pub unexplained: Vec<Difference>,
    /// Known deviations that explain no difference any more: stale entries.
    pub stale: Vec<&'a str>,
}

/// Splits `diffs` over `known`: a difference in a stream a deviation names is that deviation's;
/// the rest are unexplained. A deviation that explains nothing is stale, so the list cannot
/// hide a difference it no longer needs to.
pub fn explain<'a>(diffs: Vec<Difference>, known: &[KnownDeviation<'a>]) -> Explained<'a> {
    let mut out = Explained::default();
    for d in diffs {
        match known.iter().find(|k| k.stream == d.stream) {
            Some(k) => out.named.push((k.deviation, d)),
            None => out.unexplained.push(d),
        }
    }
    out.stale = known
        .iter()
        .filter(|k| {
            !out.named
                .iter()
                .any(|(name, d)| *name == k.deviation && d.stream == k.stream)
        })
        .map(|k| k.deviation)
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_line_must_be_an_object() {
        assert_eq!(parse("{\"type\": \"end\"}\n\n{}\n").unwrap().len(), 2);
        assert_eq!(
            parse("{}\n[]\n").unwrap_err(),
            "journal line 2: expected a JSON object, found []"
        );
        assert_eq!(
            parse("1\n").unwrap_err(),
            "journal line 1: expected a JSON object, found 1"
        );
        assert!(parse("{\n").unwrap_err().starts_with("journal line 1: EOF"));
        assert!(
            normalise(&[json!([]), json!(1)]).is_empty(),
            "not compared, not a panic"
        );
    }

    #[test]
    fn roles_replace_job_ids_guids_and_topics_in_order_of_appearance() {
        let a = vec![
            json!({"type": "write", "t": 1.3, "key": "k", "server": "A", "value": {"MetaData": {"ActiveSession": [1, "job-a", "G-A"], "MetaTags": {}}}}),
            json!({"type": "publish", "t": 2.0, "server": "B", "topic": "PS_G-A", "data": {}}),
        ];
        let b = vec![
            json!({"type": "write", "t": 1.3, "key": "k", "server": "A", "value": {"MetaData": {"ActiveSession": [1, "x", "Y"], "MetaTags": []}}}),
            json!({"type": "publish", "t": 2.01, "server": "B", "topic": "PS_Y", "data": {}}),
        ];
        assert_eq!(compare(&a, &b, 1.0 / 60.0), vec![]);
        let n = normalise(&a);
        assert_eq!(
            n[0].body["value"]["MetaData"]["ActiveSession"],
            json!([1, "<job0>", "<guid0>"])
        );
        assert_eq!(n[1].body["topic"], json!("PS_<guid0>"));
    }

    /// Events at one instant on different keys, or publishes to different topics, may come in
    /// either order: the roles do not depend on it. A job id is still one role across keys.
    #[test]
    fn roles_do_not_depend_on_the_order_of_keys_or_topics() {
        let write = |key: &str, job: &str, guid: &str| json!({"type": "write", "t": 1.3, "key": key, "server": "A", "value": {"MetaData": {"ActiveSession": [1, job, guid]}}});
        let publish = |topic: &str| json!({"type": "publish", "t": 2.0, "server": "B", "topic": topic, "data": {}});
        let a = vec![
            write("k1", "j", "G1"),
            write("k2", "j", "G2"),
            publish("PS_G1"),
            publish("PS_G2"),
        ];
        let b = vec![
            write("k2", "x", "Y2"),
            write("k1", "x", "Y1"),
            publish("PS_Y2"),
            publish("PS_Y1"),
        ];
        assert_eq!(compare(&a, &b, 1.0 / 60.0), vec![]);
        // One server's lock on k1 and another's on k2 is not the same journal.
        let c = vec![
            write("k2", "x", "Y2"),
            write("k1", "z", "Y1"),
            publish("PS_Y2"),
            publish("PS_Y1"),
        ];
        let d = compare(&a, &c, 1.0 / 60.0);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].stream, "k2");
    }

    /// Luau numbers are doubles: a journal writing `5.0` and one writing `5` agree.
    #[test]
    fn integral_numbers_compare_equal_however_written() {
        let write = |coins: Value| json!({"type": "write", "t": 1.3, "key": "k", "server": "A", "value": {"Data": {"Coins": coins, "Half": 0.5}}});
        assert_eq!(
            compare(&[write(json!(5))], &[write(json!(5.0))], 1.0 / 60.0),
            vec![]
        );
        // Everywhere in a line: a lock's PlaceId, a publish's data.
        let lock = |place: Value| json!({"type": "write", "t": 1.3, "key": "k", "server": "A", "value": {"MetaData": {"ActiveSession": [place, "j", "G"]}}});
        let publish = |count: Value| json!({"type": "publish", "t": 2.0, "server": "B", "topic": "PS_G", "data": {"LoadCount": count}});
        assert_eq!(
            compare(
                &[lock(json!(1001)), publish(json!(2))],
                &[lock(json!(1001.0)), publish(json!(2.0))],
                1.0 / 60.0
            ),
            vec![]
        );
        assert_eq!(
            compare(&[write(json!(5))], &[write(json!(6))], 1.0 / 60.0).len(),
            1
        );
    }

    #[test]
    fn a_late_or_different_line_is_reported_once_per_stream() {
        let a = vec![
            json!({"type": "signal", "t": 3.0, "key": "k", "server": "A", "signal": "OnSave"}),
        ];
        let late = vec![
            json!({"type": "signal", "t": 3.1, "key": "k", "server": "A", "signal": "OnSave"}),
        ];
        let d = compare(&a, &late, 1.0 / 60.0);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].stream, "k");
        assert!(d[0].to_string().contains("original: t=3.000"));
        assert_eq!(compare(&a, &[], 0.1)[0].actual, None);
    }

    #[test]
    fn known_deviations_name_their_differences_and_nothing_else() {
        let a = vec![
            json!({"type": "signal", "t": 3.0, "key": "k", "server": "A", "signal": "OnSave"}),
            json!({"type": "signal", "t": 4.0, "key": "j", "server": "A", "signal": "OnSave"}),
        ];
        let b = vec![
            json!({"type": "signal", "t": 3.5, "key": "k", "server": "A", "signal": "OnSave"}),
            json!({"type": "signal", "t": 4.5, "key": "j", "server": "A", "signal": "OnSave"}),
        ];
        let fixed = KnownDeviation {
            deviation: "A save waits for the lock",
            stream: "k",
        };
        let other = KnownDeviation {
            deviation: "Messages are kept",
            stream: "<publish PS_<guid0>>",
        };
        let e = explain(compare(&a, &b, 0.1), &[fixed, other]);
        assert_eq!(e.named.len(), 1);
        assert_eq!(e.named[0].0, "A save waits for the lock");
        assert_eq!(e.named[0].1.stream, "k");
        // The difference in "j" is not hidden by the deviation for "k".
        assert_eq!(e.unexplained.len(), 1);
        assert_eq!(e.unexplained[0].stream, "j");
        assert_eq!(e.stale, vec!["Messages are kept"]);
        assert_eq!(explain(vec![], &[]), Explained::default());
    }

    #[test]
    fn parse_and_render_round_trip() {
        let text = "{\"a\":1,\"type\":\"end\"}\n";
        assert_eq!(render(&parse(text).unwrap()), text);
        assert!(parse("{").unwrap_err().contains("journal line 1"));
        // A value as deep as a store keeps reads back (serde_json alone stops at 128 levels).
        let mut value = json!(1);
        for _ in 0..MAX_DEPTH - 1 {
            value = json!([value]);
        }
        let lines = vec![json!({"type": "write", "t": 1.0, "key": "k", "value": value})];
        assert_eq!(parse(&render(&lines)).unwrap(), lines);
    }
}
