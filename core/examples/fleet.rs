//! Two simulated servers share one DataStore on a virtual clock: a player's session on server A,
//! a hand-off to server B through MessagingService (≈5 s), then a steal back when B stops
//! answering (≈45 s). Prints every signal, write and publish as a JSON line, then a summary.
//!
//! `cargo run --release -p profilestore-core --example fleet`

use profilestore_core::testing::{Record, World};
use profilestore_core::value::{Value, json};
use profilestore_core::*;

fn line(w: &World, entry: &profilestore_core::testing::Entry) -> Option<Value> {
    let server = ["A", "B"][entry.server];
    let t = (entry.t * 1000.0).round() / 1000.0;
    let key_of = |p: &ProfileId| {
        w.servers[entry.server]
            .engine
            .profile(*p)
            .map(|p| p.key.clone())
    };
    Some(match &entry.record {
        Record::Write { key, value } => {
            json!({"t": t, "server": server, "type": "write", "key": key, "value": value})
        }
        Record::Lost { topic } => {
            json!({"t": t, "server": server, "type": "publish", "topic": topic, "failed": true})
        }
        Record::Removed { key } => json!({"t": t, "server": server, "type": "remove", "key": key}),
        Record::Output(Output::Messaging(MessagingRequest::Publish { topic, data })) => {
            json!({"t": t, "server": server, "type": "publish", "topic": topic, "data": data})
        }
        Record::Output(Output::Event(event)) => {
            let (signal, profile, extra) = match event {
                Event::OnSave { profile } => ("OnSave", Some(profile), json!(null)),
                Event::OnLastSave { profile, reason } => {
                    ("OnLastSave", Some(profile), json!(reason.as_str()))
                }
                Event::OnSessionEnd { profile } => ("OnSessionEnd", Some(profile), json!(null)),
                Event::OnAfterSave {
                    profile,
                    last_saved_data,
                } => ("OnAfterSave", Some(profile), (**last_saved_data).clone()),
                Event::OnError { message, .. } => ("OnError", None, json!(message)),
                _ => return None,
            };
            json!({"t": t, "server": server, "type": "signal", "signal": signal,
                   "key": profile.and_then(key_of), "detail": extra})
        }
        Record::Output(Output::Completion(Completion::SessionStart { profile, .. })) => {
            json!({"t": t, "server": server, "type": "return", "call": "StartSessionAsync", "ok": profile.is_some()})
        }
        _ => return None,
    })
}

fn main() {
    let mut w = World::new(2, 2024);
    let store = w.new_store("PlayerData", json!({"Coins": 0, "Items": []}));
    w.run_until(1.0);
    let a = w.start_session(0, store.live(), "Player_1", StartParams::default());
    w.run_until(3.0);
    let pa = w
        .started_profile(0, a)
        .expect("server A starts the session");
    w.data_mut(0, pa)["Coins"] = json!(100);
    w.data_mut(0, pa)["Items"] = json!(["Sword"]);

    // The player teleports to B: B asks A to release, A saves and lets go.
    w.run_until(10.0);
    let b = w.start_session(1, store.live(), "Player_1", StartParams::default());
    w.run_until(30.0);
    let pb = w.started_profile(1, b).expect("server B takes the session");
    w.data_mut(1, pb)["Coins"] = json!(250);
    w.with(1, |e, now| e.save(now, pb)).expect("save");

    // B stops answering MessagingService; A asks for 40 s and then steals.
    w.run_until(35.0);
    w.messaging_fail = 1.0;
    let steal = w.start_session(0, store.live(), "Player_1", StartParams::default());
    w.run_until(100.0);
    let back = w
        .started_profile(0, steal)
        .expect("server A steals the session back");
    w.with(0, |e, now| e.end_session(now, back));
    w.run_until(110.0);

    for entry in &w.journal {
        if let Some(l) = line(&w, entry) {
            println!("{l}");
        }
    }
    let handoff = w
        .completion(1, b)
        .map(|(t, _)| t - 10.0)
        .unwrap_or(f64::NAN);
    let steal_t = w
        .completion(0, steal)
        .map(|(t, _)| t - 35.0)
        .unwrap_or(f64::NAN);
    let final_value = w
        .stored("PlayerData", "Player_1")
        .cloned()
        .unwrap_or(Value::Null);
    eprintln!(
        "hand-off by MessagingService: {handoff:.2} s; steal after no answer: {steal_t:.2} s"
    );
    eprintln!(
        "final Data: {}; SessionLoadCount {}",
        final_value["Data"], final_value["MetaData"]["SessionLoadCount"]
    );
}
