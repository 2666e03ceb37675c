//! Panics in host code that runs inside the engine end only what they belong to: a panicking
//! agent its own turn, a panicking audio processor its own session. The process, the backend and
//! the other sessions go on. (Panics inside the C functions themselves are caught by their one
//! guard, `src/ffi/mod.rs`; `tests/ffi_guard.rs` checks that every exported function uses it.)
#![cfg(feature = "test-providers")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use voicebackend::rt::processor::AudioProcessor;
use voicebackend::{
    Reply, Session, SessionConfig, VbEventKind as K, VbSessionState as S, VbStatus,
};

/// Pushes one user turn into each session at once, from threads of their own: into `a` (as far
/// as it takes audio) `a_first` and then 150 Hz, into `b` 200 Hz.
fn both_speak(a: &Session, a_first: &[i16], b: &Session) {
    let mut a_audio = a_first.to_vec();
    a_audio.extend(utterance(150.0, 600, 16000));
    std::thread::scope(|scope| {
        scope.spawn(|| push_while_taken(a, &a_audio));
        scope.spawn(|| push_all(b, &utterance(200.0, 600, 16000), 16000));
    });
}

/// `push_all` at 16 kHz, for a session that may end meanwhile: stops at the first refusal.
fn push_while_taken(session: &Session, pcm: &[i16]) {
    let deadline = std::time::Instant::now() + PATIENCE;
    for piece in pcm.chunks(320) {
        while session.writable_samples() < piece.len() {
            if session.process_audio(&[]).is_err() {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no room for audio");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if session.process_audio(piece).is_err() {
            return;
        }
    }
}

#[test]
fn a_panicking_agent_ends_only_its_own_turn() {
    let backend = test_backend("");
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    // Panics on its first turn, answers the next ones.
    let flaky = Arc::new(
        move |transcript: &str, reply: &mut Reply| -> voicebackend::Result<()> {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                reply.write("half a sentence")?;
                panic!("agent bug on the first turn");
            }
            reply.write(&format!("you said {transcript}"))
        },
    );
    let a = backend
        .create_session(SessionConfig::default(), Some(flaky), None)
        .unwrap();
    let b = started_session(&backend, echo_agent());
    a.start().unwrap();

    both_speak(&a, &[], &b);
    let events = events_until(&a, |e| e.kind == K::VB_EVENT_ERROR);
    let error = events.last().unwrap();
    assert_eq!(error.error, VbStatus::VB_ERR_PANIC, "{error:?}");
    // What the agent wrote before it panicked is still spoken; then the session listens again.
    play_until(&a, back_to_listening);
    assert_eq!(a.state(), S::VB_STATE_LISTENING);
    // The other session's turn, at the same time, went through untouched.
    let events = events_until(&b, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    assert!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE)[0].starts_with("you said pitch 200 hz"),
        "{events:?}"
    );

    // The panicking session's next turn is answered.
    push_all(&a, &utterance(150.0, 600, 16000), 16000);
    let events = events_until(&a, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    assert!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE)[0].starts_with("you said pitch 150 hz"),
        "{events:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(backend.active_sessions(), 2);
}

/// What only session A is sent: a frame the processor panics on.
const POISON: i16 = 12345;

/// A processor that panics on a frame made of `POISON` (every session has one; only A is sent
/// such a frame).
struct Bomb;

impl AudioProcessor for Bomb {
    fn name(&self) -> &str {
        "bomb"
    }
    fn order(&self) -> i32 {
        0
    }
    fn process(&mut self, pcm: &mut [i16], _: u32) {
        if pcm.iter().all(|s| *s == POISON) {
            panic!("processor bug");
        }
    }
}

/// Session A's processor panics on the realtime side: A reports `VB_ERR_PANIC` and ends, refuses
/// audio and control calls from then on, and stops and frees cleanly; B, on the same backend
/// (and with `realtime_threads` on the same pool thread), holds its conversation as if nothing
/// happened.
fn a_panicking_processor_ends_only_its_own_session(extra: &str) {
    let backend = voicebackend::Backend::from_json(&format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts"{extra}}}"#
    ))
    .unwrap();
    backend
        .add_processor(Arc::new(|| Box::new(Bomb) as Box<dyn AudioProcessor>))
        .unwrap();
    backend.start().unwrap();
    let a = started_session(&backend, echo_agent());
    let b = started_session(&backend, echo_agent());

    // 20 ms of poison at 16 kHz: the session's internal rate, so the frame reaches the
    // processors as it is.
    both_speak(&a, &[POISON; 320], &b);
    let events = events_until(&a, |e| e.kind == K::VB_EVENT_ERROR);
    let error = events.last().unwrap();
    assert_eq!(error.error, VbStatus::VB_ERR_PANIC, "{error:?}");
    let text = error.text.as_deref().unwrap_or_default();
    assert!(text.contains("processor bug"), "{text}");
    events_until(&a, |e| {
        e.kind == K::VB_EVENT_STATE_CHANGED && e.state == S::VB_STATE_STOPPED
    });
    assert_eq!(a.state(), S::VB_STATE_STOPPED);
    let refused = a.process_audio(&silence(20, 16000)).unwrap_err();
    assert_eq!(refused.status(), VbStatus::VB_ERR_INVALID_STATE);
    assert!(refused.message().contains("panicked"), "{refused}");
    assert_eq!(
        a.say("hello").unwrap_err().status(),
        VbStatus::VB_ERR_INVALID_STATE
    );

    let events = events_until(&b, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    assert!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE)[0].starts_with("you said pitch 200 hz"),
        "{events:?}"
    );
    let (_, audio) = play_until(&b, back_to_listening);
    assert!(!audio.is_empty(), "B's reply was played");

    a.stop().unwrap();
    drop(a);
    // B goes on after A is gone, and a new session works too.
    push_all(&b, &utterance(250.0, 600, 16000), 16000);
    let events = events_until(&b, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    assert!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE)[0].starts_with("you said pitch 250 hz"),
        "{events:?}"
    );
    let c = started_session(&backend, echo_agent());
    push_all(&c, &utterance(300.0, 600, 16000), 16000);
    let events = events_until(&c, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    assert!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE)[0].starts_with("you said pitch 300 hz"),
        "{events:?}"
    );
    assert_eq!(backend.active_sessions(), 2);
}

#[test]
fn a_panicking_processor_ends_only_its_own_session_on_its_own_thread() {
    a_panicking_processor_ends_only_its_own_session("");
}

#[test]
fn a_panicking_processor_ends_only_its_own_session_in_the_realtime_pool() {
    a_panicking_processor_ends_only_its_own_session(r#","audio":{"realtime_threads":1}"#);
}
