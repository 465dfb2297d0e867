//! Host errors through [`Engine::handle_input`]: inputs a correct host never sends are refused
//! with an error that names the problem, and change nothing (DESIGN.md: bad input gets a clear
//! error and loses nothing). Also the host's answers the engine must wait for: a subscription
//! that returns after its session ended, retries that wait out their backoff while closing.

use profilestore_core::input::TransformedRecord;
use profilestore_core::testing::Host;
use profilestore_core::value::json;
use profilestore_core::*;

fn engine() -> (Engine, StoreId) {
    let mut e = profilestore_core::testing::engine("j", 7);
    let store = e.new_store("S", json!({})).unwrap();
    (e, store)
}

fn drain(e: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn at(mono: f64) -> Now {
    Now { mono, wall: 1000 }
}

/// An answer to request `op` at `mono`: the key is empty.
fn empty_answer(op: OpId, mono: f64) -> Input {
    Input::DataStoreResponse {
        now: at(mono),
        op,
        result: Ok(DataStoreResponse::Value {
            value: None,
            key_info: None,
        }),
        live: LiveAnswers::default(),
    }
}

/// Answers to request `op` at `mono` of every shape a request may be refused for: a key that
/// is empty, a page of versions, and a value without its key info.
fn answers_of_every_shape(op: OpId, mono: f64) -> [Input; 3] {
    let answer = |result| Input::DataStoreResponse {
        now: at(mono),
        op,
        result: Ok(result),
        live: LiveAnswers::default(),
    };
    [
        empty_answer(op, mono),
        answer(DataStoreResponse::Page {
            items: Vec::new(),
            is_finished: true,
        }),
        answer(DataStoreResponse::Value {
            value: Some(std::sync::Arc::new(json!({"Data": {}}))),
            key_info: None,
        }),
    ]
}

/// The DataStore asks for request `op`'s transform on an empty key.
fn transform_of(op: OpId) -> Input {
    Input::Transform {
        op,
        current: None,
        wall: 1000,
        live: LiveAnswers::default(),
    }
}

fn requests(out: &[Output]) -> Vec<&DataStoreRequest> {
    out.iter()
        .filter_map(|o| match o {
            Output::DataStore(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Two `MessageAsync` calls on one key: the second waits in the key's queue (spec §4). A
/// transform or an answer for it before it is sent is refused, and the key's queue stays held
/// by the first until that one is answered; then the second goes out, under the id refused.
#[test]
fn an_answer_for_a_request_not_sent_yet_is_refused_and_keeps_the_queue() {
    let (mut e, store) = engine();
    let mut host = Host::default();
    let first = e.message(at(1.0), store.live(), "k", json!({"Gift": 1}));
    let out = drain(&mut e);
    let sent = requests(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    let a = sent[0].op;
    e.message(at(1.0), store.live(), "k", json!({"Gift": 2}))
        .unwrap();
    assert!(requests(&drain(&mut e)).is_empty(), "the second call waits");

    // Ids are handed out in order: the second call's id, then its op's.
    let b = OpId(a.0 + 2);
    let refused = format!(
        "[ProfileStore]: host error: DataStore request {} has not been sent yet; its transform \
         or answer is refused",
        b.0
    );
    // Whatever the answer's shape: the request is not out (a page or a value without key
    // info was refused as the wrong answer, naming a lesser problem).
    for answer in answers_of_every_shape(b, 2.0) {
        assert_eq!(
            e.handle_input(answer, &mut host),
            InputResult::Done(Err(refused.clone()))
        );
    }
    assert!(
        drain(&mut e).is_empty(),
        "nothing released, nothing signalled"
    );
    assert_eq!(
        e.handle_input(transform_of(b), &mut host),
        InputResult::Transformed(TransformedRecord::Error(refused))
    );

    // The first call completes; only now does the second go out, as op `b`.
    commit(&mut e, &mut host, a, 2.0);
    let out = drain(&mut e);
    assert!(
        out.contains(&Output::Completion(Completion::Message {
            call: first.unwrap(),
            ok: true
        })),
        "{out:?}"
    );
    let sent = requests(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].op, b);
}

/// A NaN (or infinite) monotonic time is refused: compared with a timer's due time, NaN would
/// make every timer due. The mock session's one-frame timer fires only at a real time.
#[test]
fn an_input_at_a_time_that_is_not_a_number_is_refused() {
    let (mut e, store) = engine();
    let mut host = Host::default();
    let params = StartParams {
        steal: false,
        cancellable: false,
    };
    let call = e
        .start_session(at(10.0), store.mock(), "k", params)
        .unwrap();
    assert_eq!(e.poll_timeout(), Some(10.0 + FRAME));
    for mono in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let timeout = Input::Timeout {
            now: at(mono),
            live: LiveAnswers::default(),
        };
        assert_eq!(
            e.handle_input(timeout, &mut host),
            InputResult::Done(Err(format!(
                "[ProfileStore]: host error: the input's monotonic time {mono} is not a finite \
                 number"
            )))
        );
        let end = Input::Shutdown { now: at(mono) };
        assert!(matches!(
            e.handle_input(end, &mut host),
            InputResult::Done(Err(_))
        ));
        // Called directly, a NaN time fires nothing either.
        e.handle_timeout(at(f64::NAN), &mut host);
        assert!(drain(&mut e).is_empty());
        assert!(!e.is_closing());
    }
    assert_eq!(
        e.poll_timeout(),
        Some(10.0 + FRAME),
        "the timer is still set"
    );
    e.handle_timeout(at(10.0 + FRAME), &mut host);
    let out = drain(&mut e);
    assert!(
        matches!(out.last(), Some(Output::Completion(Completion::SessionStart {
            call: c,
            profile: Some(_),
        })) if *c == call),
        "{out:?}"
    );
}

/// A mock store's operation never goes out to the host (the engine runs it a frame later): an
/// answer or a transform for its id is refused and changes nothing; the mock session starts as
/// usual. (They used to be taken: the answer released the key and started the session without
/// writing the mock store.)
#[test]
fn an_answer_for_a_mock_stores_operation_is_refused() {
    let (mut e, store) = engine();
    let mut host = Host::default();
    let call = e
        .start_session(at(1.0), store.mock(), "k", StartParams::default())
        .unwrap();
    assert!(requests(&drain(&mut e)).is_empty(), "nothing goes out");
    // Ids are handed out in order: the call's, then its op's.
    let op = OpId(call.0 + 1);
    let refused = format!(
        "[ProfileStore]: host error: operation {} is a mock store's, which the engine runs \
         itself; its transform or answer is refused",
        op.0
    );
    for answer in answers_of_every_shape(op, 1.01) {
        assert_eq!(
            e.handle_input(answer, &mut host),
            InputResult::Done(Err(refused.clone()))
        );
    }
    assert!(drain(&mut e).is_empty(), "nothing started");
    assert_eq!(
        e.handle_input(transform_of(op), &mut host),
        InputResult::Transformed(TransformedRecord::Error(refused))
    );
    // The method itself, called directly, refuses it the same way (it used to finish the call
    // with the host's value, the mock store left empty; then to ignore it without a word).
    let answer = Ok(DataStoreResponse::Value {
        value: Some(std::sync::Arc::new(json!({"Data": {"Coins": 7}}))),
        key_info: Some(key_info()),
    });
    assert_eq!(
        e.handle_datastore_response(at(1.02), op, answer, &mut host),
        Err(ApiError::MockOp(op.0))
    );
    assert!(drain(&mut e).is_empty(), "nothing started");
    e.handle_timeout(at(1.1), &mut host);
    let out = drain(&mut e);
    assert!(
        out.iter().any(|o| matches!(o, Output::Completion(Completion::SessionStart { call: c, profile: Some(_) }) if *c == call)),
        "{out:?}"
    );
}

/// The key info of a committed write.
fn key_info() -> KeyInfo {
    KeyInfo {
        created_time: 1_000_000,
        updated_time: 1_000_000,
        version: "v1".into(),
        user_ids: Vec::new(),
        metadata: json!({}),
    }
}

/// Answers request `op` as the DataStore would: runs its transform on an empty key and commits.
fn commit(e: &mut Engine, host: &mut Host, op: OpId, mono: f64) {
    let Transformed::Write { value, .. } = e.transform(op, None, 1000, host) else {
        panic!("the request writes")
    };
    let result = Ok(DataStoreResponse::Value {
        value: Some(std::sync::Arc::new(value)),
        key_info: Some(key_info()),
    });
    e.handle_datastore_response(at(mono), op, result, &mut Host::default())
        .unwrap();
}

/// A version listing is answered by a page of versions or an error: a value answering it is
/// refused, naming the request, and the query still reads its first version once the page
/// comes.
#[test]
fn a_value_answering_a_version_listing_is_refused() {
    let (mut e, store) = engine();
    let mut host = Host::default();
    let query = e
        .version_query(store.live(), "k", SortDirection::Ascending, None, None)
        .unwrap();
    let call = e.version_query_next(at(1.0), query).unwrap();
    let op = requests(&drain(&mut e))[0].op;
    assert_eq!(
        e.handle_input(empty_answer(op, 1.1), &mut host),
        InputResult::Done(Err(format!(
            "[ProfileStore]: host error: DataStore request {} is a version listing; only a page \
             of versions or an error answers it",
            op.0
        )))
    );
    assert!(drain(&mut e).is_empty(), "nothing changed");
    let page = Input::DataStoreResponse {
        now: at(1.2),
        op,
        result: Ok(DataStoreResponse::Page {
            items: vec![VersionItem {
                version: "v1".into(),
                created_time: 5,
                is_deleted: false,
            }],
            is_finished: true,
        }),
        live: LiveAnswers::default(),
    };
    e.handle_input(page.clone(), &mut host);
    let out = drain(&mut e);
    // The same page again: the listing was answered already (it used to be refused as no
    // listing at all).
    assert_eq!(
        e.handle_input(page, &mut host),
        InputResult::Done(Err(ApiError::NotAwaitingAnswer(op.0).to_string()))
    );
    assert!(drain(&mut e).is_empty(), "nothing changed");
    let read = requests(&out);
    assert!(
        matches!(&read[..], [r] if matches!(&r.kind, DataStoreRequestKind::GetVersion { version } if version == "v1")),
        "the listed version is read next: {out:?}"
    );
    // The call that asked for the page returns with that read.
    let read_op = read[0].op;
    e.handle_input(empty_answer(read_op, 1.3), &mut host);
    let out = drain(&mut e);
    assert!(
        out.iter().any(|o| matches!(o, Output::Completion(Completion::Get { call: c, result: Ok(_) }) if *c == call)),
        "{out:?}"
    );
}

/// An engine whose `StartSessionAsync` of key `k` (made at 1.0) has sent its request: the
/// call and the request's op.
fn a_start_sent() -> (Engine, CallId, OpId) {
    let (mut e, store) = engine();
    let call = e
        .start_session(at(1.0), store.live(), "k", StartParams::default())
        .unwrap();
    let op = requests(&drain(&mut e))[0].op;
    (e, call, op)
}

/// A page of versions answers only a version listing: as the answer to a session start it is
/// refused, naming the request, and the start still completes when answered properly.
#[test]
fn a_page_answering_an_update_is_refused() {
    let (mut e, call, op) = a_start_sent();
    let mut host = Host::default();
    let page = Input::DataStoreResponse {
        now: at(1.1),
        op,
        result: Ok(DataStoreResponse::Page {
            items: Vec::new(),
            is_finished: true,
        }),
        live: LiveAnswers::default(),
    };
    assert_eq!(
        e.handle_input(page, &mut host),
        InputResult::Done(Err(format!(
            "[ProfileStore]: host error: DataStore request {} is not a version listing; a page \
             of versions does not answer it",
            op.0
        )))
    );
    assert!(drain(&mut e).is_empty(), "nothing changed");
    commit(&mut e, &mut host, op, 1.2);
    let out = drain(&mut e);
    assert!(
        out.iter().any(|o| matches!(o, Output::Completion(Completion::SessionStart { call: c, profile: Some(_) }) if *c == call)),
        "{out:?}"
    );
}

/// An engine with an active session of key `k`, started at 1 s (its write landed at 1.2 s),
/// its outputs drained.
fn a_session_of_k() -> (Engine, Host, ProfileId) {
    let (mut e, store) = engine();
    let mut host = Host::default();
    e.start_session(at(1.0), store.live(), "k", StartParams::default())
        .unwrap();
    let op = requests(&drain(&mut e))[0].op;
    commit(&mut e, &mut host, op, 1.2);
    let profile = e.active_profiles()[0];
    drain(&mut e);
    (e, host, profile)
}

/// The direct `handle_datastore_response` makes `handle_input`'s checks: a value answering a
/// final save whose transform did not write (it found no profile) is refused, naming the
/// request, and changes nothing (taken as committed, the lock would count as released); the
/// nil answer the cancelled write gets is taken.
#[test]
fn a_direct_answer_the_request_cannot_take_is_refused() {
    let (mut e, mut host, profile) = a_session_of_k();
    e.end_session(at(2.0), profile);
    let op = requests(&drain(&mut e))[0].op;
    assert_eq!(e.transform(op, None, 1000, &mut host), Transformed::Cancel);
    let value = Ok(DataStoreResponse::Value {
        value: Some(std::sync::Arc::new(json!({"Data": {}}))),
        key_info: Some(key_info()),
    });
    assert_eq!(
        e.handle_datastore_response(at(2.2), op, value, &mut host),
        Err(ApiError::UnwrittenUpdate(op.0))
    );
    assert!(drain(&mut e).is_empty(), "nothing changed");
    let nil = Ok(DataStoreResponse::Value {
        value: None,
        key_info: None,
    });
    assert_eq!(
        e.handle_datastore_response(at(2.3), op, nil, &mut host),
        Ok(())
    );
    assert_eq!(
        e.handle_datastore_response(
            at(2.4),
            op,
            Err(DataStoreError {
                message: "x".into()
            }),
            &mut host
        ),
        Err(ApiError::NotAwaitingAnswer(op.0)),
        "answered already"
    );
}

/// A save answered with a table that is not a profile (an array; a misbehaving DataStore) ends
/// the session, and says so: it used to end it without a word.
#[test]
fn a_save_answered_with_a_non_profile_ends_the_session_with_a_warning() {
    let (mut e, mut host, profile) = a_session_of_k();
    e.save(at(2.0), profile).unwrap();
    let op = requests(&drain(&mut e))[0].op;
    // The save's transform wrote; the DataStore answers with something else.
    let stored = json!({"Data": {}, "MetaData": {}, "GlobalUpdates": [0, []]});
    let written = e.transform(op, Some(&stored), 1000, &mut host);
    assert!(matches!(written, Transformed::Write { .. }), "{written:?}");
    let result = Ok(DataStoreResponse::Value {
        value: Some(std::sync::Arc::new(json!([5]))),
        key_info: Some(key_info()),
    });
    e.handle_datastore_response(at(2.2), op, result, &mut Host::default())
        .unwrap();
    let out = drain(&mut e);
    assert!(!e.is_active(profile));
    assert!(
        out.iter().any(|o| matches!(o, Output::Event(Event::Warn { message }) if message.contains("(STORE:S; KEY:k) with a value that is not a profile"))),
        "{out:?}"
    );
}

/// An input naming a profile id the engine never handed out is refused, naming the id, where
/// it used to be dropped without a word; ending a known session twice is still fine.
#[test]
fn an_unknown_profile_id_is_refused() {
    let (mut e, store) = engine();
    let mut host = Host::default();
    let unknown = ProfileId(999);
    let refused = InputResult::Done(Err("[ProfileStore]: unknown profile id 999".into()));
    for input in [
        Input::EndSession {
            now: at(1.0),
            profile: unknown,
        },
        Input::MessageProcessed {
            profile: unknown,
            id: 1,
        },
        Input::AddUserId {
            profile: unknown,
            id: 7.0,
        },
        Input::RemoveUserId {
            profile: unknown,
            id: 7.0,
        },
        Input::ForgetProfile { profile: unknown },
    ] {
        assert_eq!(e.handle_input(input, &mut host), refused);
    }
    e.start_session(at(1.0), store.live(), "k", StartParams::default())
        .unwrap();
    let op = requests(&drain(&mut e))[0].op;
    commit(&mut e, &mut host, op, 1.2);
    let profile = e.active_profiles()[0];
    for _ in 0..2 {
        let end = Input::EndSession {
            now: at(2.0),
            profile,
        };
        assert_eq!(e.handle_input(end, &mut host), InputResult::None);
    }
}

/// A session that ends before its `SubscribeAsync` returns (spec §10.4: "If the profile is no
/// longer active when `SubscribeAsync` returns, the subscription is disconnected at once"):
/// nothing is asked to disconnect before the call returns (there is no connection yet); once
/// it returns, a made subscription is disconnected and a failed one forgotten.
#[test]
fn a_subscription_returning_after_its_session_ended_is_disconnected_then() {
    let unsubscribes = |out: &[Output]| -> Vec<SubscriptionId> {
        out.iter()
            .filter_map(|o| match o {
                Output::Messaging(MessagingRequest::Unsubscribe { subscription }) => {
                    Some(*subscription)
                }
                _ => None,
            })
            .collect()
    };
    let subscribed = |out: &[Output]| -> SubscriptionId {
        out.iter()
            .find_map(|o| match o {
                Output::Messaging(MessagingRequest::Subscribe { subscription, .. }) => {
                    Some(*subscription)
                }
                _ => None,
            })
            .expect("the session subscribes to its topic")
    };
    // A session started at 1.2 s, and the subscription it asked for (not answered yet).
    let started = || {
        let (mut e, store) = engine();
        e.start_session(at(1.0), store.live(), "k", StartParams::default())
            .unwrap();
        let op = requests(&drain(&mut e))[0].op;
        commit(&mut e, &mut Host::default(), op, 1.2);
        let subscription = subscribed(&drain(&mut e));
        (e, subscription)
    };
    for made in [true, false] {
        let (mut e, subscription) = started();
        let profile = e.active_profiles()[0];
        e.end_session(at(1.3), profile);
        assert_eq!(unsubscribes(&drain(&mut e)), [], "made: {made}");
        let result = if made { Ok(()) } else { Err("refused".into()) };
        e.handle_subscribe_result(at(1.5), subscription, result);
        let out = drain(&mut e);
        let want = if made { vec![subscription] } else { vec![] };
        assert_eq!(unsubscribes(&out), want, "made: {made}: {out:?}");
        // Answered once: a second answer finds nothing to do.
        e.handle_subscribe_result(at(1.6), subscription, Ok(()));
        assert_eq!(drain(&mut e), [], "made: {made}");
    }
    // A session that ends after its subscription was made disconnects it as it ends.
    let (mut e, subscription) = started();
    e.handle_subscribe_result(at(1.5), subscription, Ok(()));
    // A second answer, a failure, is refused through `handle_input` and changes nothing: it
    // used to drop the connected subscription without asking to disconnect it.
    let again = Input::SubscribeResult {
        now: at(1.6),
        subscription,
        result: Err("refused".into()),
    };
    assert_eq!(
        e.handle_input(again, &mut Host::default()),
        InputResult::Done(Err(format!(
            "[ProfileStore]: host error: subscription {} is not waiting for its SubscribeAsync \
             result (answered already, or never asked for)",
            subscription.0
        )))
    );
    // So does the method itself, called directly: the second answer is ignored.
    e.handle_subscribe_result(at(1.7), subscription, Err("refused".into()));
    assert_eq!(drain(&mut e), []);
    let profile = e.active_profiles()[0];
    e.end_session(at(2.0), profile);
    assert_eq!(unsubscribes(&drain(&mut e)), [subscription]);
}

/// `MessageAsync` and `GetAsync` that fail after the server began closing wait out their
/// backoff before giving up, as the original's loops do (spec §10.1 step 4, §11.1, §9.4: the
/// loop looks at `IsClosing` after `task.wait(backoff)`): false and nil come one second after
/// the failure, not at once.
#[test]
fn message_and_get_failing_while_closing_give_up_after_their_backoff() {
    for get in [false, true] {
        let (mut e, store) = engine();
        let call = if get {
            e.get(at(1.0), store.live(), "k", None)
        } else {
            e.message(at(1.0), store.live(), "k", json!({"Gift": 1}))
        }
        .unwrap();
        let op = requests(&drain(&mut e))[0].op;
        e.shutdown(at(1.1));
        drain(&mut e);
        let failed = Err(DataStoreError {
            message: "502: API Services rejected request with error.".into(),
        });
        e.handle_datastore_response(at(1.2), op, failed, &mut Host::default())
            .unwrap();
        let out = drain(&mut e);
        assert!(
            !out.iter().any(|o| matches!(o, Output::Completion(_))),
            "get: {get}: still waiting: {out:?}"
        );
        assert_eq!(e.poll_timeout(), Some(2.2), "get: {get}");
        e.handle_timeout(at(2.2), &mut Host::default());
        let want = if get {
            Completion::Get {
                call,
                result: Ok(None),
            }
        } else {
            Completion::Message { call, ok: false }
        };
        assert_eq!(drain(&mut e), [Output::Completion(want)], "get: {get}");
    }
}

/// Spec §4 step 6: a write whose answer is not a table is an error (`"Undefined error"`),
/// whatever the transform noted on the way. A message write that trimmed the queue
/// (`MAX_MESSAGE_QUEUE`) and got an empty answer is registered and retried like any other,
/// not reported as stored.
#[test]
fn an_empty_answer_to_a_message_write_that_trimmed_the_queue_is_an_error() {
    for max in [1.0, 1000.0] {
        let (mut e, store) = engine();
        e.set_constant("MAX_MESSAGE_QUEUE", max).unwrap();
        let call = e
            .message(at(1.0), store.live(), "k", json!({"Gift": 2}))
            .unwrap();
        let out = drain(&mut e);
        let op = requests(&out)[0].op;
        let stored = json!({"Data": {}, "MetaData": {}, "GlobalUpdates": [1, [[1, {"Gift": 1}]]]});
        let transformed = e.handle_input(
            Input::Transform {
                op,
                current: Some(stored),
                wall: 1000,
                live: LiveAnswers::default(),
            },
            &mut Host::default(),
        );
        assert!(
            matches!(
                transformed,
                InputResult::Transformed(TransformedRecord::Write { .. })
            ),
            "{transformed:?}"
        );
        assert_eq!(
            e.handle_input(empty_answer(op, 1.1), &mut Host::default()),
            InputResult::None
        );
        let out = drain(&mut e);
        let error = out.iter().any(|o| {
            matches!(o, Output::Event(Event::OnError { message, key, .. }) if message == "Undefined error" && key == "k")
        });
        assert!(error, "MAX_MESSAGE_QUEUE {max}: {out:?}");
        let returned = out.iter().any(
            |o| matches!(o, Output::Completion(Completion::Message { call: c, .. }) if *c == call),
        );
        assert!(
            !returned,
            "MAX_MESSAGE_QUEUE {max}: the call waits for its retry"
        );
    }
}

/// An input's monotonic time may not be before an earlier input's: refused, naming the times,
/// and nothing changes (a start made at a time refused did not happen; a jump back used to
/// stretch every wait by its size); the engine goes on from the latest time it was given.
#[test]
fn a_time_that_goes_back_is_refused() {
    let (mut e, store) = engine();
    let mut host = Host::default();
    let start = |mono: f64| Input::StartSession {
        now: at(mono),
        store: store.live(),
        key: "k".into(),
        params: StartParams::default(),
    };
    let timeout = |mono: f64| Input::Timeout {
        now: at(mono),
        live: LiveAnswers::default(),
    };
    assert!(matches!(
        e.handle_input(start(5.0), &mut host),
        InputResult::Call(Ok(_))
    ));
    drain(&mut e);
    let refused = InputResult::Done(Err(
        "[ProfileStore]: host error: the input's monotonic time 4.5 is before an earlier \
         input's (5)"
            .to_string(),
    ));
    assert_eq!(e.handle_input(timeout(4.5), &mut host), refused);
    assert_eq!(e.handle_input(start(4.5), &mut host), refused);
    assert!(drain(&mut e).is_empty(), "nothing changed");
    // The same time again is fine.
    assert_eq!(e.handle_input(timeout(5.0), &mut host), InputResult::None);
    // A refused input's time is not taken: after one at 9, an input at 6 is still on time.
    let unknown = Input::EndSession {
        now: at(9.0),
        profile: ProfileId(999),
    };
    assert!(matches!(
        e.handle_input(unknown, &mut host),
        InputResult::Done(Err(_))
    ));
    assert_eq!(e.handle_input(timeout(6.0), &mut host), InputResult::None);
    // Nor is that of an input the call itself refuses (here an empty key, far ahead): it used
    // to be, and every real input after it was refused as going back.
    let bad_key = Input::Get {
        now: at(1e12),
        store: store.live(),
        key: String::new(),
        version: None,
    };
    assert!(matches!(
        e.handle_input(bad_key, &mut host),
        InputResult::Call(Err(_))
    ));
    assert_eq!(e.handle_input(timeout(7.0), &mut host), InputResult::None);
}

/// An answer is taken once, and with the key info every DataStore call returning a value
/// returns: a value without it is refused (a start used to retry it for ever, an ending save
/// too, so shutdown never completed), and a second answer for the same request is refused
/// (it used to be dropped without a word). Each names the request, and nothing changes.
#[test]
fn an_answer_without_key_info_or_a_second_answer_is_refused() {
    let (mut e, call, op) = a_start_sent();
    let mut host = Host::default();
    let Transformed::Write { value, .. } = e.transform(op, None, 1000, &mut host) else {
        panic!("the start writes")
    };
    let answer = |key_info: Option<KeyInfo>| Input::DataStoreResponse {
        now: at(1.2),
        op,
        result: Ok(DataStoreResponse::Value {
            value: Some(std::sync::Arc::new(value.clone())),
            key_info,
        }),
        live: LiveAnswers::default(),
    };
    assert_eq!(
        e.handle_input(answer(None), &mut host),
        InputResult::Done(Err(format!(
            "[ProfileStore]: host error: DataStore request {} was answered with a value but no \
             key info",
            op.0
        )))
    );
    assert!(drain(&mut e).is_empty(), "nothing changed");
    e.handle_input(answer(Some(key_info())), &mut host);
    let out = drain(&mut e);
    assert!(
        out.iter().any(|o| matches!(o, Output::Completion(Completion::SessionStart { call: c, profile: Some(_) }) if *c == call)),
        "{out:?}"
    );
    assert_eq!(
        e.handle_input(answer(Some(key_info())), &mut host),
        InputResult::Done(Err(format!(
            "[ProfileStore]: host error: DataStore request {} is not waiting for an answer \
             (answered already, or never sent)",
            op.0
        )))
    );
    assert!(drain(&mut e).is_empty(), "nothing changed");
}

/// A timeout fed before the outputs waiting to be polled were drained is refused, naming how
/// many wait (it used to panic in debug builds, and run out of order in release ones).
#[test]
fn a_timeout_before_the_outputs_are_drained_is_refused() {
    let (mut e, store) = engine();
    let mut host = Host::default();
    e.start_session(at(1.0), store.live(), "k", StartParams::default())
        .unwrap();
    let timeout = Input::Timeout {
        now: at(1.5),
        live: LiveAnswers::default(),
    };
    assert_eq!(
        e.handle_input(timeout.clone(), &mut host),
        InputResult::Done(Err(
            "[ProfileStore]: host error: a timeout was fed with 1 output(s) not yet polled; drain \
             poll_output first"
                .to_string()
        ))
    );
    assert_eq!(
        requests(&drain(&mut e)).len(),
        1,
        "the start's request waits"
    );
    assert_eq!(e.handle_input(timeout, &mut host), InputResult::None);
}

/// A value answers an update only when the update's latest transform wrote it (a DataStore
/// answers a cancelled update with nil and fails a throwing one). A final save answered with
/// the stored value before its transform ran is refused, naming the request: taken as
/// committed, it counted the lock released while the stored value still held it and the
/// session's last `Data` was never written. Answered once its transform has written, it lands.
#[test]
fn a_value_answering_an_update_whose_transform_did_not_write_is_refused() {
    let (mut e, call, op) = a_start_sent();
    let mut host = Host::default();
    let refused = |op: OpId| {
        InputResult::Done(Err(format!(
            "[ProfileStore]: host error: DataStore request {} is an update whose transform did \
             not write (not run, or it returned nil or an error); a value does not answer it",
            op.0
        )))
    };
    let answer = |op: OpId, value: &value::Value, mono: f64| Input::DataStoreResponse {
        now: at(mono),
        op,
        result: Ok(DataStoreResponse::Value {
            value: Some(std::sync::Arc::new(value.clone())),
            key_info: Some(key_info()),
        }),
        live: LiveAnswers::default(),
    };
    // The start: answered before its transform ran.
    let stored = json!({"Data": {"Coins": 5}, "MetaData": {}, "GlobalUpdates": [0, []]});
    assert_eq!(
        e.handle_input(answer(op, &stored, 1.1), &mut host),
        refused(op)
    );
    assert!(drain(&mut e).is_empty(), "nothing changed");
    let Transformed::Write { value: locked, .. } = e.transform(op, None, 1000, &mut host) else {
        panic!("the start writes")
    };
    e.handle_input(answer(op, &locked, 1.2), &mut host);
    let out = drain(&mut e);
    let Some(profile) = out.iter().find_map(|o| match o {
        Output::Completion(Completion::SessionStart { call: c, profile }) if *c == call => {
            profile.as_ref().map(|p| p.profile)
        }
        _ => None,
    }) else {
        panic!("the start returns a profile: {out:?}")
    };

    // The final save: answered with what is stored (the lock still in it), no transform run.
    e.end_session(at(2.0), profile);
    let out = drain(&mut e);
    let save = requests(&out)[0].op;
    assert_eq!(
        e.handle_input(answer(save, &locked, 2.1), &mut host),
        refused(save)
    );
    assert!(drain(&mut e).is_empty(), "nothing changed");
    // A transform that cancels (the key was removed meanwhile) does not make it one.
    assert_eq!(
        e.transform(save, None, 1000, &mut host),
        Transformed::Cancel
    );
    assert_eq!(
        e.handle_input(answer(save, &locked, 2.2), &mut host),
        refused(save)
    );
    // Run again on what is stored, the transform writes the release, and its answer lands.
    let Transformed::Write {
        value: released, ..
    } = e.transform(save, Some(&locked), 1000, &mut host)
    else {
        panic!("the final save writes")
    };
    assert_eq!(
        released["MetaData"].get("ActiveSession"),
        None,
        "{released}"
    );
    assert_eq!(
        e.handle_input(answer(save, &released, 2.3), &mut host),
        InputResult::None
    );
    let out = drain(&mut e);
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Event(Event::OnAfterSave { profile: p, .. }) if *p == profile)
        ),
        "{out:?}"
    );
}

/// A table nested `levels` levels deep: `{"a": {"a": … {}}}`.
fn nested(levels: usize) -> value::Value {
    (1..levels).fold(json!({}), |inner, _| json!({"a": inner}))
}

/// A template or a message nested deeper than any DataStore stores it (a profile wraps `Data`
/// one level down, a message queue a message four) is refused when it is given, naming the
/// limit: a template used to be taken and every save of its profiles to fail, a message to
/// fail at the DataStore after a round trip. At the limit both are taken.
#[test]
fn a_template_or_message_too_deep_to_store_is_refused_when_given() {
    let mut e = profilestore_core::testing::engine("j", 7);
    assert_eq!(nested(3).depth(), 3);
    assert_eq!(
        e.new_store("S", nested(profile::MAX_DATA_DEPTH + 1)),
        Err(ApiError::TemplateTooDeep)
    );
    assert_eq!(
        ApiError::TemplateTooDeep.to_string(),
        "[ProfileStore]: Invalid template argument: it nests deeper than 511 levels, and no \
         DataStore stores a profile made from it"
    );
    let store = e.new_store("S", nested(profile::MAX_DATA_DEPTH)).unwrap();
    assert_eq!(
        e.set_template(store, nested(profile::MAX_DATA_DEPTH + 1)),
        Err(ApiError::TemplateTooDeep)
    );
    assert_eq!(e.template(store).map(|t| t.depth()), Some(511), "unchanged");

    assert_eq!(
        e.message(
            at(1.0),
            store.live(),
            "k",
            nested(messages::MAX_MESSAGE_DEPTH + 1)
        ),
        Err(ApiError::MessageTooDeep)
    );
    assert_eq!(
        ApiError::MessageTooDeep.to_string(),
        "[ProfileStore]: message nests deeper than 508 levels, and no DataStore stores it in a \
         message queue"
    );
    assert!(drain(&mut e).is_empty(), "nothing sent");
    // The deepest message taken makes a queue as deep as a store takes.
    let queued = json!({"GlobalUpdates": [1, [[1, nested(messages::MAX_MESSAGE_DEPTH)]]]});
    assert_eq!(queued.depth(), value::MAX_DEPTH);
    e.message(
        at(1.0),
        store.live(),
        "k",
        nested(messages::MAX_MESSAGE_DEPTH),
    )
    .unwrap();
    assert_eq!(requests(&drain(&mut e)).len(), 1);
}

/// Two servers a host gave one seed (the README's example uses `seed: 7`) still lock with
/// session GUIDs of their own: the generator draws on the server's PlaceId and JobId too
/// (spec §5.3 (a): a new GUID every attempt). With one seed alone they drew the same GUIDs,
/// so an end request published to one session's topic `PS_<guid>` reached the other
/// server's session of another key and ended it (§10.4 acts on a matching `LoadCount`).
#[test]
fn servers_given_one_seed_lock_with_guids_of_their_own() {
    let first_lock = |job_id: &str| {
        let mut e = profilestore_core::testing::engine(job_id, 7);
        let store = e.new_store("S", json!({})).unwrap();
        e.start_session(at(1.0), store.live(), "k", StartParams::default())
            .unwrap();
        let op = drain(&mut e)
            .into_iter()
            .find_map(|o| match o {
                Output::DataStore(r) => Some(r.op),
                _ => None,
            })
            .expect("the start's update");
        let Transformed::Write { value, .. } = e.transform(op, None, 1000, &mut Host::default())
        else {
            panic!("the start writes")
        };
        value["MetaData"]["ActiveSession"].clone()
    };
    let (a, b) = (first_lock("job-a"), first_lock("job-b"));
    assert_eq!((&a[1], &b[1]), (&json!("job-a"), &json!("job-b")));
    assert_ne!(a[2], b[2], "{a} {b}");
    // A server draws the same GUIDs on every run.
    assert_eq!(first_lock("job-a"), a);
}

/// A template or a message whose JSON alone is larger than a DataStore key holds (4,194,304
/// bytes) is refused when given, naming its size, and changes nothing: a message used to be
/// taken and its every write refused (105), retrying until the server closed; a template made
/// every first start of a key fail.
#[test]
fn a_template_or_message_too_large_to_store_is_refused_when_given() {
    let mut e = profilestore_core::testing::engine("j", 7);
    // {"a":"…"}: 8 bytes around the string.
    let sized = |len: usize| json!({ "a": "x".repeat(len - 8) });
    assert_eq!(
        sized(profile::MAX_VALUE_LEN).json_len(),
        profile::MAX_VALUE_LEN
    );
    let over = sized(profile::MAX_VALUE_LEN + 1);
    assert_eq!(
        e.new_store("S", over.clone()).unwrap_err().to_string(),
        "[ProfileStore]: Invalid template argument: its JSON is 4194305 bytes, over the \
         4194304 a DataStore key holds"
    );
    let store = e.new_store("S", json!({"Coins": 0})).unwrap();
    assert_eq!(
        e.set_template(store, over.clone()),
        Err(ApiError::TemplateTooLarge(4_194_305))
    );
    assert_eq!(e.template(store), Some(&json!({"Coins": 0})), "unchanged");
    assert_eq!(
        e.message(at(1.0), store.live(), "k", over)
            .unwrap_err()
            .to_string(),
        "[ProfileStore]: message is 4194305 bytes of JSON, over the 4194304 a DataStore key \
         holds"
    );
    assert!(drain(&mut e).is_empty(), "nothing sent");
    // At the limit, both are taken (what else the key holds decides the write): the template
    // is the store's, and the message goes to the DataStore.
    assert_eq!(e.set_template(store, sized(profile::MAX_VALUE_LEN)), Ok(()));
    assert_eq!(e.template(store), Some(&sized(profile::MAX_VALUE_LEN)));
    e.message(at(1.0), store.live(), "k", sized(profile::MAX_VALUE_LEN))
        .unwrap();
    let sent = drain(&mut e);
    assert!(
        matches!(&sent[..], [Output::DataStore(r)] if &*r.key == "k"),
        "{} outputs",
        sent.len()
    );
}
