//! Conversations through the Rust API on the test providers: turns, replies, barge-in, greetings,
//! failures of the agent and of providers, speech-to-speech.
#![cfg(feature = "test-providers")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use voicebackend::rt::processor::AudioProcessor;
use voicebackend::{
    Agent, Error, Reply, SessionConfig, Turn, VbEventKind as K, VbSessionState as S, VbStatus,
};

#[test]
fn a_full_turn_goes_from_speech_to_reply_audio_at_the_host_rate() {
    let backend = test_backend("");
    let session = session_at(&backend, 48000);
    push_all(&session, &utterance(150.0, 1200, 48000), 48000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_TURN_METRICS);
    let finals = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL);
    assert_eq!(finals.len(), 1);
    assert!(finals[0].starts_with("pitch 150 hz for "), "{finals:?}");
    assert_eq!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE),
        [format!("you said {}", finals[0])]
    );
    let order: Vec<K> = kinds(&events)
        .into_iter()
        .filter(|k| *k != K::VB_EVENT_STATE_CHANGED)
        .collect();
    let position = |k| order.iter().position(|x| *x == k).unwrap();
    assert!(position(K::VB_EVENT_SPEECH_STARTED) < position(K::VB_EVENT_SPEECH_STOPPED));
    assert!(position(K::VB_EVENT_SPEECH_STOPPED) < position(K::VB_EVENT_TRANSCRIPT_FINAL));
    assert!(position(K::VB_EVENT_TRANSCRIPT_FINAL) < position(K::VB_EVENT_AGENT_RESPONSE));
    let metrics = events.last().unwrap().metrics;
    assert!(metrics.stt_final_us <= metrics.agent_first_text_us);
    assert!(metrics.agent_first_text_us <= metrics.tts_first_audio_us);
    assert!(metrics.tts_first_audio_us <= metrics.first_output_audio_us);
    assert!(metrics.first_output_audio_us > 0);

    // The reply is a 440 Hz tone lasting 20 ms per character, converted from 24 kHz to 48 kHz.
    let reply_chars = texts(&events, K::VB_EVENT_AGENT_RESPONSE)[0]
        .chars()
        .count();
    let (_, audio) = play_until(&session, back_to_listening);
    let expected = reply_chars * 20 * 48;
    assert!(
        audio.len().abs_diff(expected) < 48 * 40,
        "{} samples, expected about {expected}",
        audio.len()
    );
    let zero_crossings = audio
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    let hz = zero_crossings as f64 / 2.0 / (audio.len() as f64 / 48000.0);
    assert!((hz - 440.0).abs() < 10.0, "reply tone at {hz} Hz");
}

#[test]
fn turns_are_cut_by_audio_time_whatever_the_push_speed() {
    let mut audio = Vec::new();
    for (f0, ms) in [(120.0, 700), (200.0, 1500), (160.0, 400)] {
        audio.extend(speech(f0, ms, 16000));
        audio.extend(silence(900, 16000));
    }
    let transcripts = |realtime: bool| {
        let backend = test_backend("");
        let session = session_at(&backend, 16000);
        if realtime {
            push_realtime(&session, &audio, 16000, &mut Vec::new());
        } else {
            push_all(&session, &audio, 16000);
        }
        let mut finals = Vec::new();
        play_until(&session, |e| {
            if e.kind == K::VB_EVENT_TRANSCRIPT_FINAL {
                finals.push(e.text.clone().unwrap());
            }
            finals.len() == 3
        });
        finals
    };
    let fast = transcripts(false);
    assert_eq!(fast, transcripts(true));
    assert!(
        fast[0].starts_with("pitch 120 hz")
            && fast[1].starts_with("pitch 200 hz")
            && fast[2].starts_with("pitch 160 hz")
    );
}

#[test]
fn user_speech_while_the_agent_speaks_interrupts_it() {
    let backend = test_backend("");
    let agent = Arc::new(|_: &str, reply: &mut Reply| -> voicebackend::Result<()> {
        reply.write(&"a long answer ".repeat(20))?; // 280 characters: 5.6 s of tone
        reply.end()
    });
    let session = started_session(&backend, agent);
    talk_until_the_agent_speaks(&session);

    // The user talks over the reply: playout stops within a frame of the barge-in decision.
    let mut played = Vec::new();
    push_realtime(&session, &speech(220.0, 600, 16000), 16000, &mut played);
    events_until(&session, |e| e.kind == K::VB_EVENT_INTERRUPTED);
    assert!(
        played.len() < 16000 * 3,
        "playout went on: {} samples",
        played.len()
    );
    assert_eq!(
        readable_over_the_next_50_ms(&session),
        0,
        "no reply audio may be readable after an interruption"
    );

    // The interrupting speech is a turn of its own and gets its own reply.
    push_all(&session, &silence(900, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_TRANSCRIPT_FINAL);
    assert!(texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL)[0].starts_with("pitch 220 hz"));
}

#[test]
fn a_cough_does_not_interrupt_the_agent() {
    let backend =
        test_backend(r#""turn":{"min_speech_ms":300},"interruptions":{"min_speech_ms":300}"#);
    let agent = Arc::new(|_: &str, reply: &mut Reply| -> voicebackend::Result<()> {
        reply.write(&"x".repeat(150))
    });
    let session = started_session(&backend, agent);
    talk_until_the_agent_speaks(&session);
    let mut cough = speech(300.0, 120, 16000);
    cough.extend(silence(400, 16000));
    let mut played = Vec::new();
    push_realtime(&session, &cough, 16000, &mut played);
    let (events, _) = play_until(&session, back_to_listening);
    assert!(!kinds(&events).contains(&K::VB_EVENT_INTERRUPTED));
    assert!(!kinds(&events).contains(&K::VB_EVENT_SPEECH_STARTED));
}

#[test]
fn host_interrupt_stops_playback_and_cancels_the_reply() {
    let backend = test_backend("");
    let cancelled_seen = Arc::new(AtomicUsize::new(0));
    let seen = cancelled_seen.clone();
    let agent = Arc::new(
        move |_: &str, reply: &mut Reply| -> voicebackend::Result<()> {
            reply.write("first sentence. ")?;
            // Keep writing until the host interrupts: writes then fail with VB_ERR_INVALID_STATE.
            for _ in 0..500 {
                std::thread::sleep(std::time::Duration::from_millis(10));
                if reply.is_cancelled() {
                    let e = reply.write("more").unwrap_err();
                    assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_STATE);
                    seen.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                reply.write("more ")?;
            }
            reply.end()
        },
    );
    let session = started_session(&backend, agent);
    talk_until_the_agent_speaks(&session);
    session.interrupt().unwrap();
    events_until(&session, |e| e.kind == K::VB_EVENT_INTERRUPTED);
    session.stop().unwrap();
    assert_eq!(
        cancelled_seen.load(Ordering::SeqCst),
        1,
        "the agent saw the cancellation"
    );
}

/// Answers "Noted." and keeps the conversation each `prepare` was given.
#[derive(Default)]
struct PreparingAgent {
    prepared: Mutex<Vec<Vec<Turn>>>,
}

impl Agent for PreparingAgent {
    fn on_transcript(&self, _: &str, reply: &mut Reply) -> voicebackend::Result<()> {
        reply.write("Noted.")?;
        reply.end()
    }

    fn prepare(&self, history: &[Turn]) {
        self.prepared.lock().unwrap().push(history.to_vec());
    }

    fn prepares(&self) -> bool {
        true
    }
}

impl PreparingAgent {
    /// Waits until `prepare` has been called `n` times; returns the conversations it got.
    fn prepared(&self, n: usize) -> Vec<Vec<Turn>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let prepared = self.prepared.lock().unwrap().clone();
            if prepared.len() >= n || std::time::Instant::now() > deadline {
                return prepared;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

#[test]
fn the_agent_prepares_for_the_next_turn_with_the_conversation_so_far() {
    // After each turn joins the conversation (its reply played, or cut short), the agent's
    // `prepare` gets the whole conversation: what a language model computes ahead.
    let backend = test_backend("");
    let agent = Arc::new(PreparingAgent::default());
    let session = started_session(&backend, agent.clone());
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    play_until(&session, |e| e.kind == K::VB_EVENT_TURN_METRICS);
    play_until(&session, back_to_listening);
    let prepared = agent.prepared(1);
    assert_eq!(prepared.len(), 1, "one turn, one prepare: {prepared:?}");
    let turn = &prepared[0][..];
    assert!(
        matches!(turn, [t] if t.transcript.as_deref().is_some_and(|t| t.starts_with("pitch 150 hz"))
            && t.reply.as_deref() == Some("Noted.") && !t.interrupted),
        "{turn:?}"
    );

    push_all(&session, &utterance(220.0, 800, 16000), 16000);
    play_until(&session, |e| e.kind == K::VB_EVENT_TURN_METRICS);
    play_until(&session, back_to_listening);
    let prepared = agent.prepared(2);
    assert_eq!(prepared.len(), 2, "{prepared:?}");
    assert_eq!(
        prepared[1].len(),
        2,
        "the whole conversation: {:?}",
        prepared[1]
    );
    assert!(
        prepared[1][1]
            .transcript
            .as_deref()
            .unwrap()
            .starts_with("pitch 220 hz")
    );
}

#[test]
fn say_speaks_a_greeting_without_a_user_turn() {
    let backend = test_backend("");
    let session = session_at(&backend, 24000);
    session.say("Hello there.").unwrap();
    let (events, audio) = play_until(&session, reply_finished());
    assert_eq!(
        audio.len().abs_diff(12 * 20 * 24),
        0,
        "12 characters of tone at 24 kHz"
    );
    assert!(
        !kinds(&events).contains(&K::VB_EVENT_AGENT_RESPONSE),
        "a greeting is no agent reply"
    );
    assert!(
        !kinds(&events).contains(&K::VB_EVENT_TURN_METRICS),
        "and no user turn"
    );
    assert_eq!(
        session.say("  ").unwrap_err().status(),
        VbStatus::VB_ERR_INVALID_ARGUMENT
    );
}

#[test]
fn agent_errors_and_panics_become_error_events_and_the_session_keeps_listening() {
    let backend = test_backend("");
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let agent = Arc::new(move |_: &str, _: &mut Reply| -> voicebackend::Result<()> {
        match counter.fetch_add(1, Ordering::SeqCst) {
            0 => Err(Error::new(VbStatus::VB_ERR_PROVIDER, "my LLM is down")),
            _ => panic!("agent bug"),
        }
    });
    let session = backend
        .create_session(SessionConfig::default(), Some(agent), None)
        .unwrap();
    session.start().unwrap();
    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let error = events.last().unwrap();
    assert_eq!(error.error, VbStatus::VB_ERR_PROVIDER);
    assert!(error.text.as_deref().unwrap().contains("my LLM is down"));
    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    assert_eq!(events.last().unwrap().error, VbStatus::VB_ERR_PANIC);
    events_until(&session, |e| {
        e.kind == K::VB_EVENT_STATE_CHANGED && e.state == S::VB_STATE_LISTENING
    });
    assert_eq!(session.state(), S::VB_STATE_LISTENING);
}

#[test]
fn an_agent_that_fails_its_reply_reports_its_own_error_and_the_session_keeps_listening() {
    let backend = test_backend("");
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let seen = refusals.clone();
    let agent = Arc::new(
        move |text: &str, reply: &mut Reply| -> voicebackend::Result<()> {
            if counter.fetch_add(1, Ordering::SeqCst) > 0 {
                reply.write(&format!("you said {text}"))?;
                return reply.end();
            }
            reply.write("Let me look. ")?;
            let ok = reply.fail(VbStatus::VB_OK, "nothing wrong").unwrap_err();
            reply.fail(
                VbStatus::VB_ERR_CONNECTION_FAILED,
                "the order database is down",
            )?;
            let mut seen = seen.lock().unwrap();
            seen.push(ok);
            seen.push(reply.write("more").unwrap_err());
            seen.push(reply.end().unwrap_err());
            seen.push(reply.fail(VbStatus::VB_ERR_PROVIDER, "again").unwrap_err());
            // Failed already: what the callback returns now is not reported a second time.
            Err(Error::new(
                VbStatus::VB_ERR_INTERNAL,
                "returned after failing",
            ))
        },
    );
    let session = started_session(&backend, agent);

    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    let (events, audio) = play_until(&session, reply_finished());
    assert_eq!(
        errors(&events),
        [(
            VbStatus::VB_ERR_CONNECTION_FAILED,
            "agent: the order database is down".to_owned()
        )]
    );
    assert_eq!(
        texts(&events, K::VB_EVENT_AGENT_RESPONSE),
        ["Let me look. "],
        "what the agent wrote before failing is its reply"
    );
    assert!(
        audio.len().abs_diff(13 * 20 * 16) < 320,
        "and it is spoken: 13 characters of tone at 16 kHz (within a frame), not {}",
        audio.len()
    );
    assert_eq!(session.state(), S::VB_STATE_LISTENING);
    let refusals: Vec<(VbStatus, String)> = refusals
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.status(), e.message().to_owned()))
        .collect();
    assert_eq!(
        refusals,
        [
            (
                VbStatus::VB_ERR_INVALID_ARGUMENT,
                "status is VB_OK: failing a reply takes an error status, e.g. VB_ERR_PROVIDER"
                    .to_owned()
            ),
            (
                VbStatus::VB_ERR_INVALID_STATE,
                "the reply has already failed".to_owned()
            ),
            (
                VbStatus::VB_ERR_INVALID_STATE,
                "the reply has already failed".to_owned()
            ),
            (
                VbStatus::VB_ERR_INVALID_STATE,
                "the reply has already failed".to_owned()
            ),
        ]
    );

    // The next turn is answered normally, and nothing more is reported.
    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    let (events, _) = play_until(&session, reply_finished());
    assert!(texts(&events, K::VB_EVENT_AGENT_RESPONSE)[0].starts_with("you said pitch"));
    assert_eq!(errors(&events), []);
}

#[test]
fn an_agent_that_overruns_agent_timeout_ms_loses_the_turn_and_the_session_keeps_listening() {
    let backend = test_backend(r#""agent_timeout_ms":300"#);
    // The first call hangs until the test releases it; later calls answer at once.
    let (release, hang) = std::sync::mpsc::channel::<()>();
    let hang = Mutex::new(Some(hang));
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let cancel_seen = saw_cancel.clone();
    let agent = Arc::new(
        move |text: &str, reply: &mut Reply| -> voicebackend::Result<()> {
            if let Some(hang) = hang.lock().unwrap().take() {
                reply.write("I am thinking about ")?;
                let _ = hang.recv();
                if reply.is_cancelled() {
                    cancel_seen.fetch_add(1, Ordering::SeqCst);
                }
                return Ok(());
            }
            reply.write(&format!("you said {text}"))?;
            reply.end()
        },
    );
    let session = backend
        .create_session(SessionConfig::default(), Some(agent), None)
        .unwrap();
    session.start().unwrap();
    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let error = events.last().unwrap();
    assert_eq!(error.error, VbStatus::VB_ERR_TIMEOUT);
    assert!(
        error.text.as_deref().unwrap().contains("agent_timeout_ms"),
        "{:?}",
        error.text
    );
    assert!(texts(&events, K::VB_EVENT_AGENT_RESPONSE).is_empty());
    events_until(&session, |e| {
        e.kind == K::VB_EVENT_STATE_CHANGED && e.state == S::VB_STATE_LISTENING
    });
    release.send(()).unwrap();

    // The next turn is answered normally.
    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    assert!(texts(&events, K::VB_EVENT_AGENT_RESPONSE)[0].starts_with("you said pitch"));
    // The released agent runs on its own worker thread: give it a moment to look.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while saw_cancel.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        saw_cancel.load(Ordering::SeqCst),
        1,
        "the late agent saw its reply cancelled"
    );
}

#[test]
fn a_late_agent_passing_back_the_refusal_of_its_cancelled_reply_reports_nothing_more() {
    let backend = test_backend(r#""agent_timeout_ms":300"#);
    let (release, hang) = std::sync::mpsc::channel::<()>();
    let hang = Mutex::new(Some(hang));
    let refused = Arc::new(Mutex::new(None));
    let refusal = refused.clone();
    let agent = Arc::new(
        move |text: &str, reply: &mut Reply| -> voicebackend::Result<()> {
            if let Some(hang) = hang.lock().unwrap().take() {
                let _ = hang.recv();
                // Too late: the write is refused, and the agent passes the refusal back.
                let written = reply.write("too late");
                *refusal.lock().unwrap() = Some(written.clone());
                return written;
            }
            reply.write(&format!("you said {text}"))?;
            reply.end()
        },
    );
    let session = backend
        .create_session(SessionConfig::default(), Some(agent), None)
        .unwrap();
    session.start().unwrap();
    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    assert_eq!(events.last().unwrap().error, VbStatus::VB_ERR_TIMEOUT);
    release.send(()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while refused.lock().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let refusal = refused
        .lock()
        .unwrap()
        .clone()
        .expect("the late agent wrote");
    let e = refusal.expect_err("a cancelled reply refuses writes");
    assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_STATE);
    assert!(e.message().contains("agent_timeout_ms"), "{e}");

    // The host heard of the timeout once: the next turn brings no error, only its answer.
    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    let errors: Vec<_> = events
        .iter()
        .filter(|e| e.kind == K::VB_EVENT_ERROR)
        .map(|e| e.text.clone())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn provider_failures_are_reported_with_the_provider_name() {
    let backend = test_backend(r#""stt_config":{"fail_with":"model crashed"}"#);
    let session = session_at(&backend, 16000);
    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let error = events.last().unwrap();
    assert_eq!(error.error, VbStatus::VB_ERR_PROVIDER);
    assert!(
        error.text.as_deref().unwrap().contains("test-pitch-stt"),
        "{:?}",
        error.text
    );
    assert!(error.text.as_deref().unwrap().contains("model crashed"));

    let backend = test_backend(r#""tts_config":{"fail_with":"voice missing"}"#);
    let session = session_at(&backend, 16000);
    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    assert!(
        events
            .last()
            .unwrap()
            .text
            .as_deref()
            .unwrap()
            .contains("voice missing")
    );
    events_until(&session, |e| {
        e.kind == K::VB_EVENT_STATE_CHANGED && e.state == S::VB_STATE_LISTENING
    });
    assert_eq!(session.state(), S::VB_STATE_LISTENING);
}

struct Mute;
impl AudioProcessor for Mute {
    fn name(&self) -> &str {
        "mute"
    }
    fn order(&self) -> i32 {
        10
    }
    fn process(&mut self, pcm: &mut [i16], _: u32) {
        pcm.fill(0);
    }
}

struct Spy(Arc<Mutex<Vec<u32>>>);
impl AudioProcessor for Spy {
    fn name(&self) -> &str {
        "spy"
    }
    fn order(&self) -> i32 {
        1
    }
    fn process(&mut self, pcm: &mut [i16], rate: u32) {
        if let Ok(mut seen) = self.0.try_lock() {
            if seen.len() < 4 {
                seen.push(rate);
                seen.push(pcm.len() as u32);
            }
        }
    }
}

#[test]
fn processors_run_in_order_on_every_frame_before_vad() {
    let backend = voicebackend::Backend::from_json(
        r#"{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts"}"#,
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let spy = seen.clone();
    backend
        .add_processor(Arc::new(move || {
            Box::new(Spy(spy.clone())) as Box<dyn AudioProcessor>
        }))
        .unwrap();
    backend
        .add_processor(Arc::new(|| Box::new(Mute) as Box<dyn AudioProcessor>))
        .unwrap();
    let duplicate = backend.add_processor(Arc::new(|| Box::new(Mute) as Box<dyn AudioProcessor>));
    assert_eq!(
        duplicate.unwrap_err().status(),
        VbStatus::VB_ERR_INVALID_ARGUMENT
    );
    backend.start().unwrap();
    let late = backend.add_processor(Arc::new(|| Box::new(Mute) as Box<dyn AudioProcessor>));
    assert_eq!(late.unwrap_err().status(), VbStatus::VB_ERR_INVALID_STATE);

    let session = session_at(&backend, 48000);
    push_all(&session, &utterance(150.0, 1000, 48000), 48000);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut kinds_seen = Vec::new();
    while let Some(e) = session.poll_event().unwrap() {
        kinds_seen.push(e.kind);
    }
    assert!(
        !kinds_seen.contains(&K::VB_EVENT_SPEECH_STARTED),
        "the mute processor ran before VAD"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [16000, 320, 16000, 320],
        "internal rate and frame size"
    );
}

#[test]
fn speech_to_speech_pipelines_answer_without_a_host_agent() {
    let backend = voicebackend::Backend::from_json(
        r#"{"provider":"local","pipeline_type":"s2s","s2s_provider":"test-echo-s2s"}"#,
    )
    .unwrap();
    backend.start().unwrap();
    let session = backend
        .create_session(SessionConfig::default(), None, None)
        .unwrap();
    session.start().unwrap();
    push_all(&session, &utterance(180.0, 800, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_TURN_METRICS);
    assert!(texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL)[0].ends_with("ms of speech"));
    assert_eq!(texts(&events, K::VB_EVENT_AGENT_RESPONSE), ["echo"]);
    assert_eq!(
        session.say("hi").unwrap_err().status(),
        VbStatus::VB_ERR_INVALID_STATE
    );
}

#[test]
fn a_model_answering_before_the_turn_ends_is_reported_after_the_turns_end() {
    let backend = voicebackend::Backend::from_json(
        r#"{"provider":"local","pipeline_type":"s2s","s2s_provider":"test-echo-s2s","s2s_config":{"answer_after_ms":300}}"#,
    )
    .unwrap();
    backend.start().unwrap();
    let session = backend
        .create_session(SessionConfig::default(), None, None)
        .unwrap();
    session.start().unwrap();
    // At real-time pace, so that the model hears the turn while the user is still speaking.
    let mut audio = Vec::new();
    push_realtime(&session, &utterance(180.0, 800, 16000), 16000, &mut audio);
    let (events, played) = play_until(&session, reply_finished());
    audio.extend(played);
    let sequence: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.kind,
                (e.kind == K::VB_EVENT_STATE_CHANGED).then_some(e.state),
            )
        })
        .collect();
    assert_eq!(
        sequence,
        vec![
            (K::VB_EVENT_STATE_CHANGED, Some(S::VB_STATE_LISTENING)),
            (K::VB_EVENT_SPEECH_STARTED, None),
            (K::VB_EVENT_STATE_CHANGED, Some(S::VB_STATE_PROCESSING)),
            (K::VB_EVENT_SPEECH_STOPPED, None),
            (K::VB_EVENT_TRANSCRIPT_FINAL, None),
            (K::VB_EVENT_AGENT_RESPONSE, None),
            (K::VB_EVENT_STATE_CHANGED, Some(S::VB_STATE_SPEAKING)),
            (K::VB_EVENT_TURN_METRICS, None),
            (K::VB_EVENT_STATE_CHANGED, Some(S::VB_STATE_LISTENING)),
        ],
        "{events:#?}"
    );
    // The answer did not play over the user (it would have interrupted itself).
    assert!(audio.len() >= 300 * 16, "{} samples played", audio.len());
}

#[test]
fn a_model_that_never_answers_a_turn_is_a_timeout_and_the_session_listens_again() {
    let backend = voicebackend::Backend::from_json(
        r#"{"provider":"local","pipeline_type":"s2s","s2s_provider":"test-echo-s2s",
            "s2s_config":{"never_answer":true},"agent_timeout_ms":300}"#,
    )
    .unwrap();
    backend.start().unwrap();
    let session = backend
        .create_session(SessionConfig::default(), None, None)
        .unwrap();
    session.start().unwrap();
    push_all(&session, &utterance(180.0, 800, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let error = events.last().unwrap();
    assert_eq!(error.error, VbStatus::VB_ERR_TIMEOUT);
    assert_eq!(
        error.text.as_deref(),
        Some("s2s test-echo-s2s: no answer to the turn within 300 ms (agent_timeout_ms)")
    );
    assert!(kinds(&events).contains(&K::VB_EVENT_SPEECH_STOPPED));
    events_until(&session, |e| {
        e.kind == K::VB_EVENT_STATE_CHANGED && e.state == S::VB_STATE_LISTENING
    });
}

#[test]
fn stop_with_drain_refuses_new_sessions_and_lets_the_reply_in_flight_finish() {
    let backend = test_backend("");
    let session = session_at(&backend, 16000);
    push_all(&session, &utterance(150.0, 600, 16000), 16000);
    // The reply text and the start of its audio may be reported in either order (playout can
    // start while the agent is still returning): wait for both.
    let (mut speaking, mut responded) = (false, false);
    let events = events_until(&session, |e| {
        speaking |= e.kind == K::VB_EVENT_STATE_CHANGED && e.state == S::VB_STATE_SPEAKING;
        responded |= e.kind == K::VB_EVENT_AGENT_RESPONSE;
        speaking && responded
    });
    let reply = texts(&events, K::VB_EVENT_AGENT_RESPONSE).remove(0);
    // A host keeps playing while the backend drains; another host tries to open a session.
    let (played, refused) = std::thread::scope(|scope| {
        let player = scope.spawn(|| {
            let mut buf = [0i16; 320];
            let mut played = 0;
            while session.state() != S::VB_STATE_STOPPED {
                played += session.read_audio(&mut buf).unwrap_or(0);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            played
        });
        let latecomer = scope.spawn(|| {
            while backend.health().status == voicebackend::VbHealthStatus::VB_HEALTH_HEALTHY {
                std::thread::yield_now();
            }
            backend
                .create_session(SessionConfig::default(), Some(echo_agent()), None)
                .unwrap_err()
        });
        backend.stop(std::time::Duration::from_secs(20)).unwrap();
        (player.join().unwrap(), latecomer.join().unwrap())
    });
    assert_eq!(refused.status(), VbStatus::VB_ERR_INVALID_STATE);
    // The test TTS speaks 20 ms per character: the whole reply was played.
    let expected = reply.chars().count() * 20 * 16;
    assert!(
        played.abs_diff(expected) < 16 * 60,
        "{played} samples played, the reply has {expected}"
    );
    let events: Vec<_> = std::iter::from_fn(|| session.poll_event().unwrap()).collect();
    assert!(
        !kinds(&events).contains(&K::VB_EVENT_INTERRUPTED),
        "drain must not cut the reply"
    );
    assert_eq!(session.state(), S::VB_STATE_STOPPED);
    assert_eq!(backend.active_sessions(), 0);
}
