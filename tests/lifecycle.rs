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
