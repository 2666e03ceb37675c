//! The `deepgram` STT provider through whole sessions, against a local Deepgram-protocol server
//! (`tests/servers/deepgram/`) that transcribes with the embedded Whisper: real eSpeak NG speech
//! in, partial and final transcripts out, the stream kept alive through pauses, and the key from
//! the environment. The faults a network service brings (a refused key, a rejected request, a
//! malformed message, a stall, a dropped connection, a missing key) are Deepgram's rows of the
//! fault matrix, `tests/provider_faults.rs`.
//!
//! Needs the Whisper model (`scripts/fetch-models.sh`) and `espeak-ng`.
#![cfg(feature = "test-providers")]

mod common;
mod servers;

use std::time::Duration;

use common::*;
use servers::deepgram::{DeepgramFault, DeepgramServer, DeepgramServerOptions};
use voicebackend::provider::stt::{SttResult, SttSink, SttTurn, speech_ring};
use voicebackend::provider::{ProviderRegistry, ProviderSetup};
use voicebackend::{Backend, VbEventKind as K};

/// The key the local server accepts.
const KEY: &str = "dg-test-key-5b1e9c";

/// Fast retries, as in every test against a local server.
const RETRY: &str = r#""retry":{"max_attempts":3,"initial_backoff_ms":10,"max_backoff_ms":50}"#;

fn server() -> DeepgramServer {
    DeepgramServer::start(DeepgramServerOptions {
        api_key: KEY.to_owned(),
        fault: DeepgramFault::None,
        ..DeepgramServerOptions::default()
    })
}

/// A started backend transcribing with `deepgram` at `server` and speaking with `tts`.
fn backend(server: &DeepgramServer, tts: &str) -> Backend {
    let json = format!(
        r#"{{"provider":"local","stt_provider":"deepgram","tts_provider":"{tts}",{RETRY},
            "stt_config":{{"api_key":"{KEY}","base_url":"{}"}}}}"#,
        server.base_url()
    );
    let backend = Backend::from_json(&json).expect("backend config");
    backend.start().unwrap();
    backend
}

/// `silence, speech of every sentence (separated by gap_ms), silence` at 16 kHz.
fn spoken(sentences: &[&str], gap_ms: u32) -> Vec<i16> {
    let mut audio = silence(300, 16000);
    for (i, sentence) in sentences.iter().enumerate() {
        if i > 0 {
            audio.extend(silence(gap_ms, 16000));
        }
        audio.extend(espeak_speech(sentence, "en-us"));
    }
    audio.extend(silence(1000, 16000));
    audio
}

#[test]
fn deepgram_hears_espeak_speech_with_partials_before_the_final() {
    let server = server();
    let backend = backend(&server, "espeak");
    let session = session_at(&backend, 16000);
    push_all(&session, &spoken(&["What is twelve plus seven?"], 0), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_TRANSCRIPT_FINAL);
    assert_key_absent(&events, KEY);
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL)
        .join(" ")
        .to_lowercase();
    assert!(
        heard.contains("plus") && (heard.contains("12") || heard.contains("twelve")),
        "{heard}"
    );
    let partials = texts(&events, K::VB_EVENT_TRANSCRIPT_PARTIAL);
    assert!(
        !partials.is_empty(),
        "interim results became partial transcripts"
    );
    let connections = server.wait_for(|c| c.len() == 1 && c[0].closed_normally);
    let listen = &connections[0];
    for (name, value) in [
        ("encoding", "linear16"),
        ("sample_rate", "16000"),
        ("channels", "1"),
        ("interim_results", "true"),
        ("endpointing", "300"),
        ("model", "nova-3"),
        ("language", "en"),
    ] {
        assert_eq!(
            listen.query.get(name).map(String::as_str),
            Some(value),
            "{name}"
        );
    }
    assert!(
        listen
            .controls
            .ends_with(&["Finalize".into(), "CloseStream".into()]),
        "{:?}",
        listen.controls
    );
    assert_eq!(listen.final_transcript().to_lowercase(), heard.trim());
    assert!(
        !listen.results(false).is_empty(),
        "the server sent interim results"
    );
}

#[test]
fn keep_alive_holds_the_stream_open_while_no_audio_flows() {
    // The server closes a stream after 400 ms without any message, as Deepgram does after 10 s.
    let server = DeepgramServer::start(DeepgramServerOptions {
        api_key: KEY.to_owned(),
        idle_timeout_ms: 400,
        ..DeepgramServerOptions::default()
    });
    let config = serde_json::json!({
        "api_key": KEY, "base_url": server.base_url(), "keep_alive_ms": 100,
    });
    let stt = ProviderRegistry::global()
        .create_stt("deepgram", &ProviderSetup::new(&config))
        .unwrap();
    let mut speech = silence(250, 16000);
    speech.extend(espeak_speech(
        "Turn off the lights in the kitchen, please.",
        "en-us",
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut audio_tx, audio) = speech_ring(speech.len() + 16000);
    let (results_tx, mut results) = tokio::sync::mpsc::unbounded_channel();
    let turn = runtime.spawn(stt.transcribe(SttTurn {
        sample_rate: 16000,
        audio,
        results: SttSink::new(1, results_tx),
    }));
    let (head, tail) = speech.split_at(speech.len() / 2);
    audio_tx.write(head);
    // The user pauses: no audio for far longer than the server's idle limit.
    std::thread::sleep(Duration::from_millis(1500));
    audio_tx.write(tail);
    audio_tx.write(&silence(500, 16000));
    drop(audio_tx);
    runtime
        .block_on(turn)
        .unwrap()
        .expect("the turn is transcribed");
    let mut transcript = String::new();
    while let Ok((_, result)) = results.try_recv() {
        if let SttResult::Final(text) = result {
            transcript = text.to_lowercase();
        }
    }
    assert!(
        transcript.contains("lights") && transcript.contains("kitchen"),
        "{transcript}"
    );
    let connections = server.connections();
    assert_eq!(connections.len(), 1, "{connections:?}");
    let keep_alives = connections[0]
        .controls
        .iter()
        .filter(|c| *c == "KeepAlive")
        .count();
    assert!(keep_alives >= 2, "{:?}", connections[0].controls);
    assert_eq!(connections[0].error_close, None);
}

#[test]
fn the_key_may_come_from_deepgram_api_key() {
    run_ignored_test_with_env(
        "a_turn_is_transcribed_with_the_key_from_the_environment",
        &[("DEEPGRAM_API_KEY", KEY)],
    );
}

#[test]
#[ignore = "run by the_key_may_come_from_deepgram_api_key with DEEPGRAM_API_KEY set"]
fn a_turn_is_transcribed_with_the_key_from_the_environment() {
    let server = server();
    let config = serde_json::json!({ "base_url": server.base_url() });
    let stt = ProviderRegistry::global()
        .create_stt("deepgram", &ProviderSetup::new(&config))
        .expect("the key comes from DEEPGRAM_API_KEY");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut audio_tx, audio) = speech_ring(16000);
    let (results_tx, mut results) = tokio::sync::mpsc::unbounded_channel();
    audio_tx.write(&silence(300, 16000));
    drop(audio_tx);
    runtime
        .block_on(stt.transcribe(SttTurn {
            sample_rate: 16000,
            audio,
            results: SttSink::new(1, results_tx),
        }))
        .expect("the server accepted the key");
    assert_eq!(
        results.try_recv().unwrap().1,
        SttResult::Final(String::new())
    );
    assert!(server.connections()[0].closed_normally);
}
