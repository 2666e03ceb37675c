//! The `elevenlabs` TTS provider through whole sessions, against a local ElevenLabs-protocol
//! server (`tests/servers/elevenlabs.rs`) that synthesizes with the embedded eSpeak NG: the
//! agent's reply streamed in as text and played back as speech, and the error paths a network
//! service brings (a refused key, a malformed message, a dropped connection, a server that stops
//! answering, and barge-in closing the socket).
//!
//! Needs `espeak-ng` (and the Whisper model for the first test).
#![cfg(feature = "test-providers")]

mod common;
mod servers;

use std::sync::Arc;

use common::*;
use servers::elevenlabs::{ElevenLabsFault, ElevenLabsServer, ElevenLabsServerOptions, VOICE_ID};
use voicebackend::provider::{ProviderRegistry, ProviderSetup, TtsRequest};
use voicebackend::{Backend, Reply, VbEventKind as K, VbStatus};

/// The key the local server accepts.
const KEY: &str = "xi-test-key-93d7f2";

/// Fast retries, so that failure tests do not wait long.
const RETRY: &str = r#""retry":{"max_attempts":3,"initial_backoff_ms":10,"max_backoff_ms":50}"#;

fn server(fault: ElevenLabsFault) -> ElevenLabsServer {
    ElevenLabsServer::start(ElevenLabsServerOptions {
        api_key: KEY.to_owned(),
        fault,
    })
}

/// A started backend transcribing with `stt` and speaking with `elevenlabs` at `server`
/// (`tts_extra` merged into `tts_config`).
fn backend(server: &ElevenLabsServer, key: &str, stt: &str, tts_extra: &str) -> Backend {
    let json = format!(
        r#"{{"provider":"local","stt_provider":"{stt}","tts_provider":"elevenlabs",{RETRY},
            "tts_config":{{"api_key":"{key}","base_url":"{}","voice_id":"{VOICE_ID}"{tts_extra}}}}}"#,
        server.base_url()
    );
    let backend = Backend::from_json(&json).expect("backend config");
    backend.start().unwrap();
    backend
}

/// An agent that answers every turn with `text`, written in pieces as an LLM would stream it.
fn agent_saying(text: &'static str) -> Arc<dyn voicebackend::Agent> {
    Arc::new(
        move |_: &str, reply: &mut Reply| -> voicebackend::Result<()> {
            for piece in text.split_inclusive(' ').collect::<Vec<_>>().chunks(3) {
                reply.write(&piece.concat())?;
            }
            reply.end()
        },
    )
}

#[test]
fn whisper_hears_and_elevenlabs_speaks_the_agents_reply() {
    let server = server(ElevenLabsFault::None);
    let backend = backend(&server, KEY, "whisper", "");
    let session = session_at(&backend, 16000);
    let mut audio = silence(300, 16000);
    audio.extend(espeak_speech("What is twelve plus seven?", "en-us"));
    audio.extend(silence(900, 16000));
    push_all(&session, &audio, 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    let reply = texts(&events, K::VB_EVENT_AGENT_RESPONSE).remove(0);
    assert!(reply.starts_with("you said "), "{reply}");
    let (later, played) = play_until(&session, reply_finished());
    assert!(errors(&events).is_empty() && errors(&later).is_empty());
    assert_key_absent(&events, KEY);
    let connections = server.wait_for(|c| c.len() == 1 && c[0].ended);
    let stream = &connections[0];
    assert!(stream.final_sent);
    assert_eq!(
        stream.query.get("output_format").map(String::as_str),
        Some("pcm_24000")
    );
    assert_eq!(
        stream.query.get("model_id").map(String::as_str),
        Some("eleven_flash_v2_5")
    );
    assert_eq!(
        stream.messages[0]["text"], " ",
        "the first message is a single space"
    );
    assert_eq!(
        stream.text.trim_end(),
        reply,
        "the reply's text, streamed in"
    );
    assert_eq!(stream.flushes, 1, "one flush at the end of the reply");
    assert!(
        stream.end_of_input && !stream.closed_mid_reply,
        "the client took the whole reply and closed the connection properly"
    );
    // What was played is what the server sent, converted from 24 kHz to the session's 16 kHz.
    let expected = stream.audio_samples as f64 * 16000.0 / 24000.0;
    assert!(
        (played.len() as f64 - expected).abs() < expected * 0.05,
        "played {} samples, the server sent {} at 24 kHz",
        played.len(),
        stream.audio_samples
    );
    assert!(
        played.len() > 16000,
        "a spoken reply: {} samples",
        played.len()
    );
    assert!(rms(&played) > 300.0, "the reply is speech, not silence");
}

#[test]
fn a_refused_key_is_an_unauthorized_error_and_the_session_keeps_listening() {
    let server = server(ElevenLabsFault::None);
    let wrong = "xi-wrong-key-77ab01";
    let backend = backend(&server, wrong, "test-pitch-stt", "");
    let session = session_at(&backend, 16000);
    for turn in 1..=2 {
        push_all(&session, &utterance(150.0, 800, 16000), 16000);
        let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
        let (status, message) = errors(&events).remove(0);
        assert_eq!(
            status,
            VbStatus::VB_ERR_UNAUTHORIZED,
            "turn {turn}: {message}"
        );
        assert!(
            message.contains("elevenlabs") && message.contains("401"),
            "{message}"
        );
        assert_key_absent(&events, wrong);
        let after = listening_after_failed_turn(&session, &events);
        assert_key_absent(&after, wrong);
    }
    let connections = server.connections();
    assert_eq!(
        connections.len(),
        2,
        "one refused connection per reply, not retried"
    );
    assert!(connections.iter().all(|c| c.refused == Some(401)));
}

#[test]
fn a_malformed_message_is_a_provider_error() {
    let server = server(ElevenLabsFault::Malformed);
    let backend = backend(&server, KEY, "test-pitch-stt", "");
    let session = session_at(&backend, 16000);
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let (status, message) = errors(&events).remove(0);
    assert_eq!(status, VbStatus::VB_ERR_PROVIDER, "{message}");
    assert!(
        message.contains("elevenlabs") && message.contains("malformed message"),
        "{message}"
    );
    assert_key_absent(&events, KEY);
    listening_after_failed_turn(&session, &events);
}

#[test]
fn an_unknown_voice_is_a_provider_error_naming_it() {
    let server = server(ElevenLabsFault::None);
    let json = format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"elevenlabs",
            "tts_config":{{"api_key":"{KEY}","base_url":"{}","voice_id":"noSuchVoice"}}}}"#,
        server.base_url()
    );
    let backend = Backend::from_json(&json).unwrap();
    backend.start().unwrap();
    let session = session_at(&backend, 16000);
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let (status, message) = errors(&events).remove(0);
    assert_eq!(status, VbStatus::VB_ERR_PROVIDER, "{message}");
    assert!(
        message.contains("elevenlabs") && message.contains("noSuchVoice"),
        "{message}"
    );
    listening_after_failed_turn(&session, &events);
    let connections = server.wait_for(|c| c.first().is_some_and(|c| c.ended));
    assert_eq!(connections[0].error_close.as_ref().map(|e| e.0), Some(1008));
}

#[test]
fn a_connection_lost_mid_reply_resumes_without_repeating_speech() {
    const ANSWER: &str = "The train leaves at nine in the morning from the second platform. \
        Please be there ten minutes early, because the doors close on time. \
        Bring your ticket and a warm coat.";
    let server = server(ElevenLabsFault::DropOnce {
        after_generations: 1,
    });
    let backend = backend(
        &server,
        KEY,
        "test-pitch-stt",
        r#","chunk_length_schedule":[50]"#,
    );
    let session = started_session(&backend, agent_saying(ANSWER));
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    let (events, played) = play_until(&session, reply_finished());
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let connections = server.wait_for(|c| c.len() == 2 && c[1].final_sent);
    let (lost, resumed) = (&connections[0], &connections[1]);
    assert!(lost.dropped);
    assert_eq!(lost.generations.len(), 1);
    let spoken_before = &lost.generations[0];
    assert!(
        ANSWER.starts_with(spoken_before.as_str()),
        "{spoken_before:?}"
    );
    // The new connection got exactly the text not spoken yet.
    assert_eq!(
        format!("{spoken_before}{}", resumed.text).trim_end(),
        ANSWER,
        "{resumed:?}"
    );
    let generated: String = lost
        .generations
        .iter()
        .chain(&resumed.generations)
        .cloned()
        .collect();
    assert_eq!(generated.trim_end(), ANSWER, "every word spoken once");
    let sent = (lost.audio_samples + resumed.audio_samples) as f64 * 16000.0 / 24000.0;
    assert!(
        (played.len() as f64 - sent).abs() < sent * 0.05,
        "played {} samples of {sent}",
        played.len()
    );
}

#[test]
fn a_server_that_stops_answering_is_a_timeout() {
    let server = server(ElevenLabsFault::Stall);
    let backend = backend(&server, KEY, "test-pitch-stt", r#","timeout_ms":800"#);
    let session = session_at(&backend, 16000);
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let (status, message) = errors(&events).remove(0);
    assert_eq!(status, VbStatus::VB_ERR_TIMEOUT, "{message}");
    assert!(
        message.contains("elevenlabs") && message.contains("800 ms"),
        "{message}"
    );
    assert_key_absent(&events, KEY);
    listening_after_failed_turn(&session, &events);
    let connections = server.connections();
    assert_eq!(connections.len(), 1, "a stalled server is not reconnected");
    assert_eq!(connections[0].messages.last().unwrap()["text"], "");
}

#[test]
fn barge_in_closes_the_socket_mid_reply() {
    const ANSWER: &str = "This is a long answer that goes on for quite a while. \
        It has several sentences, so that there is time to interrupt it. \
        And it keeps going, and going, and going, until somebody speaks.";
    let server = server(ElevenLabsFault::None);
    let backend = backend(&server, KEY, "test-pitch-stt", "");
    let session = started_session(&backend, agent_saying(ANSWER));
    talk_until_the_agent_speaks(&session);
    let mut played = Vec::new();
    push_realtime(&session, &speech(210.0, 700, 16000), 16000, &mut played);
    events_until(&session, |e| e.kind == K::VB_EVENT_INTERRUPTED);
    assert!(!played.is_empty(), "ElevenLabs audio was playing");
    assert_eq!(readable_over_the_next_50_ms(&session), 0);
    let connections = server.wait_for(|c| c.first().is_some_and(|c| c.ended));
    assert!(
        connections[0].closed_mid_reply,
        "the client dropped the socket with the reply unfinished: {connections:?}"
    );
}

#[test]
fn a_missing_key_is_a_config_error_at_backend_creation() {
    assert!(
        std::env::var_os("ELEVENLABS_API_KEY").is_none(),
        "this test needs ELEVENLABS_API_KEY unset"
    );
    let json = format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"elevenlabs",
            "tts_config":{{"voice_id":"{VOICE_ID}","base_url":"ws://127.0.0.1:9"}}}}"#
    );
    let Err(e) = Backend::from_json(&json) else {
        panic!("a backend without a key");
    };
    assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
    assert_eq!(
        e.message(),
        "tts_config.api_key: missing (set it or the ELEVENLABS_API_KEY environment variable)"
    );
}

#[test]
fn the_key_may_come_from_elevenlabs_api_key() {
    run_ignored_test_with_env(
        "a_reply_is_spoken_with_the_key_from_the_environment",
        &[("ELEVENLABS_API_KEY", KEY)],
    );
}

#[test]
#[ignore = "run by the_key_may_come_from_elevenlabs_api_key with ELEVENLABS_API_KEY set"]
fn a_reply_is_spoken_with_the_key_from_the_environment() {
    let server = server(ElevenLabsFault::None);
    let config = serde_json::json!({ "base_url": server.base_url(), "voice_id": VOICE_ID });
    let tts = ProviderRegistry::global()
        .create_tts("elevenlabs", &ProviderSetup::new(&config))
        .expect("the key comes from ELEVENLABS_API_KEY");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (text_tx, text) = tokio::sync::mpsc::unbounded_channel();
    let (audio, mut audio_rx) = tokio::sync::mpsc::channel(1024);
    text_tx.send("Hello there.".to_owned()).unwrap();
    drop(text_tx);
    runtime
        .block_on(tts.synthesize(TtsRequest { text, audio }))
        .expect("the server accepted the key");
    let mut samples = 0;
    while let Ok(chunk) = audio_rx.try_recv() {
        samples += chunk.len();
    }
    assert!(samples > 0, "speech came back");
    assert_eq!(server.connections()[0].refused, None);
}
