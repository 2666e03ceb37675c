//! Backend and session lifecycles through the Rust API: every call in the wrong state, every bad
//! configuration, gives its status and a message that says what was wrong.
#![cfg(feature = "test-providers")]

mod common;

use common::*;
use voicebackend::{Backend, SessionConfig, VbHealthStatus, VbSessionState as S, VbStatus};

fn status<T: std::fmt::Debug>(result: voicebackend::Result<T>) -> (VbStatus, String) {
    let e = result.unwrap_err();
    (e.status(), e.message().to_owned())
}

const BASE: &str =
    r#""provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts""#;

#[test]
fn unknown_providers_are_named_in_the_error() {
    let (code, message) = status(Backend::from_json(r#"{"provider":"livekit-cloud"}"#));
    assert_eq!(code, VbStatus::VB_ERR_PROVIDER_NOT_FOUND);
    assert!(
        message.contains("livekit-cloud") && message.contains("local"),
        "{message}"
    );
    let (code, message) = status(Backend::from_json(
        r#"{"provider":"local","stt_provider":"nope","tts_provider":"test-tone-tts"}"#,
    ));
    assert_eq!(code, VbStatus::VB_ERR_PROVIDER_NOT_FOUND);
    assert!(message.contains("stt provider named 'nope'"), "{message}");
    let (code, message) = status(Backend::from_json(&format!(
        r#"{{{BASE},"provider_config":{{"url":"x"}}}}"#
    )));
    assert_eq!(code, VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(message.starts_with("provider_config.url"), "{message}");
    let (code, message) = status(Backend::from_json(&format!(
        r#"{{{BASE},"stt_config":{{"bogus":1}}}}"#
    )));
    assert_eq!(code, VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(message.contains("bogus"), "{message}");
}

#[test]
fn backend_calls_in_the_wrong_state_are_refused() {
    let backend = Backend::from_json(&format!("{{{BASE}}}")).unwrap();
    assert_eq!(backend.health().status, VbHealthStatus::VB_HEALTH_UNHEALTHY);
    let (code, _) =
        status(backend.create_session(SessionConfig::default(), Some(echo_agent()), None));
    assert_eq!(code, VbStatus::VB_ERR_INVALID_STATE);
    backend.start().unwrap();
    assert_eq!(status(backend.start()).0, VbStatus::VB_ERR_INVALID_STATE);
    assert_eq!(backend.health().status, VbHealthStatus::VB_HEALTH_HEALTHY);
    backend.stop(std::time::Duration::ZERO).unwrap();
    assert_eq!(
        status(backend.stop(std::time::Duration::ZERO)).0,
        VbStatus::VB_ERR_INVALID_STATE
    );
    assert_eq!(status(backend.start()).0, VbStatus::VB_ERR_INVALID_STATE);
    let (code, message) =
        status(backend.create_session(SessionConfig::default(), Some(echo_agent()), None));
    assert_eq!(code, VbStatus::VB_ERR_INVALID_STATE);
    assert!(message.contains("stopp"), "{message}");
    assert_eq!(backend.health().status, VbHealthStatus::VB_HEALTH_UNHEALTHY);
}

#[test]
fn session_calls_in_the_wrong_state_are_refused() {
    let backend = test_backend("");
    let session = backend
        .create_session(SessionConfig::default(), Some(echo_agent()), None)
        .unwrap();
    assert_eq!(session.state(), S::VB_STATE_IDLE);
    let (code, message) = status(session.process_audio(&[0; 320]));
    assert_eq!(code, VbStatus::VB_ERR_INVALID_STATE);
    assert!(message.contains("not been started"), "{message}");
    assert_eq!(
        status(session.read_audio(&mut [0; 320])).0,
        VbStatus::VB_ERR_INVALID_STATE
    );
    assert_eq!(status(session.say("hi")).0, VbStatus::VB_ERR_INVALID_STATE);
    assert_eq!(
        status(session.interrupt()).0,
        VbStatus::VB_ERR_INVALID_STATE
    );
    session.start().unwrap();
    assert_eq!(status(session.start()).0, VbStatus::VB_ERR_INVALID_STATE);
    session.process_audio(&[0; 320]).unwrap();
    session.stop().unwrap();
    session.stop().unwrap();
    assert_eq!(session.state(), S::VB_STATE_STOPPED);
    let (code, message) = status(session.process_audio(&[0; 320]));
    assert_eq!(code, VbStatus::VB_ERR_INVALID_STATE);
    assert!(message.contains("stopped"), "{message}");
    assert_eq!(status(session.start()).0, VbStatus::VB_ERR_INVALID_STATE);
    assert_eq!(backend.active_sessions(), 0);
}

#[test]
fn session_configuration_is_checked() {
    let backend = test_backend("");
    let (code, message) = status(backend.create_session(SessionConfig::default(), None, None));
    assert_eq!(code, VbStatus::VB_ERR_INVALID_ARGUMENT);
    assert!(message.contains("agent"), "{message}");
    let config = SessionConfig {
        transport: "webrtc".into(),
        ..SessionConfig::default()
    };
    let (code, message) = status(backend.create_session(config, Some(echo_agent()), None));
    assert_eq!(code, VbStatus::VB_ERR_PROVIDER_NOT_FOUND);
    assert!(message.contains("webrtc"), "{message}");
    let config = SessionConfig {
        output_sample_rate: 22050,
        ..SessionConfig::default()
    };
    let (code, message) = status(backend.create_session(config, Some(echo_agent()), None));
    assert_eq!(code, VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(
        message.starts_with("output_sample_rate: 22050"),
        "{message}"
    );
}

#[test]
fn an_input_overrun_is_counted_and_reported() {
    let backend = test_backend("");
    let session = session_at(&backend, 16000);
    // The input ring holds 500 ms; 2 s in one call overflows it.
    let outcome = session.process_audio(&speech(150.0, 2000, 16000)).unwrap();
    assert_eq!(outcome.accepted, 8000);
    assert_eq!(outcome.dropped, 24000);
    let events = events_until(&session, |e| {
        e.kind == voicebackend::VbEventKind::VB_EVENT_AUDIO_DROPPED
    });
    assert_eq!(events.last().unwrap().dropped_samples, 24000);
    let health = backend.health();
    assert_eq!(health.frames_dropped, 24000 / 320);
    assert_eq!(health.status, VbHealthStatus::VB_HEALTH_DEGRADED);
    assert_eq!(
        backend.health().status,
        VbHealthStatus::VB_HEALTH_HEALTHY,
        "degraded only until the next check"
    );
}

/// Waits until `session` is stopped.
fn wait_stopped(session: &voicebackend::Session) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while session.state() != S::VB_STATE_STOPPED {
        assert!(
            std::time::Instant::now() < deadline,
            "the session did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A callback may stop its own session; that stop cannot wait for the callback itself. The next
/// stop from another thread (the host's `vb_session_free`) must: after it returns, no callback of
/// the session runs any more, also when an earlier stop ended the session. (The C ABI fuzzer
/// found a free that returned while the agent call that had stopped the session still ran, and
/// used the host's freed `user_data`.)
#[test]
fn a_stop_waits_for_the_callback_that_stopped_the_session_from_inside() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use voicebackend::{Event, Reply, Session, VbEventKind as K};

    type Slot = Arc<Mutex<Option<Arc<Session>>>>;
    fn stop_from_inside(slot: &Slot, finished: &AtomicBool) {
        let session = slot.lock().unwrap().take().expect("the session");
        session.stop().expect("stop from inside a callback");
        drop(session);
        // Still inside the callback: a stop on another thread waits for this.
        std::thread::sleep(std::time::Duration::from_millis(300));
        finished.store(true, Ordering::SeqCst);
    }

    for from_agent in [true, false] {
        let backend = test_backend("");
        let slot: Slot = Arc::new(Mutex::new(None));
        let finished = Arc::new(AtomicBool::new(false));
        let (agent_slot, agent_finished) = (slot.clone(), finished.clone());
        let agent = Arc::new(move |_: &str, _: &mut Reply| -> voicebackend::Result<()> {
            if from_agent {
                stop_from_inside(&agent_slot, &agent_finished);
            }
            Ok(())
        });
        let (event_slot, event_finished) = (slot.clone(), finished.clone());
        let on_event = Arc::new(move |event: &Event| {
            if !from_agent && event.kind == K::VB_EVENT_SPEECH_STARTED {
                stop_from_inside(&event_slot, &event_finished);
            }
        });
        let session = Arc::new(
            backend
                .create_session(SessionConfig::default(), Some(agent), Some(on_event))
                .unwrap(),
        );
        *slot.lock().unwrap() = Some(session.clone());
        session.start().unwrap();
        let pcm = utterance(150.0, 600, 16000);
        for piece in pcm.chunks(320) {
            if session.process_audio(piece).is_err() {
                break; // stopped meanwhile (by the event callback)
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        wait_stopped(&session);
        session.stop().unwrap();
        assert!(
            finished.load(Ordering::SeqCst),
            "stop returned while the {} that stopped the session still ran",
            if from_agent {
                "agent call"
            } else {
                "event callback"
            }
        );
        drop(session);
    }
}

/// An agent call that outlived its turn's `agent_timeout_ms` runs beside the next turn's. When
/// both stop their session from inside, neither waits for the other (each would wait forever),
/// and a stop from the host's thread still waits for both.
#[test]
fn agent_calls_that_stop_their_session_together_do_not_wait_for_each_other() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier, Mutex};
    use voicebackend::{Reply, Session};

    let backend = test_backend(r#""agent_timeout_ms":300"#);
    let slot: Arc<Mutex<Option<Arc<Session>>>> = Arc::new(Mutex::new(None));
    let both = Arc::new(Barrier::new(2));
    let (stopped, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (agent_slot, agent_stopped, agent_finished) =
        (slot.clone(), stopped.clone(), finished.clone());
    let agent = Arc::new(move |_: &str, _: &mut Reply| -> voicebackend::Result<()> {
        // The first turn's call waits here past its timeout, until the second turn's comes.
        both.wait();
        let session = agent_slot.lock().unwrap().clone().expect("the session");
        session.stop().expect("stop from inside");
        agent_stopped.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(200));
        agent_finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let session = Arc::new(
        backend
            .create_session(SessionConfig::default(), Some(agent), None)
            .unwrap(),
    );
    *slot.lock().unwrap() = Some(session.clone());
    session.start().unwrap();
    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    events_until(&session, |e| e.error == VbStatus::VB_ERR_TIMEOUT);
    push_all(&session, &utterance(200.0, 600, 16000), 16000);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stopped.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the two stops from inside waited for each other"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    slot.lock().unwrap().take();
    session.stop().unwrap();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        2,
        "stop returned while agent calls still ran"
    );
}
