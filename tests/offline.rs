//! Offline conversations on the embedded providers: Whisper tiny.en hears eSpeak NG speech, the
//! agent answers, eSpeak NG speaks the answer, and user speech interrupts real TTS audio.
#![cfg(feature = "test-providers")]

mod common;

use std::sync::Arc;

use common::*;
use voicebackend::{Backend, Reply, VbEventKind as K};

#[test]
fn whisper_hears_espeak_and_espeak_answers() {
    let backend = Backend::from_json(
        r#"{"provider":"local","stt_provider":"whisper","tts_provider":"espeak"}"#,
    )
    .expect("the embedded providers load (run scripts/setup.sh to fetch the Whisper model)");
    backend.start().unwrap();
    let session = session_at(&backend, 16000);
    let mut audio = silence(300, 16000);
    audio.extend(espeak_speech("What is twelve plus seven?", "en-us"));
    audio.extend(silence(900, 16000));
    push_all(&session, &audio, 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_TURN_METRICS);
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL)
        .join(" ")
        .to_lowercase();
    assert!(
        heard.contains("plus") && (heard.contains("12") || heard.contains("twelve")),
        "{heard}"
    );
    let (_, reply_audio) = play_until(&session, back_to_listening);
    let rms = (reply_audio
        .iter()
        .map(|&s| f64::from(s).powi(2))
        .sum::<f64>()
        / reply_audio.len() as f64)
        .sqrt();
    assert!(
        reply_audio.len() > 16000,
        "a spoken reply: {} samples",
        reply_audio.len()
    );
    assert!(rms > 300.0, "the reply is speech, not silence (rms {rms})");
}

#[test]
fn user_speech_interrupts_real_tts_audio() {
    let backend = Backend::from_json(
        r#"{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"espeak"}"#,
    )
    .unwrap();
    backend.start().unwrap();
    let agent = Arc::new(|_: &str, reply: &mut Reply| -> voicebackend::Result<()> {
        reply.write("This is a long answer that goes on for quite a while. ")?;
        reply.write("It has several sentences, so that there is time to interrupt it. ")?;
        reply.write("And it keeps going, and going, and going.")?;
        reply.end()
    });
    let session = started_session(&backend, agent);
    talk_until_the_agent_speaks(&session);
    let mut played = Vec::new();
    push_realtime(&session, &speech(210.0, 700, 16000), 16000, &mut played);
    events_until(&session, |e| e.kind == K::VB_EVENT_INTERRUPTED);
    assert!(!played.is_empty(), "eSpeak NG audio was playing");
    assert_eq!(
        readable_over_the_next_50_ms(&session),
        0,
        "no eSpeak NG audio after the interruption"
    );
}
