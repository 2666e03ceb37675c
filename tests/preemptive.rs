//! Preemptive replies (`turn.preemptive_ms`): the agent starts on the turn so far when the user
//! pauses, before the turn has ended; when the turn ends there, that transcript is the turn's and
//! the reply plays at once; it is cancelled (the agent sees `Reply::is_cancelled`) when the user
//! goes on. A cancelled early reply never reaches the host: no event, no audio, no history.
//!
//! The user's audio is pushed in two parts — the speech and a pause longer than `preemptive_ms`
//! but shorter than `turn.silence_ms`, then the rest — so the test knows the turn has not ended
//! while it looks at the agent.
#![cfg(feature = "test-providers")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use voicebackend::{
    Agent, Backend, Error, Reply, Session, SessionConfig, VbEventKind as K, VbSessionState as S,
    VbStatus,
};

/// One call of the agent: the transcript it was given and whether its reply was cancelled.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    transcript: String,
    cancelled: bool,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// An echo agent ("you said <transcript>") that records its calls. Its first reply (only) waits
/// up to 5 s for a cancellation between "you said " and the transcript, so that a cancellation
/// of an early reply is seen by the agent.
fn recording_agent(first_waits: bool) -> (Arc<dyn Agent>, Calls) {
    let calls: Calls = Arc::default();
    let log = calls.clone();
    let agent = Arc::new(move |transcript: &str, reply: &mut Reply| {
        let index = {
            let mut calls = log.lock().unwrap();
            calls.push(Call {
                transcript: transcript.to_owned(),
                cancelled: false,
            });
            calls.len() - 1
        };
        reply.write("you said ")?;
        if first_waits && index == 0 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !reply.is_cancelled() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if reply.is_cancelled() {
            log.lock().unwrap()[index].cancelled = true;
            return Err(Error::invalid_state("cancelled"));
        }
        reply.write(transcript)?;
        reply.end()
    });
    (agent, calls)
}

fn session(backend: &Backend, agent: Arc<dyn Agent>) -> Session {
    let session = backend
        .create_session(SessionConfig::default(), Some(agent), None)
        .expect("create_session");
    session.start().expect("start");
    session
}

/// Waits until `calls` satisfies `ready` (at most [`PATIENCE`]).
fn wait_for(calls: &Calls, what: &str, ready: impl Fn(&[Call]) -> bool) -> Vec<Call> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = calls.lock().unwrap().clone();
        if ready(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The events the session has now, without waiting.
fn events_now(session: &Session) -> Vec<voicebackend::Event> {
    std::iter::from_fn(|| session.poll_event().expect("poll_event")).collect()
}

/// 800 ms of speech at 150 Hz and a 400 ms pause: past `preemptive_ms` (200), short of the
/// 500 ms of silence that ends the turn (webrtc-vad still calls the first 100 ms or so voiced).
fn speech_then_a_pause() -> Vec<i16> {
    let mut audio = speech(150.0, 800, 16000);
    audio.extend(silence(400, 16000));
    audio
}

/// Preemptive replies on, and a transcript without the audio's length: the same words for the
/// turn heard in its pause and for the whole turn.
const SAME_WORDS: &str = r#""turn":{"preemptive_ms":200},"stt_config":{"say_length":false}"#;

/// A session of a backend on the test providers with `config`, whose user has spoken and paused
/// ([`speech_then_a_pause`]: the turn has not ended), returned once the agent's early call came.
/// The backend is returned to be kept alive.
fn spoken_and_paused(config: &str, first_waits: bool) -> (Backend, Session, Calls) {
    let backend = test_backend(config);
    let (agent, calls) = recording_agent(first_waits);
    let session = session(&backend, agent);
    push_all(&session, &speech_then_a_pause(), 16000);
    wait_for(&calls, "the early call", |c| !c.is_empty());
    (backend, session, calls)
}

#[test]
fn the_agent_starts_in_the_pause_and_its_reply_plays_when_the_turn_ends_as_heard() {
    // The turn has not ended, and the agent is already answering it.
    let (_backend, session, calls) = spoken_and_paused(SAME_WORDS, false);
    let early = calls.lock().unwrap().clone();
    assert_eq!(early[0].transcript, "pitch 150 hz");
    std::thread::sleep(Duration::from_millis(200));
    let so_far: Vec<K> = kinds(&events_now(&session))
        .into_iter()
        .filter(|k| *k != K::VB_EVENT_TRANSCRIPT_PARTIAL) // the turn's own STT, still listening
        .collect();
    assert_eq!(
        so_far,
        [K::VB_EVENT_STATE_CHANGED, K::VB_EVENT_SPEECH_STARTED],
        "the host hears nothing of a held reply"
    );
    assert_eq!(session.state(), S::VB_STATE_LISTENING);
    assert_eq!(
        readable_over_the_next_50_ms(&session),
        0,
        "nothing plays yet"
    );

    // The closing silence ends the turn; the transcript is the one the agent answered.
    push_all(&session, &silence(500, 16000), 16000);
    let (events, audio) = play_until(&session, reply_finished());
    assert_eq!(
        texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL),
        ["pitch 150 hz"]
    );
    assert_eq!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE),
        ["you said pitch 150 hz"]
    );
    assert_eq!(calls.lock().unwrap().len(), 1, "answered once: {calls:?}");
    let order = kinds(&events);
    let at = |k| order.iter().position(|x| *x == k).unwrap();
    assert!(at(K::VB_EVENT_SPEECH_STOPPED) < at(K::VB_EVENT_TRANSCRIPT_FINAL));
    assert!(at(K::VB_EVENT_TRANSCRIPT_FINAL) < at(K::VB_EVENT_AGENT_RESPONSE));
    let states: Vec<S> = events
        .iter()
        .filter(|e| e.kind == K::VB_EVENT_STATE_CHANGED)
        .map(|e| e.state)
        .collect();
    assert_eq!(
        states,
        [
            S::VB_STATE_PROCESSING,
            S::VB_STATE_SPEAKING,
            S::VB_STATE_LISTENING
        ]
    );
    let metrics = events
        .iter()
        .find(|e| e.kind == K::VB_EVENT_TURN_METRICS)
        .unwrap()
        .metrics;
    assert!(
        metrics.agent_first_text_us < metrics.stt_final_us,
        "the agent's first words came before the final transcript: {metrics:?}"
    );
    // "you said pitch 150 hz": 21 characters of 20 ms tone.
    assert!(
        audio.len() >= 21 * 20 * 16 - 16 * 40,
        "{} samples",
        audio.len()
    );
    let history = session.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].transcript.as_deref(), Some("pitch 150 hz"));
    assert_eq!(history[0].reply.as_deref(), Some("you said pitch 150 hz"));
}

#[test]
fn the_early_reply_is_cancelled_when_the_user_goes_on_and_the_whole_turn_is_answered() {
    let (_backend, session, calls) = spoken_and_paused(SAME_WORDS, true);

    // The user goes on: the agent sees its early reply cancelled.
    push_all(&session, &speech(150.0, 600, 16000), 16000);
    wait_for(&calls, "the cancellation", |c| c[0].cancelled);

    push_all(&session, &silence(800, 16000), 16000);
    let (events, _) = play_until(&session, reply_finished());
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(!calls[1].cancelled);
    assert_eq!(
        texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL).len(),
        1,
        "one turn"
    );
    assert_eq!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE),
        ["you said pitch 150 hz"],
        "only the kept reply is told"
    );
    assert!(!kinds(&events).contains(&K::VB_EVENT_INTERRUPTED));
    assert!(!kinds(&events).contains(&K::VB_EVENT_ERROR), "{events:#?}");
    assert_eq!(
        session.history().len(),
        1,
        "the cancelled early reply is not history"
    );
}

#[test]
fn a_turn_that_ends_in_its_pause_is_transcribed_once_from_the_pause() {
    // With its length in the transcript, the STT tells which audio it heard: the turn up to
    // the pause (what the preview was given), not the turn with its whole closing silence.
    let (_backend, session, calls) = spoken_and_paused(r#""turn":{"preemptive_ms":200}"#, false);
    let early = calls.lock().unwrap().clone();
    push_all(&session, &silence(500, 16000), 16000);
    let (events, _) = play_until(&session, reply_finished());
    let finals = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL);
    assert_eq!(
        finals,
        [early[0].transcript.clone()],
        "the preview's transcript is the turn's"
    );
    let ms: u32 = finals[0]
        .strip_prefix("pitch 150 hz for ")
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{finals:?}"));
    assert!(
        ms < 1300,
        "{ms} ms: the turn's own STT (800 ms of speech and 500 ms or more of silence) was not used"
    );
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE),
        [format!("you said {}", finals[0])]
    );
}

#[test]
fn a_host_interrupt_cancels_an_early_reply_silently_and_the_turn_is_still_answered() {
    let (_backend, session, calls) = spoken_and_paused(SAME_WORDS, true);
    session.interrupt().expect("interrupt");
    wait_for(&calls, "the cancellation", |c| c[0].cancelled);
    push_all(&session, &silence(500, 16000), 16000);
    let (events, _) = play_until(&session, reply_finished());
    assert!(
        !kinds(&events).contains(&K::VB_EVENT_INTERRUPTED),
        "nothing the host heard was interrupted"
    );
    assert_eq!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE),
        ["you said pitch 150 hz"]
    );
    assert_eq!(calls.lock().unwrap().len(), 2);
}

#[test]
fn a_failing_stt_fails_the_turn_once_and_the_session_listens_again() {
    // The preview fails as the turn's own request would: the turn is reported once, as without
    // preemptive replies, and nothing waits for a transcript that will never come. First with
    // the preview failed before the turn ends (the turn's own STT then goes on and fails), then
    // with the turn ending at once (the preview, still running, is the turn's and fails).
    let backend = test_backend(r#""turn":{"preemptive_ms":200},"stt_config":{"fail_with":"boom"}"#);
    let (agent, calls) = recording_agent(false);
    let session = session(&backend, agent);
    for pause in [Duration::from_millis(500), Duration::ZERO] {
        push_all(&session, &speech_then_a_pause(), 16000);
        std::thread::sleep(pause);
        push_all(&session, &silence(500, 16000), 16000);
        let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
        assert_eq!(
            errors(&events),
            [(
                VbStatus::VB_ERR_PROVIDER,
                "stt test-pitch-stt: boom".to_owned()
            )]
        );
        listening_after_failed_turn(&session, &events);
    }
    assert!(calls.lock().unwrap().is_empty());
    assert!(
        events_now(&session)
            .iter()
            .all(|e| e.kind != K::VB_EVENT_ERROR),
        "each turn is reported once"
    );
}

#[test]
fn preemptive_ms_must_come_before_the_end_of_the_turn_and_needs_an_agent() {
    let refused = |json: &str| {
        Backend::from_json(json)
            .and_then(|b| b.start().map(|()| b))
            .err()
            .map(|e| e.message().to_owned())
    };
    let stt_tts = r#""provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts","persistence":{"path":""}"#;
    for (turn, expected) in [
        (
            r#"{"preemptive_ms":500}"#,
            "turn.preemptive_ms: 500 must be 0 (off) or from 40 up to less than turn.silence_ms (500)",
        ),
        (
            r#"{"preemptive_ms":20}"#,
            "turn.preemptive_ms: 20 must be 0 (off)",
        ),
        (
            r#"{"end_of_turn":"smart_turn","preemptive_ms":1500}"#,
            "less than turn.max_wait_ms (1500)",
        ),
    ] {
        let message = refused(&format!(r#"{{{stt_tts},"turn":{turn}}}"#));
        assert!(
            message.as_deref().is_some_and(|m| m.contains(expected)),
            "{turn}: {message:?}"
        );
    }
    let message = refused(
        r#"{"provider":"local","pipeline_type":"s2s","s2s_provider":"test-echo-s2s",
            "persistence":{"path":""},"turn":{"preemptive_ms":200}}"#,
    );
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("a speech-to-speech pipeline has no agent to start early")),
        "{message:?}"
    );
    assert_eq!(
        refused(&format!(r#"{{{stt_tts},"turn":{{"preemptive_ms":499}}}}"#)),
        None
    );
}

#[test]
fn whisper_hears_the_same_words_in_the_pause_and_at_the_end_of_a_spoken_question() {
    let backend = Backend::from_json(
        r#"{"provider":"local","stt_provider":"whisper","tts_provider":"test-tone-tts",
            "persistence":{"path":""},"turn":{"preemptive_ms":200}}"#,
    )
    .expect("backend");
    backend.start().expect("start");
    let (agent, calls) = recording_agent(false);
    let session = session(&backend, agent);
    let mut audio = silence(300, 16000);
    audio.extend(espeak_speech("What is the weather like today?", "en-us"));
    // eSpeak ends its file with a little silence of its own: 400 ms in all stays short of the
    // 500 ms that end the turn (webrtc-vad calls the first 100 ms or so voiced).
    let voiced_end = audio.iter().rposition(|s| s.unsigned_abs() > 200).unwrap();
    audio.truncate(voiced_end + 1);
    audio.extend(silence(400, 16000));
    push_all(&session, &audio, 16000);
    let early = wait_for(&calls, "the early call", |c| !c.is_empty());
    assert!(
        early[0].transcript.to_lowercase().contains("weather"),
        "{early:?}"
    );
    push_all(&session, &silence(600, 16000), 16000);
    let (events, _) = play_until(&session, reply_finished());
    let finals = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL);
    assert_eq!(
        calls.lock().unwrap().len(),
        1,
        "the preview {:?} and the final {finals:?} have the same words: answered once",
        early[0].transcript
    );
    assert_eq!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE),
        [format!("you said {}", early[0].transcript)]
    );
}
