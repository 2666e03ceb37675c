//! Phone calls over media streams: a `local` backend with `provider_config.phone` takes calls
//! that a telephony provider streams to it, and each becomes a session handed to the host.
//! The provider is played by `tests/common/phone.rs`, a Twilio / Telnyx media-stream client
//! written from the vendors' documented message schemas:
//!
//! - Twilio, "Media Streams - WebSocket Messages":
//!   <https://www.twilio.com/docs/voice/media-streams/websocket-messages>
//! - Telnyx, "Stream call media over WebSocket":
//!   <https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket>
//!
//! The callers speak voiced buzzes in G.711 (`test-pitch-stt` transcribes their pitch) and hear
//! the agent's replies (`test-tone-tts`: a 440 Hz tone) in G.711, played in real time with marks
//! echoed as a provider does.
#![cfg(feature = "test-providers")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::phone::{CallSpec, Caller, alaw, alaw_to_linear, strongest, ulaw, ulaw_to_linear};
use common::{agent_saying, echo_agent, speech, utterance};
use serde_json::Value;
use voicebackend::backend::{Accepted, IncomingHandler};
use voicebackend::{
    Agent, Backend, Error, Event, Session, SessionConfig, VbEventKind as K, VbSessionState,
    VbStatus,
};

const PATIENCE: Duration = Duration::from_secs(30);

/// The host: takes every call (or refuses them all), keeps each session with its info and the
/// events pushed to it.
struct Switchboard {
    agent: Arc<dyn Agent>,
    refuse: Option<&'static str>,
    calls: Mutex<Vec<Taken>>,
}

struct Taken {
    info: Value,
    session: Session,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Switchboard {
    fn new(agent: Arc<dyn Agent>) -> Arc<Switchboard> {
        Arc::new(Switchboard {
            agent,
            refuse: None,
            calls: Mutex::new(Vec::new()),
        })
    }

    fn refusing(why: &'static str) -> Arc<Switchboard> {
        Arc::new(Switchboard {
            agent: echo_agent(),
            refuse: Some(why),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn has(&self, call_id: &str) -> bool {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .any(|t| call_of(&t.info) == call_id)
    }

    fn with<R>(&self, call_id: &str, f: impl FnOnce(&Taken) -> R) -> R {
        let deadline = Instant::now() + PATIENCE;
        loop {
            {
                let calls = self.calls.lock().unwrap();
                if let Some(taken) = calls.iter().find(|t| call_of(&t.info) == call_id) {
                    return f(taken);
                }
            }
            assert!(
                Instant::now() < deadline,
                "call {call_id} never reached the host"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The info the host was given with call `call_id` (waits for it).
    fn info(&self, call_id: &str) -> Value {
        self.with(call_id, |t| t.info.clone())
    }

    fn events(&self, call_id: &str) -> Vec<Event> {
        self.with(call_id, |t| t.events.lock().unwrap().clone())
    }

    /// Waits until an event of call `call_id` matches; returns every event so far.
    fn wait_event(&self, call_id: &str, what: &str, found: impl Fn(&Event) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let events = self.events(call_id);
            if events.iter().any(&found) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "call {call_id}: {what}; its events: {:#?}",
                brief(&events)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for call `call_id`'s session to stop; returns the reason and the error events.
    fn wait_stopped(&self, call_id: &str) -> (String, Vec<(VbStatus, String)>) {
        let events = self.wait_event(call_id, "the session stops", stopped);
        let reason = events
            .iter()
            .find(|e| stopped(e))
            .and_then(|e| e.text.clone())
            .unwrap_or_default();
        (reason, common::errors(&events))
    }

    fn state(&self, call_id: &str) -> VbSessionState {
        self.with(call_id, |t| t.session.state())
    }
}

impl IncomingHandler for Switchboard {
    fn on_session(&self, session: Session, info: &Value) -> voicebackend::Result<Accepted> {
        if let Some(why) = self.refuse {
            return Err(Error::new(VbStatus::VB_ERR_UNAUTHORIZED, why));
        }
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        self.calls.lock().unwrap().push(Taken {
            info: info.clone(),
            session,
            events,
        });
        Ok(Accepted {
            agent: Some(self.agent.clone()),
            on_event: Some(Arc::new(move |e: &Event| {
                sink.lock().unwrap().push(e.clone())
            })),
        })
    }
}

fn call_of(info: &Value) -> &str {
    info["call_sid"]
        .as_str()
        .or(info["call_control_id"].as_str())
        .unwrap_or_default()
}

fn stopped(e: &Event) -> bool {
    e.kind == K::VB_EVENT_STATE_CHANGED && e.state == VbSessionState::VB_STATE_STOPPED
}

fn brief(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{:?} {:?} {}",
                e.kind,
                e.state,
                e.text.as_deref().unwrap_or("")
            )
        })
        .collect()
}

/// A started `local` backend on the test providers taking phone calls on a free port, with
/// `extra` top-level keys.
fn phone_backend(board: Arc<Switchboard>, extra: &str) -> Backend {
    let json = format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts",
            "provider_config":{{"phone":{{"listen":"127.0.0.1:0","start_timeout_ms":2000}}}}{extra}}}"#
    );
    let backend = Backend::from_json(&json).expect("backend config");
    backend.set_incoming(board).unwrap();
    backend.start().expect("start");
    backend
}

fn dial(backend: &Backend, spec: CallSpec) -> Caller {
    Caller::dial(backend.listening_address().expect("the phone server"), spec)
}

/// One user turn at 8 kHz: an 800 ms buzz at `f0`, then silence that ends the turn.
fn turn(f0: f32) -> Vec<i16> {
    utterance(f0, 800, 8000)
}

/// Whether the caller got a whole reply: audio, then its mark echoed.
fn replied(log: &common::phone::Log) -> bool {
    !log.media_at.is_empty() && !log.marks.is_empty() && log.echoed.len() == log.marks.len()
}

/// The agent's tone is what the caller heard: loud, and 440 Hz rather than a neighbour.
fn assert_heard_the_tone(received: &[i16]) {
    assert!(received.len() > 2400, "only {} samples", received.len());
    let steady = &received[400..received.len() - 400];
    let rms = common::rms(steady);
    assert!(rms > 2000.0, "the agent's audio is too quiet: rms {rms}");
    let f = strongest(steady, 8000.0, &[220.0, 330.0, 440.0, 550.0, 660.0, 880.0]);
    assert_eq!(f, 440.0, "the agent's audio is not the 440 Hz tone");
}

#[test]
fn a_twilio_call_reaches_the_host_is_answered_in_mulaw_and_ends_with_stop() {
    let board = Switchboard::new(echo_agent());
    let backend = phone_backend(board.clone(), "");
    let caller = dial(&backend, CallSpec::twilio(1));
    let id = caller.spec.call_id.clone();

    let info = board.info(&id);
    assert_eq!(info["source"], "twilio");
    assert_eq!(info["stream_sid"], caller.spec.stream_id.as_str());
    assert_eq!(info["account_sid"], "AC00000000000000000000000000000000");
    assert_eq!(info["from"], caller.spec.from.as_str());
    assert_eq!(info["to"], "+15550000000");
    assert_eq!(info["custom_parameters"]["Purpose"], "test");
    assert_eq!(info["encoding"], "PCMU");
    board.with(&id, |t| {
        assert_eq!(t.session.config().transport, "phone");
        assert_eq!(t.session.config().user_id, caller.spec.from);
    });

    caller.speak(&turn(150.0));
    caller.wait("a reply and its mark echoed", PATIENCE, replied);
    let events = board.wait_event(&id, "the reply ends", |e| {
        e.kind == K::VB_EVENT_AGENT_RESPONSE
    });
    let transcript = common::texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL);
    assert_eq!(transcript.len(), 1, "{:?}", brief(&events));
    assert!(transcript[0].starts_with("pitch 15"), "{transcript:?}");
    {
        let log = caller.log();
        assert!(log.wrong.is_empty(), "{:?}", log.wrong);
        assert_heard_the_tone(&log.received);
        // Paced in real time: n frames of 20 ms take about n × 20 ms, not a burst (half of that
        // at least: a loaded machine may delay a few frames, which the pacer then catches up).
        let n = log.media_at.len();
        let span = log.media_at[n - 1] - log.media_at[0];
        let expected = Duration::from_millis(20 * (n as u64 - 1));
        assert!(span >= expected / 2, "{n} frames came within {span:?}");
        assert_eq!(log.marks, ["reply-1"]);
        // The mark came after all the audio, once it had been played.
        assert_eq!(log.heard.len(), log.received.len());
    }

    caller.stop();
    let (reason, errors) = board.wait_stopped(&id);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        reason.contains(&format!("the twilio call {id} ended (stop)")),
        "{reason}"
    );
    assert!(
        reason.contains("1 segment(s): 1 heard to the end"),
        "{reason}"
    );
    assert_eq!(caller.wait_closed(PATIENCE).0, 1000);
    assert_eq!(board.state(&id), VbSessionState::VB_STATE_STOPPED);
}

#[test]
fn barge_in_sends_clear_and_the_caller_hears_no_more_of_that_reply() {
    // A reply of about 6 s of tone (20 ms per character).
    let board = Switchboard::new(agent_saying(
        "Here is a long answer that goes on and on, long enough for the caller to speak over it \
         well before it ends, as callers do on the phone with chatty agents.",
    ));
    let backend = phone_backend(board.clone(), "");
    let caller = dial(&backend, CallSpec::twilio(2));
    let id = caller.spec.call_id.clone();
    caller.speak(&turn(150.0));
    caller.wait("half a second of the reply", PATIENCE, |l| {
        l.media_at.len() >= 25
    });
    caller.speak(&speech(200.0, 1000, 8000));
    caller.wait("a clear", PATIENCE, |l| !l.clears.is_empty());
    board.wait_event(&id, "the interruption", |e| {
        e.kind == K::VB_EVENT_INTERRUPTED
    });
    std::thread::sleep(Duration::from_millis(500));
    {
        let log = caller.log();
        let clear = log.clears[0];
        // Nothing of the interrupted reply comes after the clear (the next reply, to the
        // interrupting turn, cannot start within half a second of it).
        let after = log
            .media_at
            .iter()
            .filter(|&&at| at > clear && at < clear + Duration::from_millis(500))
            .count();
        assert_eq!(after, 0, "{after} media messages right after the clear");
        // The reply was cut short: far less than its 6 s were sent.
        let before = log.media_at.iter().filter(|&&at| at <= clear).count();
        assert!(before < 150, "{before} frames before the clear");
        assert!(log.wrong.is_empty(), "{:?}", log.wrong);
    }
    caller.stop();
    let (reason, errors) = board.wait_stopped(&id);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        reason.contains("1 cut off") || reason.contains("2 cut off"),
        "{reason}"
    );
    assert!(
        reason.contains("interruption(s)") && !reason.contains("0 interruption"),
        "{reason}"
    );
}

#[test]
fn keys_pressed_become_dtmf_events() {
    let board = Switchboard::new(echo_agent());
    let backend = phone_backend(board.clone(), "");
    let caller = dial(&backend, CallSpec::twilio(3));
    let id = caller.spec.call_id.clone();
    board.info(&id);
    for key in ["1", "#", "9", "*"] {
        caller.dtmf(key);
    }
    let events = board.wait_event(&id, "four keys", |e| {
        e.kind == K::VB_EVENT_DTMF && e.text.as_deref() == Some("*")
    });
    assert_eq!(
        common::texts(&events, K::VB_EVENT_DTMF),
        ["1", "#", "9", "*"]
    );
    caller.stop();
    let (_, errors) = board.wait_stopped(&id);
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_telnyx_call_in_alaw_is_answered_and_its_errors_reported() {
    let board = Switchboard::new(echo_agent());
    let backend = phone_backend(board.clone(), "");
    let caller = dial(&backend, CallSpec::telnyx(4, true));
    let id = caller.spec.call_id.clone();
    let info = board.info(&id);
    assert_eq!(info["source"], "telnyx");
    assert_eq!(info["stream_id"], caller.spec.stream_id.as_str());
    assert_eq!(info["from"], caller.spec.from.as_str());
    assert_eq!(info["to"], "+13122123456");
    assert_eq!(info["client_state"], "aGF2ZSBhIG5pY2UgZGF5ID1d");
    assert_eq!(info["custom_parameters"]["customer_id"], "customer_123");
    assert_eq!(info["encoding"], "PCMA");

    caller.speak(&turn(180.0));
    caller.wait("a reply and its mark echoed", PATIENCE, replied);
    assert_heard_the_tone(&caller.log().received);
    caller.dtmf("5");
    board.wait_event(&id, "the key", |e| e.kind == K::VB_EVENT_DTMF);
    // Telnyx reports its own errors in `error` frames: the session hears of them, the call goes on.
    caller.raw(r#"{"event":"error","sequence_number":"99","stream_id":"x","payload":{"code":100003,"title":"malformed_frame","detail":"The frame could not be parsed"}}"#);
    let events = board.wait_event(&id, "the provider's error", common::is_error);
    let errors = common::errors(&events);
    assert_eq!(errors[0].0, VbStatus::VB_ERR_PROVIDER);
    assert!(
        errors[0]
            .1
            .contains("telnyx reported an error: malformed_frame (100003)"),
        "{errors:?}"
    );
    caller.stop();
    let (reason, _) = board.wait_stopped(&id);
    assert!(
        reason.contains("the telnyx call v3:call-4 ended (stop)"),
        "{reason}"
    );
    assert!(caller.log().wrong.is_empty());
}

/// A provider that breaks the protocol (or a stream that breaks) ends that call with an error
/// naming what happened, while another call goes on undisturbed.
#[test]
fn protocol_errors_end_only_that_call_while_another_goes_on() {
    let board = Switchboard::new(echo_agent());
    let backend = phone_backend(board.clone(), "");
    let healthy = dial(&backend, CallSpec::twilio(10));
    board.info(&healthy.spec.call_id);
    healthy.speak(&turn(150.0));

    let malformed = dial(&backend, CallSpec::twilio(11));
    let unknown = dial(&backend, CallSpec::twilio(12));
    let garbage = dial(&backend, CallSpec::twilio(13));
    let restart = dial(&backend, CallSpec::telnyx(14, false));
    let broken = dial(&backend, CallSpec::twilio(15));
    for caller in [&malformed, &unknown, &garbage, &restart, &broken] {
        board.info(&caller.spec.call_id);
    }
    malformed.raw(r#"{"event":"media","media":{"payload":"#);
    unknown.raw(r#"{"event":"transfer","streamSid":"MZ"}"#);
    garbage.raw(r#"{"event":"media","media":{"track":"inbound","payload":"%%% not base64 %%%"}}"#);
    restart.raw(r#"{"event":"start","stream_id":"other","start":{"call_control_id":"v3:other"}}"#);
    broken.hang_up_without_stop();

    let expect = |caller: &Caller, status: VbStatus, text: &str| {
        let (reason, errors) = board.wait_stopped(&caller.spec.call_id);
        assert_eq!(errors.len(), 1, "{}: {errors:?}", caller.spec.call_id);
        assert_eq!(errors[0].0, status, "{errors:?}");
        assert!(
            errors[0].1.contains(text),
            "{}: {errors:?}",
            caller.spec.call_id
        );
        reason
    };
    let reason = expect(
        &malformed,
        VbStatus::VB_ERR_PROVIDER,
        "not the JSON of a media-stream event",
    );
    assert!(reason.contains("closed after a protocol error"), "{reason}");
    expect(
        &unknown,
        VbStatus::VB_ERR_PROVIDER,
        "unknown event 'transfer'",
    );
    expect(&garbage, VbStatus::VB_ERR_PROVIDER, "payload is not base64");
    expect(
        &restart,
        VbStatus::VB_ERR_PROVIDER,
        "'start' in the middle of the call",
    );
    let reason = expect(
        &broken,
        VbStatus::VB_ERR_CONNECTION_FAILED,
        "without a 'stop' message",
    );
    assert!(
        reason.contains("phone: the twilio stream was closed"),
        "{reason}"
    );
    for caller in [&malformed, &unknown, &garbage, &restart] {
        let (code, why) = caller.wait_closed(PATIENCE);
        assert_eq!(code, 1002, "{}: {why}", caller.spec.call_id);
        assert!(why.starts_with("phone: "), "{why}");
    }

    // The healthy call was answered, and answers again after all that.
    healthy.wait("the first reply", PATIENCE, replied);
    healthy.speak(&turn(200.0));
    healthy.wait("the second reply", PATIENCE, |l| {
        l.marks.len() == 2 && l.echoed.len() == 2
    });
    let events = board.events(&healthy.spec.call_id);
    assert!(common::errors(&events).is_empty(), "{:?}", brief(&events));
    assert_eq!(
        board.state(&healthy.spec.call_id),
        VbSessionState::VB_STATE_LISTENING
    );
}

#[test]
fn a_call_that_breaks_the_protocol_before_start_never_reaches_the_host() {
    let board = Switchboard::new(echo_agent());
    let backend = phone_backend(board.clone(), "");
    let spec = CallSpec {
        start: false,
        ..CallSpec::twilio(20)
    };
    let early = dial(&backend, spec);
    let payload = "//////////8=";
    early.raw(&format!(
        r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#
    ));
    let (code, why) = early.wait_closed(PATIENCE);
    assert_eq!(code, 1002);
    assert!(why.contains("'media' before 'start'"), "{why}");

    // Nothing at all within start_timeout_ms (2 s here): closed too.
    let silent = dial(
        &backend,
        CallSpec {
            start: false,
            ..CallSpec::twilio(21)
        },
    );
    let (code, why) = silent.wait_closed(PATIENCE);
    assert_eq!(code, 1002);
    assert!(why.contains("no 'start' message within 2000 ms"), "{why}");
    assert!(!board.has(&early.spec.call_id) && !board.has(&silent.spec.call_id));
    assert_eq!(backend.active_sessions(), 0);

    // An unknown path is not a phone stream.
    let addr = backend.listening_address().unwrap();
    let refused = tokio_tungstenite::tungstenite::connect(format!("ws://{addr}/voice"));
    let e = refused.expect_err("refused").to_string();
    assert!(e.contains("404"), "{e}");
}

#[test]
fn a_refusing_host_closes_the_call_cleanly_with_its_reason() {
    let board = Switchboard::refusing("no agent on duty");
    let backend = phone_backend(board.clone(), "");
    let caller = dial(&backend, CallSpec::twilio(30));
    let (code, why) = caller.wait_closed(PATIENCE);
    assert_eq!(code, 1008, "{why}");
    assert!(why.contains("call refused: no agent on duty"), "{why}");
    assert_eq!(backend.active_sessions(), 0);
    assert!(caller.log().media_at.is_empty());
}

#[test]
fn calls_past_max_concurrent_sessions_are_refused_clearly() {
    let board = Switchboard::new(echo_agent());
    let backend = phone_backend(board.clone(), r#","max_concurrent_sessions":1"#);
    let first = dial(&backend, CallSpec::twilio(40));
    board.info(&first.spec.call_id);
    let second = dial(&backend, CallSpec::twilio(41));
    let (code, why) = second.wait_closed(PATIENCE);
    assert_eq!(code, 1013, "{why}");
    assert!(why.contains("max_concurrent_sessions (1) reached"), "{why}");
    assert!(!board.has(&second.spec.call_id));
    // The first call is untouched.
    first.speak(&turn(150.0));
    first.wait("a reply", PATIENCE, replied);
}

#[test]
fn draining_refuses_new_calls_lets_the_call_under_way_finish_then_stops() {
    let board = Switchboard::new(echo_agent());
    let backend = Arc::new(phone_backend(board.clone(), ""));
    let addr = backend.listening_address().unwrap();
    let caller = dial(&backend, CallSpec::twilio(50));
    let id = caller.spec.call_id.clone();
    board.info(&id);
    let stopping = backend.clone();
    let stopper = std::thread::spawn(move || {
        let started = Instant::now();
        stopping.stop(Duration::from_secs(20)).unwrap();
        started.elapsed()
    });
    std::thread::sleep(Duration::from_millis(200));
    // Draining: a new call is turned away at the upgrade.
    let late = Caller::dial(addr, CallSpec::twilio(51));
    late.wait("the upgrade is refused", PATIENCE, |l| l.refused.is_some());
    let refused = late.log().refused.clone().unwrap();
    assert!(refused.contains("503"), "{refused}");
    // The call under way still talks.
    caller.speak(&turn(150.0));
    caller.wait("a reply while draining", PATIENCE, replied);
    assert!(!stopper.is_finished());
    caller.stop();
    let took = stopper.join().unwrap();
    assert!(took < Duration::from_secs(15), "the stop waited {took:?}");
    let (reason, _) = board.wait_stopped(&id);
    assert!(reason.contains("ended (stop)"), "{reason}");
    // Stopped: nobody listens any more.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn the_phone_server_is_off_unless_configured_and_its_settings_are_checked() {
    // A host cannot open a phone session itself: only arriving calls have one.
    let host_made = |backend: &Backend| {
        let config = SessionConfig {
            transport: "phone".into(),
            ..SessionConfig::default()
        };
        backend
            .create_session(config, Some(echo_agent()), None)
            .unwrap_err()
    };
    let plain = common::test_backend("");
    assert_eq!(plain.listening_address(), None);
    let e = host_made(&plain);
    assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER_NOT_FOUND, "{e}");
    let backend = phone_backend(Switchboard::new(echo_agent()), "");
    let e = host_made(&backend);
    assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG, "{e}");
    assert!(e.message().contains("opened by the phone server"), "{e}");

    let bad = Backend::from_json(
        r#"{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts",
            "provider_config":{"phone":{"listen":"nowhere"}}}"#,
    )
    .unwrap_err();
    assert_eq!(bad.status(), VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(
        bad.message().contains("provider_config.phone.listen"),
        "{bad}"
    );
    let taken = backend_on(&backend.listening_address().unwrap().to_string());
    let e = taken.start().unwrap_err();
    assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(e.message().contains("cannot listen on"), "{e}");
}

fn backend_on(listen: &str) -> Backend {
    Backend::from_json(&format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts",
            "provider_config":{{"phone":{{"listen":"{listen}"}}}}}}"#
    ))
    .unwrap()
}

#[test]
fn the_test_callers_g711_matches_the_reference_values() {
    // Sun's g711.c and the recommendation: both zeros, the ends, A-law's ±8; the engine's
    // codec is checked against the same values in its unit tests, independently.
    assert_eq!(ulaw(0), 0xFF);
    assert_eq!(ulaw_to_linear(0xFF), 0);
    assert_eq!(ulaw_to_linear(0x80), 32124);
    assert_eq!(alaw(0), 0xD5);
    assert_eq!(alaw_to_linear(0xD5), 8);
    assert_eq!(alaw_to_linear(0x2A), -32256);
    for s in [-30000i16, -1000, -10, 10, 1000, 30000] {
        let back = i32::from(ulaw_to_linear(ulaw(s)));
        assert!(
            (back - i32::from(s)).abs() <= i32::from(s).abs() / 16 + 8,
            "{s} {back}"
        );
        let back = i32::from(alaw_to_linear(alaw(s)));
        assert!(
            (back - i32::from(s)).abs() <= i32::from(s).abs() / 16 + 16,
            "{s} {back}"
        );
    }
}
