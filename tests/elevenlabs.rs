//! The `elevenlabs` TTS provider through whole sessions, against a local ElevenLabs-protocol
//! server (`tests/servers/elevenlabs/`) that synthesizes with the embedded eSpeak NG: the agent's
//! reply streamed in as text and played back as speech, barge-in closing the socket, and the key
//! from the environment. The faults a network service brings (a refused key, an unknown voice, a
//! malformed message, a stall, a dropped connection, a missing key) are ElevenLabs' rows of the
//! fault matrix, `tests/provider_faults.rs`.
//!
//! Needs `espeak-ng` (and the Whisper model for the first test).
#![cfg(feature = "test-providers")]

mod common;
mod servers;

use common::*;
use servers::elevenlabs::{ElevenLabsFault, ElevenLabsServer, ElevenLabsServerOptions, VOICE_ID};
use voicebackend::provider::{ProviderRegistry, ProviderSetup, TtsRequest};
use voicebackend::{Backend, VbEventKind as K};

/// The key the local server accepts.
const KEY: &str = "xi-test-key-93d7f2";

/// Fast retries, as in every test against a local server.
const RETRY: &str = r#""retry":{"max_attempts":3,"initial_backoff_ms":10,"max_backoff_ms":50}"#;

fn server() -> ElevenLabsServer {
    ElevenLabsServer::start(ElevenLabsServerOptions {
        api_key: KEY.to_owned(),
        fault: ElevenLabsFault::None,
    })
}

/// A started backend transcribing with `stt` and speaking with `elevenlabs` at `server`.
fn backend(server: &ElevenLabsServer, stt: &str) -> Backend {
    let json = format!(
        r#"{{"provider":"local","stt_provider":"{stt}","tts_provider":"elevenlabs",{RETRY},
            "tts_config":{{"api_key":"{KEY}","base_url":"{}","voice_id":"{VOICE_ID}"}}}}"#,
        server.base_url()
    );
    let backend = Backend::from_json(&json).expect("backend config");
    backend.start().unwrap();
    backend
}

#[test]
fn whisper_hears_and_elevenlabs_speaks_the_agents_reply() {
    let server = server();
    let backend = backend(&server, "whisper");
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
fn barge_in_closes_the_socket_mid_reply() {
    const ANSWER: &str = "This is a long answer that goes on for quite a while. \
        It has several sentences, so that there is time to interrupt it. \
        And it keeps going, and going, and going, until somebody speaks.";
    let server = server();
    let backend = backend(&server, "test-pitch-stt");
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
fn the_key_may_come_from_elevenlabs_api_key() {
    run_ignored_test_with_env(
        "a_reply_is_spoken_with_the_key_from_the_environment",
        &[("ELEVENLABS_API_KEY", KEY)],
    );
}

#[test]
#[ignore = "run by the_key_may_come_from_elevenlabs_api_key with ELEVENLABS_API_KEY set"]
fn a_reply_is_spoken_with_the_key_from_the_environment() {
    let server = server();
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
