//! The behaviour journal of `shared/fixtures/README.md` ("Journal format"): one JSON object per
//! line — calls and returns, committed writes, removals, publishes, signals, and a last `end`
//! line — and the comparison of two journals ("Comparing"): per key, the same sequence of stored
//! values, calls, returns and signals, and per topic the same publishes, at the same times to
//! within one frame; job ids and session GUIDs are compared by role (numbered key by key, in
//! the order they first appear, so that events at one instant on different keys may come in
//! another order). Two rules are ours: an empty table may be `{}` or `[]` (Luau cannot tell
//! them apart), and an `OnError` text's HTTP status after `502: API Services rejected request
//! with error. ` is not compared (the scenario format does not say which status a fault gives).

use std::collections::BTreeMap;

use profilestore_core::value::{MAX_DEPTH, Object as Map, Str, Value, json};

/// The start of the DataStore's 502 text; the HTTP status after it is the service's own.
const REJECTED: &str = "502: API Services rejected request with error. ";

/// One journal line.
pub type Line = Value;

/// The line types of the format.
const TYPES: [&str; 7] = [
    "call", "return", "write", "remove", "publish", "signal", "end",
];

/// Parses a `.jsonl` journal: one JSON object per line (blank lines are skipped), each with a
/// `type` of the format and a time `t` (seconds, not negative). A file with no line, or with a
/// line of no such type (a scenario file, say), is refused as no journal: compared, it would
/// read as differences; a line without its time is refused, naming it.
pub fn parse(text: &str) -> Result<Vec<Line>, String> {
    let lines = text
        .lines()
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
            if !line["type"].as_str().is_some_and(|t| TYPES.contains(&t)) {
                return Err(format!(
                    "journal line {}: no journal line (its \"type\" is {}, expected one of {})",
                    i + 1,
                    line["type"],
                    TYPES.join(", ")
                ));
            }
            // Every line of the format has its time; one without would be compared at 0 s.
            if !line["t"]
                .as_f64()
                .is_some_and(|t| t.is_finite() && t >= 0.0)
            {
                return Err(format!(
                    "journal line {}: its \"t\" is {}, expected a time in seconds",
                    i + 1,
                    line["t"]
                ));
            }
            Ok(line)
        })
        .collect::<Result<Vec<Line>, String>>()?;
    if lines.is_empty() {
        return Err("no journal: it holds no line".into());
    }
    Ok(lines)
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

/// Reduces a journal to comparable lines, in journal order (the `end` line is a stream of its
/// own, `<end>`: its case and time are compared too).
///
/// Roles are numbered stream by stream — keys in name order, then the module's lines, then
/// publishes — each stream in journal order, so events at one instant on different keys may
/// come in either order (the format allows it) without renumbering anything. Publishes are
/// numbered in one pass, in journal order, after the keys (a topic's GUID usually has its role
/// from a key's lock already), then compared as one stream per topic
/// (`<publish PS_<guid0>>`), so that publishes to different topics may interleave either way.
pub fn normalise(lines: &[Line]) -> Vec<Comparable> {
    // Each line's kind, stream (for publishes: by topic, substituted below), time and body.
    let mut parsed: Vec<(String, String, f64, Value)> = Vec::new();
    for line in lines {
        let kind = line["type"].as_str().unwrap_or_default().to_string();
        let mut body = line.clone();
        // `parse` admits objects only; anything else has nothing to compare.
        let Some(obj) = body.as_object_mut() else {
            continue;
        };
        let t = obj.remove("t").and_then(|t| t.as_f64()).unwrap_or(0.0);
        let stream = match kind.as_str() {
            "publish" => "<publish>".to_string(),
            // The case and the horizon: a journal cut short, or of another case, differs.
            "end" => "<end>".to_string(),
            _ => obj
                .get("key")
                .and_then(Value::as_str)
                .map_or("<module>".to_string(), str::to_string),
        };
        parsed.push((kind, stream, t, body));
    }
    let rank = |stream: &str| match stream {
        "<end>" => 3,
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
            // The HTTP detail of a 502 is the DataStore's (the original's emulator said
            // `HTTP 500` for a fault, then `HTTP 503`): compared up to it, the rest of every
            // error text exactly.
            "signal" if obj.get("signal").and_then(Value::as_str) == Some("OnError") => {
                let message = obj
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if message
                    .strip_prefix(REJECTED)
                    .is_some_and(|rest| rest.starts_with("HTTP "))
                {
                    obj.insert("message".into(), json!(format!("{REJECTED}HTTP <status>")));
                }
            }
            _ => {}
        }
        // Every field of every line (a write's value, a return's data, a signal's message, a
        // publish's payload): lock tags by role, and an empty table as `[]`, which is how the
        // original stores and sends one (fixtures README).
        let fields: Vec<Str> = obj.keys().filter(|f| *f != "topic").cloned().collect();
        for field in fields {
            let v = roles.value(&obj[field.as_str()], Some(field.as_str()));
            obj.insert(field, v);
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

/// A defect we fixed on purpose (`docs/DEVIATIONS.md`) that changes a fixture's journal
/// (issue "harness" §6): the deviation's heading, the streams it changes (key, `<module>` or a
/// topic's `<publish …>`), and the original's journal as the deviation changes it — the
/// original's lines in every other stream, and in those streams exactly what the fixed
/// behaviour does (`test-harness/deviations/<case>.jsonl`), beside the original's trace it
/// edits (`<case>.original.jsonl`, a copy of the fixture's). It applies only to a comparison
/// with that trace. A difference in one of the streams is named only if our journal is the
/// deviation's there; any other is a departure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnownDeviation {
    /// The fixture (scenario name) whose journal it changes.
    pub case: &'static str,
    /// The deviation's rows in `docs/DEVIATIONS.md`'s table, by the spec §19 items its first
    /// column names (`§19 item 8`, `§19 items 7 and 8`).
    pub deviation: &'static str,
    /// The streams it changes.
    pub streams: &'static [&'static str],
    /// The original's journal with the deviation's changes, `.jsonl`.
    pub journal: &'static str,
    /// The original's journal it changes (the fixture's trace), `.jsonl`.
    pub original: &'static str,
}

/// The fixtures of `shared/fixtures/traces/` whose journals a deviation changes.
pub const KNOWN_DEVIATIONS: &[KnownDeviation] = &[
    // §19 item 7 (row 7): a lock that looks dead is asked for first and taken at the next poll,
    // 5 s later, where the original takes it at once: key `k`'s writes and return move, and the
    // session starts after the scenario's `EndSession` (8 s) has found nothing to end, so no
    // release and no signals. The topic of the dead session gets the request at 3.3 s and,
    // once the lock is taken, the notice of row 8.
    KnownDeviation {
        case: "assume_dead",
        deviation: "§19 items 7 and 8",
        streams: &["k", "<publish PS_<guid0>>"],
        journal: include_str!("../deviations/assume_dead.jsonl"),
        original: include_str!("../deviations/assume_dead.original.jsonl"),
    },
    // §19 item 8 (row 8): the start that took the lock tells the session it took it from, once,
    // when it returns (56.8 s). In `handoff_steal` the notice is lost like the requests before
    // it, so A still learns at its next auto-save.
    KnownDeviation {
        case: "handoff_steal",
        deviation: "§19 item 8",
        streams: &["<publish PS_<guid0>>"],
        journal: include_str!("../deviations/handoff_steal.jsonl"),
        original: include_str!("../deviations/handoff_steal.original.jsonl"),
    },
];

/// The deviation that changes fixture `case`'s journal ([`KNOWN_DEVIATIONS`]), if any.
pub fn known_deviation(case: &str) -> Option<&'static KnownDeviation> {
    KNOWN_DEVIATIONS.iter().find(|k| k.case == case)
}

/// How a comparison with the original comes out once a known deviation is taken into account.
#[derive(Debug, Default, PartialEq)]
pub struct Explained {
    /// Differences from the original in the deviation's streams, where our journal is what
    /// the deviation says: each with the deviation's name.
    pub named: Vec<(&'static str, Difference)>,
    /// Differences from the original in streams no deviation changes, or in a deviation's
    /// stream where our journal is not what the deviation says: a conformance failure.
    pub unexplained: Vec<Difference>,
    /// Differences, in the deviation's streams, from the journal the deviation gives (its
    /// `expected` side is that journal's line): a conformance failure.
    pub departures: Vec<Difference>,
    /// The deviation's streams that no longer differ from the original: a stale entry.
    pub stale: Vec<String>,
}

impl Explained {
    /// Whether every difference is the deviation's (stale entries aside).
    pub fn conforms(&self) -> bool {
        self.unexplained.is_empty() && self.departures.is_empty()
    }
}

/// Compares `ours` with the `original` journal (times within `tolerance`), then splits the
/// differences over `known` if `original` is the trace it edits (else every difference is
/// unexplained): see [`Explained`]. Fails if the deviation's journals do not parse, or its
/// journal changes a stream it does not name.
pub fn explain(
    original: &[Line],
    ours: &[Line],
    tolerance: f64,
    known: Option<&KnownDeviation>,
) -> Result<Explained, String> {
    let diffs = compare(original, ours, tolerance);
    let Some(k) = known else {
        return Ok(Explained {
            unexplained: diffs,
            ..Explained::default()
        });
    };
    let unparsed = |e: String| format!("deviation {}: {e}", k.deviation);
    let deviated = parse(k.journal).map_err(unparsed)?;
    let edited = parse(k.original).map_err(unparsed)?;
    if !compare(original, &edited, tolerance).is_empty() {
        return Ok(Explained {
            unexplained: diffs,
            ..Explained::default()
        });
    }
    let mine = |d: &Difference| k.streams.contains(&d.stream.as_str());
    if let Some(d) = compare(&edited, &deviated, tolerance)
        .into_iter()
        .find(|d| !mine(d))
    {
        return Err(format!(
            "deviation {} of {} changes stream {} it does not name",
            k.deviation, k.case, d.stream
        ));
    }
    let mut out = Explained {
        departures: compare(&deviated, ours, tolerance)
            .into_iter()
            .filter(mine)
            .collect(),
        ..Explained::default()
    };
    // A stream where ours is not what the deviation gives is explained by nothing.
    let departed = |d: &Difference| out.departures.iter().any(|x| x.stream == d.stream);
    let mut differing = Vec::new();
    for d in diffs {
        if mine(&d) {
            differing.push(d.stream.clone());
        }
        if mine(&d) && !departed(&d) {
            out.named.push((k.deviation, d));
        } else {
            out.unexplained.push(d);
        }
    }
    out.stale = k
        .streams
        .iter()
        .filter(|s| !differing.iter().any(|d| d == **s))
        .map(|s| format!("{} ({s})", k.deviation))
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_line_must_be_an_object() {
        let two = "{\"type\": \"call\", \"t\": 0}\n\n{\"type\": \"end\", \"t\": 1.5}\n";
        assert_eq!(parse(two).unwrap().len(), 2);
        assert_eq!(
            parse("{\"type\": \"end\", \"t\": 1}\n[]\n").unwrap_err(),
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

    /// An empty Luau table is stored and sent as `[]` (fixtures README): in every field of
    /// every line, not only in writes, an empty object and an empty array agree.
    #[test]
    fn an_empty_table_is_an_empty_array_in_every_line() {
        let lines = |empty: Value| {
            [
                json!({"type": "return", "t": 1.0, "key": "k", "server": "A", "call": "GetAsync", "data": {"Items": empty.clone()}}),
                json!({"type": "signal", "t": 2.0, "key": "k", "server": "A", "signal": "Message", "message": empty.clone()}),
                json!({"type": "publish", "t": 3.0, "server": "A", "topic": "PS_G", "data": {"Extra": empty}}),
            ]
        };
        assert_eq!(
            compare(&lines(json!({})), &lines(json!([])), 1.0 / 60.0),
            vec![]
        );
        // (One difference per stream: the key's, and the topic's.)
        assert_eq!(
            compare(&lines(json!({})), &lines(json!([1])), 1.0 / 60.0).len(),
            2
        );
    }

    /// The `end` line is compared too: a journal cut short, without it or ending at another
    /// time, or one of another case, differs.
    #[test]
    fn the_end_line_is_compared() {
        let end = |case: &str, t: f64| json!({"type": "end", "t": t, "case": case});
        let write = json!({"type": "write", "t": 1.0, "key": "k", "server": "A", "value": 1});
        let full = [write.clone(), end("c", 30.0)];
        assert_eq!(compare(&full, &full, 1.0 / 60.0), vec![]);
        for other in [
            vec![write.clone()],
            vec![write.clone(), end("c", 31.0)],
            vec![write.clone(), end("d", 30.0)],
        ] {
            let found = compare(&full, &other, 1.0 / 60.0);
            assert_eq!(found.len(), 1, "{other:?}");
            assert_eq!(found[0].stream, "<end>");
        }
    }

    /// An `OnError` text is compared up to the HTTP status of a 502 (the service's own: the
    /// original's emulator said 500, then 503); another code or text is a difference.
    #[test]
    fn error_texts_are_compared_up_to_the_http_status() {
        let error = |message: &str| {
            vec![
                json!({"type": "signal", "t": 5.3, "key": "k", "server": "A",
                        "signal": "OnError", "message": message}),
            ]
        };
        let ours = error("502: API Services rejected request with error. HTTP 500 (Internal)");
        let theirs = error("502: API Services rejected request with error. HTTP 503 (Busy)");
        assert_eq!(compare(&theirs, &ours, 1.0 / 60.0), vec![]);
        for other in [
            "501: Can't parse response, data may be corrupted.",
            "502: API Services rejected request with error. Not an HTTP status",
            "",
        ] {
            let found = compare(&theirs, &error(other), 1.0 / 60.0);
            assert_eq!(found.len(), 1, "{other:?}");
        }
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
        let signal = |t: f64, key: &str| json!({"type": "signal", "t": t, "key": key, "server": "A", "signal": "OnSave"});
        let original = vec![signal(3.0, "k"), signal(4.0, "j")];
        let fixed = KnownDeviation {
            case: "c",
            deviation: "A save waits for the lock",
            streams: &["k", "<publish PS_<guid0>>"],
            journal: concat!(
                r#"{"type": "signal", "t": 3.5, "key": "k", "server": "A", "signal": "OnSave"}"#,
                "\n",
                r#"{"type": "signal", "t": 4.0, "key": "j", "server": "A", "signal": "OnSave"}"#,
            ),
            original: concat!(
                r#"{"type": "signal", "t": 3.0, "key": "k", "server": "A", "signal": "OnSave"}"#,
                "\n",
                r#"{"type": "signal", "t": 4.0, "key": "j", "server": "A", "signal": "OnSave"}"#,
            ),
        };
        // As the deviation says in "k", but late in "j": the difference in "j" is not hidden.
        let ours = vec![signal(3.5, "k"), signal(4.5, "j")];
        let e = explain(&original, &ours, 0.1, Some(&fixed)).unwrap();
        assert_eq!(e.named.len(), 1);
        assert_eq!(e.named[0].0, "A save waits for the lock");
        assert_eq!(e.named[0].1.stream, "k");
        assert_eq!(e.unexplained.len(), 1);
        assert_eq!(e.unexplained[0].stream, "j");
        assert!(e.departures.is_empty() && !e.conforms());
        assert_eq!(
            e.stale,
            vec!["A save waits for the lock (<publish PS_<guid0>>)"]
        );
        // Not what the deviation says in "k" either: a departure, and its difference from the
        // original unexplained, not named away.
        let ours = vec![signal(3.8, "k"), signal(4.0, "j")];
        let e = explain(&original, &ours, 0.1, Some(&fixed)).unwrap();
        assert_eq!(e.departures.len(), 1);
        assert_eq!(e.departures[0].expected.as_ref().unwrap().0, 3.5);
        assert_eq!(e.named, vec![]);
        assert_eq!(e.unexplained.len(), 1);
        assert_eq!(e.unexplained[0].actual.as_ref().unwrap().0, 3.8);
        assert!(!e.conforms());
        // Not stale: "k" still differs from the original.
        assert_eq!(
            e.stale,
            vec!["A save waits for the lock (<publish PS_<guid0>>)"]
        );
        // Without a deviation every difference is unexplained.
        let e = explain(&original, &ours, 0.1, None).unwrap();
        assert_eq!((e.unexplained.len(), e.named.len()), (1, 0));
        assert!(explain(&original, &original, 0.1, None).unwrap().conforms());
        // A deviation's journal that changes a stream it does not name is refused.
        let sloppy = KnownDeviation {
            streams: &["j"],
            ..fixed
        };
        let err = explain(&original, &ours, 0.1, Some(&sloppy)).unwrap_err();
        assert_eq!(
            err,
            "deviation A save waits for the lock of c changes stream k it does not name"
        );
        // Compared with another journal than the one it edits, it names nothing.
        let other = vec![signal(3.5, "k"), signal(4.0, "j")];
        let e = explain(&other, &ours, 0.1, Some(&fixed)).unwrap();
        assert_eq!(
            (e.unexplained.len(), e.named.len(), e.departures.len()),
            (1, 0, 0)
        );
    }

    #[test]
    fn parse_and_render_round_trip() {
        let text = "{\"a\":1,\"t\":2.5,\"type\":\"end\"}\n";
        assert_eq!(render(&parse(text).unwrap()), text);
        assert!(parse("{").unwrap_err().contains("journal line 1"));
        // What is no journal is refused, not compared into differences: nothing, a line of
        // no type (a scenario file), a type the format does not have.
        for (text, said) in [
            ("", "no journal: it holds no line"),
            ("\n  \n", "no journal: it holds no line"),
            (
                "{\"name\": \"lifecycle\"}",
                "journal line 1: no journal line (its \"type\" is null, expected one of call, \
                 return, write, remove, publish, signal, end)",
            ),
            (
                "{\"type\": \"end\", \"t\": 1}\n{\"type\": \"warn\"}",
                "journal line 2: no journal line (its \"type\" is \"warn\", expected one of call, \
                 return, write, remove, publish, signal, end)",
            ),
            // A line without its time (it was compared as if at 0 s).
            (
                "{\"type\": \"end\"}",
                "journal line 1: its \"t\" is null, expected a time in seconds",
            ),
            (
                "{\"type\": \"call\", \"t\": 1}\n{\"type\": \"write\", \"t\": \"12.5\"}",
                "journal line 2: its \"t\" is \"12.5\", expected a time in seconds",
            ),
            (
                "{\"type\": \"end\", \"t\": -1}",
                "journal line 1: its \"t\" is -1, expected a time in seconds",
            ),
        ] {
            assert_eq!(parse(text), Err(said.to_string()), "{text:?}");
        }
        // A value as deep as a store keeps reads back (serde_json alone stops at 128 levels).
        let mut value = json!(1);
        for _ in 0..MAX_DEPTH - 1 {
            value = json!([value]);
        }
        let lines = vec![json!({"type": "write", "t": 1.0, "key": "k", "value": value})];
        assert_eq!(parse(&render(&lines)).unwrap(), lines);
    }
}
