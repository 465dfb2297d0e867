//! Messages (spec §10), pinned against `shared/fixtures/traces/messages.jsonl`: delivery after the
//! nudged save, removal at the next save, stubs delivered at session start, fall-through between
//! handlers, persistence across sessions, view profiles processing messages.

use profilestore_core::testing::{Record, World};
use profilestore_core::value::json;
use profilestore_core::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

fn deliveries(
    w: &World,
    s: usize,
) -> Vec<(
    f64,
    ProfileId,
    i64,
    profilestore_core::value::Value,
    Delivery,
)> {
    w.events(s)
        .into_iter()
        .filter_map(|(t, e)| match e {
            Event::Message {
                profile,
                id,
                payload,
                to,
            } => Some((t, profile, id, payload, to)),
            _ => None,
        })
        .collect()
}

#[test]
fn messages_fixture_timeline() {
    let mut w = World::new(2, 21);
    let store = w.new_store("PlayerData", json!({"Coins": 0}));
    w.run_until(1.0);
    let call = w.start_session(0, store.live(), "k", StartParams::default());
    w.run_until(2.0);
    let p = w.started_profile(0, call).unwrap();
    assert_eq!(w.with(0, |e, _| e.add_message_handler(p)), Ok(true));
    w.run_until(10.0);
    let m1 = w
        .with(1, |e, now| {
            e.message(now, store.live(), "k", json!({"Gift": "Sword"}))
        })
        .unwrap();
    w.run_until(20.0);
    let m2 = w
        .with(1, |e, now| {
            e.message(now, store.live(), "offline", json!({"Gift": "Shield"}))
        })
        .unwrap();
    w.run_until(25.0);
    let c2 = w.start_session(0, store.live(), "offline", StartParams::default());
    w.run_until(26.0);
    let p2 = w.started_profile(0, c2).unwrap();
    assert_eq!(w.with(0, |e, _| e.add_message_handler(p2)), Ok(true));
    w.run_until(30.0);
    w.with(0, |e, now| e.end_session(now, p2));
    w.with(0, |e, now| e.end_session(now, p));
    w.run_until(45.0);

    let (t, c) = w.completion(1, m1).unwrap();
    assert!(close(t, 10.3));
    assert_eq!(c, Completion::Message { call: m1, ok: true });
    let writes = w.writes("k");
    assert_eq!(
        writes[1].2["GlobalUpdates"],
        json!([1, [[1, {"Gift": "Sword"}]]])
    );
    let publish = w.journal.iter().find_map(|e| match &e.record {
        Record::Output(Output::Messaging(MessagingRequest::Publish { topic, data }))
            if e.server == 1 =>
        {
            Some((e.t, topic.clone(), data.clone()))
        }
        _ => None,
    });
    let guid = writes[0].2["MetaData"]["ActiveSession"][2]
        .as_str()
        .unwrap();
    assert_eq!(
        publish,
        Some((10.3, format!("PS_{guid}"), json!({"LoadCount": 1})))
    );

    // A saves at 10.5 (nudged), sees the message in the returned value and delivers it at 10.8.
    let d = deliveries(&w, 0);
    assert_eq!(d.len(), 2);
    assert!(close(d[0].0, 10.8));
    assert_eq!(
        (d[0].1, d[0].2, &d[0].3, d[0].4),
        (p, 1, &json!({"Gift": "Sword"}), Delivery::AllHandlers)
    );
    assert_eq!(
        writes[2].2["GlobalUpdates"],
        json!([1, [[1, {"Gift": "Sword"}]]]),
        "removed only at the next save"
    );
    // The stub, then the session that finds it, and the handler replaying it at registration.
    let (t, _) = w.completion(1, m2).unwrap();
    assert!(close(t, 20.3));
    assert_eq!(
        w.writes("offline")[0].2,
        json!({"GlobalUpdates": [1, [[1, {"Gift": "Shield"}]]]})
    );
    assert_eq!(
        (d[1].1, d[1].2, &d[1].3, d[1].4),
        (p2, 1, &json!({"Gift": "Shield"}), Delivery::Handler(0))
    );
    assert_eq!(
        w.writes("offline")[1].2["MetaData"]["ProfileCreateTime"],
        json!(1735689625)
    );
    // Final saves at 30.3 remove both processed messages; the id counter stays.
    for key in ["k", "offline"] {
        let (t, _, v) = w.writes(key).last().unwrap().clone();
        assert!(close(t, 30.3));
        assert_eq!(v["GlobalUpdates"], json!([1, []]));
    }
}

/// Spec §10.2–10.3: with two handlers, each new message is one `AllHandlers` delivery (the
/// host walks the handlers and stops at the first that processes it: the fall-through is the
/// host's); a handler registered later is given the unprocessed ones only; a message left
/// unprocessed stays stored and is replayed to the next session's handler.
#[test]
fn one_delivery_per_message_for_all_handlers_and_unprocessed_messages_persist() {
    let mut w = World::new(2, 22);
    w.servers[0].auto_process_messages = false;
    let store = w.new_store("S", json!({}));
    // MessagingService nudges are ignored while os.clock() <= 6 (spec §10.4).
    w.run_until(7.0);
    let call = w.start_session(0, store.live(), "k", StartParams::default());
    w.run_for(1.0);
    let p = w.started_profile(0, call).unwrap();
    w.with(0, |e, _| e.add_message_handler(p)).unwrap();
    w.with(0, |e, _| e.add_message_handler(p)).unwrap();
    w.with(1, |e, now| {
        e.message(now, store.live(), "k", json!({"n": 1}))
    })
    .unwrap();
    w.run_for(7.0);
    w.with(1, |e, now| {
        e.message(now, store.live(), "k", json!({"n": 2}))
    })
    .unwrap();
    w.run_for(7.0);
    // The two messages are delivered once each, to all handlers (the host stops at the first
    // handler that processes synchronously). The host processes only message 2.
    let d = deliveries(&w, 0);
    assert_eq!(
        d.iter().map(|x| (x.2, x.4)).collect::<Vec<_>>(),
        [(1, Delivery::AllHandlers), (2, Delivery::AllHandlers)]
    );
    w.with(0, |e, _| e.message_processed(p, 2)).unwrap();
    // A handler registered now is given what is not processed (spec §10.3): message 1, not
    // message 2, which a handler processed though no save has removed it yet.
    w.with(0, |e, _| e.add_message_handler(p)).unwrap();
    let replayed: Vec<_> = deliveries(&w, 0)[2..].iter().map(|x| (x.2, x.4)).collect();
    assert_eq!(replayed, [(1, Delivery::Handler(2))]);
    w.with(0, |e, now| e.end_session(now, p));
    w.run_for(1.0);
    assert_eq!(
        w.stored("S", "k").unwrap()["GlobalUpdates"],
        json!([2, [[1, {"n": 1}]]])
    );
    // Next session (other server): the unprocessed message is replayed to a new handler.
    let call = w.start_session(1, store.live(), "k", StartParams::default());
    w.run_for(1.0);
    let p1 = w.started_profile(1, call).unwrap();
    w.with(1, |e, _| e.add_message_handler(p1)).unwrap();
    let d = deliveries(&w, 1);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].2, &d[0].3, d[0].4),
        (1, &json!({"n": 1}), Delivery::Handler(0))
    );
}

#[test]
fn view_profile_processes_messages_and_set_async_clears_them() {
    let mut w = World::new(1, 23);
    let store = w.new_store("S", json!({"Coins": 0}));
    w.with(0, |e, now| {
        e.message(now, store.live(), "k", json!({"Coins": 5}))
    })
    .unwrap();
    w.run_for(1.0);
    let view = w.view(0, store, "k").expect("a view profile");
    assert_eq!(
        view.data,
        json!({"Coins": 0}),
        "a stub reads as a template profile"
    );
    w.with(0, |e, _| e.add_message_handler(view.profile))
        .unwrap();
    assert_eq!(deliveries(&w, 0).len(), 1);
    w.data_mut(0, view.profile)["Coins"] = json!(5);
    let call = w.with(0, |e, now| e.set_async(now, view.profile)).unwrap();
    w.run_for(1.0);
    assert_eq!(
        w.completion(0, call).unwrap().1,
        Completion::SetAsync { call, ok: true }
    );
    let v = w.stored("S", "k").unwrap();
    assert_eq!(v["GlobalUpdates"], json!([1, []]));
    assert_eq!(v["Data"], json!({"Coins": 5}));
}

#[test]
fn profileservice_entries_are_readable() {
    let mut w = World::new(1, 24);
    let store = w.new_store("S", json!({}));
    // A ProfileService value with a legacy lock (2 elements) held by a dead server and a legacy
    // update entry [id, version, locked, data].
    w.raw_set(
        "S",
        "k",
        json!({"Data": {"Gold": 3}, "MetaData": {"ProfileCreateTime": 1000, "SessionLoadCount": 9,
               "ActiveSession": [5, "ps-job"], "LastUpdate": 1000, "MetaTags": {}, "PSExtra": 1},
               "GlobalUpdates": [4, [[4, 1, false, {"Gift": "Legacy"}]]], "RobloxMetaData": {}, "UserIds": [1]}),
    );
    let call = w.start_session(0, store.live(), "k", StartParams::default());
    // Asked for first, taken at the next poll 5 s later (docs/DEVIATIONS.md row 7).
    w.run_for(6.0);
    let p = w
        .started_profile(0, call)
        .expect("legacy dead lock is taken");
    let profile = w.servers[0].engine.profile(p).unwrap();
    assert_eq!(profile.session_load_count, 10);
    assert_eq!(profile.user_ids, vec![1]);
    w.with(0, |e, _| e.add_message_handler(p)).unwrap();
    let d = deliveries(&w, 0);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].2, &d[0].3), (4, &json!({"Gift": "Legacy"})));
    let v = w.stored("S", "k").unwrap();
    assert_eq!(
        v["MetaData"]["PSExtra"],
        json!(1),
        "unknown MetaData fields survive"
    );
    // No publish to a legacy lock: it has no GUID topic (spec §1.6).
    assert!(!w.journal.iter().any(|e| matches!(
        e.record,
        Record::Output(Output::Messaging(MessagingRequest::Publish { .. }))
    )));
}

/// A JSON null is nil to a Luau reader (spec §1.6 reads the payload as an entry's last
/// element): `[3, {"Coins": 5}, null]` carries `{"Coins": 5}`, and `[4, null]`, an id with
/// nothing after it, is kept but never delivered (docs/DEVIATIONS.md row 18). Delivering the
/// null instead, and removing the entry once processed, lost the message unseen.
#[test]
fn trailing_nulls_in_a_stored_message_are_nothing() {
    let mut w = World::new(1, 25);
    let store = w.new_store("S", json!({}));
    w.raw_set(
        "S",
        "k",
        json!({"Data": {}, "MetaData": {"ProfileCreateTime": 1000, "SessionLoadCount": 1,
               "MetaTags": {}}, "GlobalUpdates": [4, [[3, {"Coins": 5}, null], [4, null]]]}),
    );
    let p = w.start_and_wait(0, store, "k").expect("session started");
    w.with(0, |e, _| e.add_message_handler(p)).unwrap();
    let d = deliveries(&w, 0);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].2, &d[0].3), (3, &json!({"Coins": 5})));
    // The handler processed it: the next save removes it and keeps the undeliverable entry.
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_for(1.0);
    assert_eq!(
        w.stored("S", "k").unwrap()["GlobalUpdates"],
        json!([4, [[4, null]]])
    );
}

#[test]
fn message_queue_keeps_the_newest_max_message_queue_entries() {
    let mut w = World::new(1, 25);
    let store = w.new_store("S", json!({}));
    w.with(0, |e, _| e.set_constant("MAX_MESSAGE_QUEUE", 2.0))
        .unwrap();
    for n in 1..=3 {
        w.with(0, |e, now| {
            e.message(now, store.live(), "k", json!({"n": n}))
        })
        .unwrap();
    }
    w.run_for(2.0);
    assert_eq!(
        w.stored("S", "k").unwrap()["GlobalUpdates"],
        json!([3, [[2, {"n": 2}], [3, {"n": 3}]]])
    );
    let warned = w.events(0).into_iter().any(|(_, e)| {
        matches!(e, Event::Warn { message } if message.contains("MAX_MESSAGE_QUEUE reached (STORE:S; KEY:k): the 1 oldest message(s) were dropped"))
    });
    assert!(warned, "dropping is not silent");
}

/// A key whose message counter has no id left above it (2^53, where adding 1 gives it back;
/// only another tool writes such a counter) cannot give a new message a fresh id (spec §10.1: ids strictly increase; the original
/// repeats the last one): `MessageAsync` returns false at once with a warning naming the key,
/// nothing is written, and the call does not retry.
#[test]
fn a_message_with_no_id_left_fails_at_once_and_writes_nothing() {
    let mut w = World::new(1, 26);
    let store = w.new_store("S", json!({}));
    let stored = json!({"Data": {"Coins": 1}, "MetaData": {"ProfileCreateTime": 1, "SessionLoadCount": 1, "MetaTags": {}},
                        "GlobalUpdates": [9_007_199_254_740_992_i64, [[3, {"Gift": "old"}]]]});
    w.raw_set("S", "k", stored.clone());
    let call = w
        .with(0, |e, now| {
            e.message(now, store.live(), "k", json!({"Gift": "new"}))
        })
        .unwrap();
    w.run_for(60.0);
    assert_eq!(
        w.completion(0, call).map(|(_, c)| c),
        Some(Completion::Message { call, ok: false })
    );
    assert_eq!(w.stored("S", "k"), Some(&stored), "nothing was written");
    assert_eq!(
        w.warnings(0, "MessageAsync"),
        vec![
            "[ProfileStore]: MessageAsync (STORE:S; KEY:k) failed: no message id is left above \
             the key's message counter (9007199254740992)"
                .to_string()
        ]
    );
    // The engine refused it itself: no DataStore error, nothing towards critical state.
    assert_eq!(w.warnings(0, "DataStore API error"), Vec::<String>::new());
    assert!(
        !w.events(0)
            .iter()
            .any(|(_, e)| matches!(e, Event::OnError { .. })),
        "{:?}",
        w.events(0)
    );
}

#[test]
fn messaging_reactions_are_rate_limited_to_one_per_six_seconds() {
    let mut w = World::new(2, 26);
    let store = w.new_store("S", json!({}));
    w.run_until(7.0);
    let call = w.start_session(0, store.live(), "k", StartParams::default());
    w.run_for(1.0);
    let p = w.started_profile(0, call).unwrap();
    w.with(0, |e, _| e.add_message_handler(p)).unwrap();
    let saves_before = w
        .events(0)
        .iter()
        .filter(|(_, e)| matches!(e, Event::OnSave { .. }))
        .count();
    let saves = |w: &World| {
        w.events(0)
            .iter()
            .filter(|(_, e)| matches!(e, Event::OnSave { .. }))
            .count()
            - saves_before
    };
    let send = |w: &mut World, n: i64| {
        w.with(1, |e, now| {
            e.message(now, store.live(), "k", json!({"n": n}))
        })
        .unwrap();
    };
    // Messages from server 1 five seconds apart: the second nudge, 5 s after the first one
    // the session reacted to, is ignored (spec §10.4: more than 6 s must have passed)...
    send(&mut w, 1);
    w.run_for(5.0);
    send(&mut w, 2);
    w.run_for(1.0);
    assert_eq!(saves(&w), 1);
    assert_eq!(deliveries(&w, 0).len(), 1);
    // ... but not lost: it is in GlobalUpdates, and the save the next nudge (6.5 s after the
    // first) brings delivers it.
    w.run_for(0.5);
    send(&mut w, 3);
    w.run_for(2.0);
    assert_eq!(saves(&w), 2);
    assert!(w.servers[0].engine.is_active(p));
    let ids: Vec<i64> = deliveries(&w, 0).iter().map(|d| d.2).collect();
    assert_eq!(ids, [1, 2, 3]);
}

/// `processed()` only for a message the handlers were given: a wrong id, or a message waiting
/// for a handler, is refused with the id named, and the next save keeps it in the queue (it
/// used to be removed from the DataStore unhandled).
#[test]
fn processed_for_a_message_not_delivered_is_refused() {
    let mut w = World::new(2, 27);
    w.servers[0].auto_process_messages = false;
    let store = w.new_store("S", json!({}));
    // Message 1 is stored before the session starts: the start loads it (spec §10.2), and it
    // waits for a handler.
    w.with(1, |e, now| {
        e.message(now, store.live(), "k", json!({"Gift": 1}))
    })
    .unwrap();
    w.run_for(2.0);
    let p = w.start_and_wait(0, store, "k").expect("session started");
    w.run_for(7.0);
    let not_delivered = |id: i64| ApiError::MessageNotDelivered { profile: p.0, id };
    // No handler yet: message 1 waits for one.
    assert_eq!(deliveries(&w, 0).len(), 0);
    assert_eq!(
        w.with(0, |e, _| e.message_processed(p, 1)),
        Err(not_delivered(1))
    );
    w.with(0, |e, _| e.add_message_handler(p)).unwrap();
    assert_eq!(
        deliveries(&w, 0).len(),
        1,
        "delivered as the handler registers"
    );
    assert_eq!(
        w.with(0, |e, _| e.message_processed(p, 9)),
        Err(not_delivered(9))
    );
    assert_eq!(
        not_delivered(9).to_string(),
        format!(
            "[ProfileStore]: message 9 was not delivered to profile {}'s handlers: not marked processed",
            p.0
        )
    );
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_for(1.0);
    assert_eq!(
        w.stored("S", "k").unwrap()["GlobalUpdates"],
        json!([1, [[1, {"Gift": 1}]]]),
        "the refused ids removed nothing"
    );
    // Delivered by the handler's registration, message 1 can be processed: the next save
    // removes it.
    w.with(0, |e, _| e.message_processed(p, 1)).unwrap();
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_for(1.0);
    assert_eq!(w.stored("S", "k").unwrap()["GlobalUpdates"], json!([1, []]));
}

/// `Engine::op_call` names the API call an operation in flight serves: a `MessageAsync`'s
/// write, not a session start's; and nothing once the operation is answered.
#[test]
fn an_operation_in_flight_names_its_call() {
    let mut e = profilestore_core::testing::engine("job", 1);
    let store = e.new_store("PlayerData", json!({})).unwrap();
    let now = Now {
        mono: 10.0,
        wall: 1_735_689_600,
    };
    let start = e
        .start_session(now, store.live(), "a", StartParams::default())
        .unwrap();
    let message = e
        .message(now, store.live(), "b", json!({"Gift": "g"}))
        .unwrap();
    let mut ops = Vec::new();
    while let Some(output) = e.poll_output() {
        if let Output::DataStore(request) = output {
            ops.push((request.key.to_string(), request.op));
        }
    }
    let calls: Vec<_> = ops
        .iter()
        .map(|(k, op)| (k.clone(), e.op_call(*op)))
        .collect();
    assert_ne!(start, message);
    assert_eq!(
        calls,
        [("a".to_string(), None), ("b".to_string(), Some(message))]
    );
    let (_, op) = ops[1];
    let failed = Err(DataStoreError {
        message: "502: API Services rejected request".into(),
    });
    let mut live = profilestore_core::testing::Host::default();
    e.handle_datastore_response(now, op, failed, &mut live)
        .unwrap();
    assert_eq!(e.op_call(op), None);
}
