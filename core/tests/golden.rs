//! `shared/fixtures/original-golden.json`: values the original ProfileStore wrote. Each one loads
//! with the profile state the fixture README describes (spec §1, §16), and what this engine
//! writes in the same situation has the same shape (spec §1.1; empty tables compared as Luau
//! sees them, job ids, GUIDs and times by role).

use profilestore_core::testing::World;
use profilestore_core::value::{Value, json};
use profilestore_core::*;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/original-golden.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture readable"))
        .expect("fixture is JSON")
}

fn value_of(key: &str) -> Value {
    golden()["keys"][key]["value"].clone()
}

/// A world whose store already holds `key` = the golden value, at the fixture's epoch.
fn world_with(key: &str, seed: u64) -> (World, StoreId) {
    let mut w = World::new(2, seed);
    let store = w.new_store(
        "PlayerData",
        json!({"Coins": 0, "Items": [], "Nested": {"Level": 1}}),
    );
    w.raw_set("PlayerData", key, value_of(key));
    (w, store)
}

/// Empty objects become empty arrays (an empty Luau table is stored as `[]`), lock job ids and
/// GUIDs become their role, and times become "<time>".
fn shape(v: &Value) -> Value {
    fn walk(v: &Value, key: Option<&str>) -> Value {
        match v {
            Value::Object(m) if m.is_empty() => json!([]),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), walk(v, Some(k))))
                    .collect(),
            ),
            Value::Array(a) if key == Some("ActiveSession") => json!([a[0], "<job>", "<guid>"]),
            Value::Array(a) if key == Some("ForceLoadSession") => json!([a[0], "<job>"]),
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, None)).collect()),
            Value::Number(_) if matches!(key, Some("ProfileCreateTime" | "LastUpdate")) => {
                json!("<time>")
            }
            other => other.clone(),
        }
    }
    walk(v, None)
}

#[test]
fn released_loads_with_its_data_user_ids_and_metadata() {
    let (mut w, store) = world_with("released", 1);
    let loaded = w.view(0, store, "released").unwrap();
    assert_eq!(
        loaded.data,
        json!({"Coins": 5, "Items": ["Sword", "Shield"], "Nested": {"Level": 3}, "Ratio": 0.25})
    );
    assert_eq!(loaded.roblox_metadata, json!({"Rank": "Gold"}));
    let p = w.servers[0].engine.profile(loaded.profile).unwrap();
    assert_eq!(
        (
            p.user_ids.clone(),
            p.session_load_count,
            p.first_session_time
        ),
        (vec![101], 1, 1_735_689_600.0)
    );
    assert_eq!(p.session, None);
    assert_eq!(p.kind, ProfileKind::View);
    let p = w
        .start_and_wait(0, store, "released")
        .expect("a released profile is taken at once");
    assert_eq!(
        w.servers[0].engine.profile(p).unwrap().session_load_count,
        2
    );
}

#[test]
fn locked_live_is_asked_for_and_locked_dead_is_taken() {
    let (mut w, store) = world_with("locked_live", 2);
    w.messaging_fail = 1.0;
    assert_eq!(
        w.start_and_wait(0, store, "locked_live"),
        None,
        "still waiting for the owner"
    );
    let v = w.stored("PlayerData", "locked_live").unwrap();
    let job = w.servers[0].engine.identity().job_id.clone();
    assert_eq!(v["MetaData"]["ForceLoadSession"], json!([1001, job]));
    assert_eq!(
        v["MetaData"]["ActiveSession"][2],
        json!("DE788156-C5BD-4E85-B52B-124A9C0A7475")
    );
    let topic = w.journal.iter().find_map(|e| match &e.record {
        profilestore_core::testing::Record::Lost { topic } => Some(topic.clone()),
        _ => None,
    });
    assert_eq!(
        topic.as_deref(),
        Some("PS_DE788156-C5BD-4E85-B52B-124A9C0A7475")
    );

    let (mut w, store) = world_with("locked_dead", 3);
    w.run_until(640.0); // LastUpdate 1735689601 is now more than ASSUME_DEAD old
    // Asked for first, taken at the next poll (`FIRST_LOAD_REPEAT`, 5 s) when nobody answers
    // (spec §19 item 7, docs/DEVIATIONS.md row 7).
    let call = w.start_session(0, store.live(), "locked_dead", StartParams::default());
    w.run_for(5.0);
    assert_eq!(
        w.started_profile(0, call),
        None,
        "asked for, not taken at once"
    );
    w.run_for(1.0);
    let p = w
        .started_profile(0, call)
        .expect("a dead lock is taken at the next poll");
    let profile = w.servers[0].engine.profile(p).unwrap();
    assert_eq!(
        (profile.session_load_count, profile.first_session_time),
        (2, 1_735_689_601.0)
    );
}

#[test]
fn stub_and_pending_messages_are_delivered_at_session_start() {
    for (key, expected) in [
        ("stub", vec![(1, json!({"Gift": "Gem"}))]),
        (
            "pending_messages",
            vec![
                (1, json!({"Amount": 3, "Gift": "Gem"})),
                (2, json!({"Gift": "Crown"})),
            ],
        ),
    ] {
        let (mut w, store) = world_with(key, 4);
        let p = w.start_and_wait(0, store, key).unwrap();
        w.with(0, |e, _| e.add_message_handler(p)).unwrap();
        let got: Vec<(i64, Value)> = w
            .events(0)
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::Message { id, payload, .. } => Some((id, payload)),
                _ => None,
            })
            .collect();
        assert_eq!(got, expected, "{key}");
    }
    let (mut w, store) = world_with("stub", 5);
    let loaded = w.view(0, store, "stub").unwrap();
    assert_eq!(
        loaded.data,
        json!({"Coins": 0, "Items": [], "Nested": {"Level": 1}}),
        "template data"
    );
}

#[test]
fn processed_message_keeps_its_id_counter() {
    let (mut w, store) = world_with("processed_message", 6);
    w.with(0, |e, now| {
        e.message(
            now,
            store.live(),
            "processed_message",
            json!({"Gift": "Next"}),
        )
    })
    .unwrap();
    w.run_for(1.0);
    assert_eq!(
        w.stored("PlayerData", "processed_message").unwrap()["GlobalUpdates"],
        json!([2, [[2, {"Gift": "Next"}]]])
    );
}

#[test]
fn overwritten_values_are_valid_profiles_and_reading_fires_nothing() {
    for key in ["overwritten_active", "overwritten_released"] {
        let (mut w, store) = world_with(key, 7);
        // The template's Data the overwrite stored, read as a profile.
        let view = w.view(0, store, key).expect("a valid profile");
        assert_eq!(
            view.data,
            json!({"Coins": 0, "Items": [], "Nested": {"Level": 1}}),
            "{key}"
        );
        assert!(
            !w.events(0)
                .iter()
                .any(|(_, e)| matches!(e, Event::OnOverwrite { .. }))
        );
    }
    let (mut w, store) = world_with("overwritten_released", 8);
    w.start_and_wait(0, store, "overwritten_released").unwrap();
    assert_eq!(
        w.stored("PlayerData", "overwritten_released").unwrap()["WasOverwritten"],
        json!(false)
    );
}

/// The same situations played on this engine give values of the same shape.
#[test]
fn what_we_write_has_the_originals_shape() {
    let mut w = World::new(1, 9);
    let store = w.new_store(
        "PlayerData",
        json!({"Coins": 0, "Items": [], "Nested": {"Level": 1}}),
    );
    // released
    let p = w.start_and_wait(0, store, "released").unwrap();
    *w.data_mut(0, p) =
        json!({"Coins": 5, "Items": ["Sword", "Shield"], "Nested": {"Level": 3}, "Ratio": 0.25});
    w.with(0, |e, _| e.add_user_id(p, 101.0));
    w.servers[0]
        .host
        .roblox_metadata
        .insert(p, json!({"Rank": "Gold"}));
    w.with(0, |e, now| e.end_session(now, p));
    // locked_live
    let p = w.start_and_wait(0, store, "locked_live").unwrap();
    w.data_mut(0, p)["Coins"] = json!(1);
    w.with(0, |e, now| e.save(now, p)).unwrap();
    // stub and pending_messages
    w.with(0, |e, now| {
        e.message(now, store.live(), "stub", json!({"Gift": "Gem"}))
    })
    .unwrap();
    let p = w.start_and_wait(0, store, "pending_messages").unwrap();
    w.data_mut(0, p)["Coins"] = json!(9);
    w.with(0, |e, now| e.end_session(now, p));
    w.run_for(1.0);
    w.with(0, |e, now| {
        e.message(
            now,
            store.live(),
            "pending_messages",
            json!({"Amount": 3, "Gift": "Gem"}),
        )
    })
    .unwrap();
    w.with(0, |e, now| {
        e.message(
            now,
            store.live(),
            "pending_messages",
            json!({"Gift": "Crown"}),
        )
    })
    .unwrap();
    // processed_message
    w.with(0, |e, now| {
        e.message(
            now,
            store.live(),
            "processed_message",
            json!({"Gift": "Gem"}),
        )
    })
    .unwrap();
    w.run_for(1.0);
    let p = w.start_and_wait(0, store, "processed_message").unwrap();
    w.with(0, |e, _| e.add_message_handler(p)).unwrap(); // processes at once
    w.with(0, |e, now| e.end_session(now, p));
    // overwritten_active and overwritten_released
    w.raw_set("PlayerData", "overwritten_active", json!(["ThisAintRight"]));
    w.raw_set("PlayerData", "overwritten_released", json!(42));
    w.start_and_wait(0, store, "overwritten_active").unwrap();
    let p = w.start_and_wait(0, store, "overwritten_released").unwrap();
    w.with(0, |e, now| e.end_session(now, p));
    w.run_for(2.0);

    let golden = golden();
    for key in [
        "released",
        "locked_live",
        "stub",
        "pending_messages",
        "processed_message",
        "overwritten_active",
        "overwritten_released",
    ] {
        let ours = w.stored("PlayerData", key).unwrap();
        assert_eq!(shape(ours), shape(&golden["keys"][key]["value"]), "{key}");
        let info = &w.store[&("PlayerData".to_string(), key.to_string())].key_info;
        assert_eq!(
            shape(&info.metadata),
            shape(&golden["keys"][key]["metadata"]),
            "{key} metadata"
        );
        assert_eq!(
            json!(info.user_ids),
            golden["keys"][key]["userIds"],
            "{key} user ids"
        );
    }
    let overwrites: Vec<String> = w
        .events(0)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::OnOverwrite { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(overwrites, ["overwritten_active", "overwritten_released"]);
}
