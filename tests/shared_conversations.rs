//! Conversations shared by the processes of a deployment (`persistence.shared_dir`), through the
//! Rust API on the test providers: a session with a `conversation_id` keeps its history in the
//! shared directory; a session opened with that id in another backend goes on with it when the
//! first one handed it off (its backend stopped) — or died (`tests/livekit_workers.rs` kills a
//! worker process and has the room brought back); a conversation its host ended is over.
#![cfg(feature = "test-providers")]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};
use voicebackend::{Backend, SessionConfig, VbStatus};

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("shared-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A started backend on the test providers sharing conversations through `dir` (no store of
/// its own).
fn backend_sharing(dir: &Path) -> Backend {
    test_backend(&format!(
        r#""persistence":{{"path":"","shared_dir":{}}}"#,
        json!(dir)
    ))
}

fn in_conversation(id: &str) -> SessionConfig {
    SessionConfig {
        user_id: "caller-7".into(),
        conversation_id: Some(id.into()),
        ..SessionConfig::default()
    }
}

/// One user turn at `f0`, played out until the session listens again.
fn hold_turn(session: &voicebackend::Session, f0: f32) {
    push_all(session, &utterance(f0, 800, 16000), 16000);
    play_until(session, reply_finished());
}

/// The records in `dir`, by file name.
fn records(dir: &Path) -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[test]
fn a_conversation_handed_off_by_a_stopping_backend_goes_on_in_another_with_its_history() {
    let dir = scratch("handoff");
    let first = backend_sharing(&dir);
    let session = first
        .create_session(in_conversation("call:42"), Some(echo_agent()), None)
        .unwrap();
    session.start().unwrap();
    hold_turn(&session, 150.0);
    let said = session.history();
    assert_eq!(said.len(), 1);
    first.flush_store().unwrap();
    let stored = records(&dir);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].0, "call%3A42.json");
    assert_eq!(stored[0].1["conversation_id"], "call:42");
    assert_eq!(stored[0].1["history"].as_array().unwrap().len(), 1);
    // The process stops while the caller is still there: the conversation is handed off.
    first.stop(std::time::Duration::ZERO).unwrap();
    drop(session);
    assert_eq!(records(&dir).len(), 1, "kept for the next process");

    let second = backend_sharing(&dir);
    let session = second
        .create_session(in_conversation("call:42"), Some(echo_agent()), None)
        .unwrap();
    assert_eq!(session.history(), said, "it goes on with the history");
    session.start().unwrap();
    hold_turn(&session, 200.0);
    let history = session.history();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0], said[0]);
    assert!(
        history[1]
            .transcript
            .as_deref()
            .unwrap()
            .starts_with("pitch 200 hz")
    );
    second.flush_store().unwrap();
    let stored = records(&dir);
    assert_eq!(stored[0].1["history"].as_array().unwrap().len(), 2);
    // Its host ends it: the conversation is over, its record gone.
    session.stop().unwrap();
    second.flush_store().unwrap();
    assert!(records(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_conversation_its_host_ended_is_over_and_the_same_id_starts_afresh() {
    let dir = scratch("over");
    let backend = backend_sharing(&dir);
    let session = backend
        .create_session(in_conversation("call-9"), Some(echo_agent()), None)
        .unwrap();
    session.start().unwrap();
    hold_turn(&session, 150.0);
    session.stop().unwrap();
    backend.flush_store().unwrap();
    assert!(records(&dir).is_empty());
    let again = backend
        .create_session(in_conversation("call-9"), Some(echo_agent()), None)
        .unwrap();
    assert!(again.history().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_session_that_never_started_leaves_the_conversation_to_the_next_one() {
    let dir = scratch("refused");
    let backend = backend_sharing(&dir);
    let session = backend
        .create_session(in_conversation("call-3"), Some(echo_agent()), None)
        .unwrap();
    session.start().unwrap();
    hold_turn(&session, 150.0);
    backend.stop(std::time::Duration::ZERO).unwrap();
    drop(session);
    // A host that opens the conversation and drops it unstarted (a refused call) ends nothing.
    let backend = backend_sharing(&dir);
    let unstarted = backend
        .create_session(in_conversation("call-3"), Some(echo_agent()), None)
        .unwrap();
    assert_eq!(unstarted.history().len(), 1);
    drop(unstarted);
    backend.flush_store().unwrap();
    let next = backend
        .create_session(in_conversation("call-3"), Some(echo_agent()), None)
        .unwrap();
    assert_eq!(next.history().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_shared_dir_a_conversation_id_keeps_nothing_beyond_the_session() {
    let backend = test_backend(r#""persistence":{"path":""}"#);
    let session = backend
        .create_session(in_conversation("call-1"), Some(echo_agent()), None)
        .unwrap();
    session.start().unwrap();
    hold_turn(&session, 150.0);
    session.stop().unwrap();
    let again = backend
        .create_session(in_conversation("call-1"), Some(echo_agent()), None)
        .unwrap();
    assert!(again.history().is_empty());
}

#[test]
fn bad_conversation_ids_and_leases_are_configuration_errors_naming_the_key() {
    let backend = test_backend(r#""persistence":{"path":""}"#);
    for id in [String::new(), "x".repeat(201)] {
        let Err(e) = backend.create_session(in_conversation(&id), Some(echo_agent()), None) else {
            panic!("a conversation_id of {} characters was taken", id.len());
        };
        assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
        assert!(e.message().contains("conversation_id"), "{e}");
    }
    for lease in [0, 999, 600_001] {
        let json = format!(
            r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts","persistence":{{"lease_ms":{lease}}}}}"#
        );
        let e = Backend::from_json(&json).expect_err("refused");
        assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
        assert!(e.message().contains("persistence.lease_ms"), "{e}");
    }
}
