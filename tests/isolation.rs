//! 100 concurrent sessions on one backend keep their state apart: every agent sees only the
//! transcripts of its own session's audio.
#![cfg(feature = "test-providers")]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::*;
use voicebackend::{Reply, SessionConfig, VbEventKind as K, VbStatus};

const SESSIONS: usize = 100;

#[test]
fn a_hundred_concurrent_sessions_each_hear_only_their_own_user() {
    let backend = test_backend(&format!(r#""max_concurrent_sessions": {SESSIONS}"#));
    let mut sessions = Vec::new();
    let mut heard = Vec::new();
    for _ in 0..SESSIONS {
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let agent_log = log.clone();
        let agent = Arc::new(
            move |transcript: &str, reply: &mut Reply| -> voicebackend::Result<()> {
                agent_log.lock().unwrap().push(transcript.to_owned());
                reply.write("ok")
            },
        );
        let session = backend
            .create_session(SessionConfig::default(), Some(agent), None)
            .unwrap();
        session.start().unwrap();
        sessions.push(session);
        heard.push(log);
    }
    assert_eq!(backend.active_sessions(), SESSIONS as u32);
    let over = backend.create_session(SessionConfig::default(), Some(echo_agent()), None);
    assert_eq!(over.unwrap_err().status(), VbStatus::VB_ERR_SESSION_LIMIT);

    // Session i speaks at its own pitch for its own length: its transcript is unique.
    let pitch = |i: usize| 100.0 + 10.0 * (i % 25) as f32;
    let length = |i: usize| 500 + 20 * i as u32;
    std::thread::scope(|scope| {
        for (chunk_index, chunk) in sessions.chunks(10).enumerate() {
            scope.spawn(move || {
                for (j, session) in chunk.iter().enumerate() {
                    let i = chunk_index * 10 + j;
                    push_all(session, &utterance(pitch(i), length(i), 16000), 16000);
                }
            });
        }
    });
    let mut all = HashSet::new();
    for (i, session) in sessions.iter().enumerate() {
        let events = events_until(session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
        let finals = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL);
        assert_eq!(finals.len(), 1, "session {i}: {finals:?}");
        assert!(
            finals[0].starts_with(&format!("pitch {} hz for ", pitch(i))),
            "session {i}: {finals:?}"
        );
        assert_eq!(
            *heard[i].lock().unwrap(),
            finals,
            "session {i}'s agent heard its own transcript only"
        );
        assert!(
            all.insert(finals[0].clone()),
            "two sessions produced {:?}",
            finals[0]
        );
    }
    let health = backend.health();
    assert_eq!(health.active_sessions, SESSIONS as u32);
    assert_eq!(health.frames_dropped, 0, "{health:?}");
    drop(sessions);
    assert_eq!(backend.active_sessions(), 0);
}
