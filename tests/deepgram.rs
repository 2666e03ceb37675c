//! The `deepgram` STT provider through whole sessions, against a local Deepgram-protocol server
//! (`tests/servers/deepgram.rs`) that transcribes with the embedded Whisper: real eSpeak NG
//! speech in, partial and final transcripts out, and the error paths a network service brings
//! (a refused key, a malformed message, a dropped connection, a server that stops answering).
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
use voicebackend::{Backend, VbEventKind as K, VbSessionState, VbStatus};

/// The key the local server accepts.
const KEY: &str = "dg-test-key-5b1e9c";

/// Fast retries, so that failure tests do not wait long.
const RETRY: &str = r#""retry":{"max_attempts":3,"initial_backoff_ms":10,"max_backoff_ms":50}"#;

fn server(fault: DeepgramFault) -> DeepgramServer {
    DeepgramServer::start(DeepgramServerOptions {
        api_key: KEY.to_owned(),
        fault,
        ..DeepgramServerOptions::default()
    })
}

/// A started backend transcribing with `deepgram` at `server` (`stt_extra` merged into
/// `stt_config`) and speaking with `tts`.
fn backend(server: &DeepgramServer, key: &str, stt_extra: &str, tts: &str) -> Backend {
    let json = format!(
        r#"{{"provider":"local","stt_provider":"deepgram","tts_provider":"{tts}",{RETRY},
            "stt_config":{{"api_key":"{key}","base_url":"{}"{stt_extra}}}}}"#,
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
    let server = server(DeepgramFault::None);
    let backend = backend(&server, KEY, "", "espeak");
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
fn a_refused_key_is_an_unauthorized_error_and_the_session_keeps_listening() {
    let server = server(DeepgramFault::None);
    let wrong = "dg-wrong-key-0c41aa";
    let backend = backend(&server, wrong, "", "test-tone-tts");
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
        assert!(message.contains("deepgram"), "{message}");
        assert!(message.contains("401"), "{message}");
        assert_key_absent(&events, wrong);
        let after = listening_after_failed_turn(&session, &events);
        assert_key_absent(&after, wrong);
    }
    let connections = server.connections();
    assert_eq!(
        connections.len(),
        2,
        "one refused connection per turn, not retried"
    );
    assert!(connections.iter().all(|c| c.refused == Some(401)));
}

#[test]
fn a_malformed_message_is_a_provider_error_and_the_session_keeps_listening() {
    let server = server(DeepgramFault::Malformed);
    let backend = backend(&server, KEY, "", "test-tone-tts");
    let session = session_at(&backend, 16000);
    // The server answers the first audio: the turn fails while the user is still speaking.
    push_all(&session, &speech(150.0, 800, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let (status, message) = errors(&events).remove(0);
    assert_eq!(status, VbStatus::VB_ERR_PROVIDER, "{message}");
    assert!(
        message.contains("deepgram") && message.contains("malformed Results message"),
        "{message}"
    );
    assert_key_absent(&events, KEY);
    push_all(&session, &silence(900, 16000), 16000);
    let after = listening_after_failed_turn(&session, &events);
    let stopped = after
        .iter()
        .find(|e| e.kind == K::VB_EVENT_SPEECH_STOPPED)
        .expect("the turn ended after the error");
    assert_eq!(
        stopped.state,
        VbSessionState::VB_STATE_LISTENING,
        "a turn that already failed has nothing to process"
    );
}

#[test]
fn a_request_the_service_refuses_is_a_provider_error() {
    let server = server(DeepgramFault::None);
    // The local server's model is English-only, so it refuses German with 400 as Deepgram
    // refuses what it cannot serve.
    let backend = backend(&server, KEY, r#","language":"de""#, "test-tone-tts");
    let session = session_at(&backend, 16000);
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let (status, message) = errors(&events).remove(0);
    assert_eq!(status, VbStatus::VB_ERR_PROVIDER, "{message}");
    assert!(
        message.contains("deepgram") && message.contains("HTTP 400"),
        "{message}"
    );
    listening_after_failed_turn(&session, &events);
    assert_eq!(server.connections()[0].refused, Some(400));
}

#[test]
fn a_connection_lost_mid_stream_is_resumed_and_the_transcript_is_complete() {
    let first = "Can you tell me the way to the train station?";
    let second = "We need to finish the report before Friday.";
    let first_ms = (espeak_speech(first, "en-us").len() / 16) as u32;
    // Dropped well into the second sentence, after the pause between them was endpointed.
    let server = server(DeepgramFault::DropOnce {
        after_audio_ms: first_ms + 1200,
    });
    let json = format!(
        r#"{{"provider":"local","stt_provider":"deepgram","tts_provider":"test-tone-tts",{RETRY},
            "turn":{{"silence_ms":800}},
            "stt_config":{{"api_key":"{KEY}","base_url":"{}","endpointing_ms":150}}}}"#,
        server.base_url()
    );
    let backend = Backend::from_json(&json).unwrap();
    backend.start().unwrap();
    let session = session_at(&backend, 16000);
    push_all(&session, &spoken(&[first, second], 450), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_TRANSCRIPT_FINAL);
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL)
        .join(" ")
        .to_lowercase();
    assert!(heard.contains("train station"), "{heard}");
    assert!(
        heard.contains("report") && heard.contains("friday"),
        "{heard}"
    );
    let connections = server.wait_for(|c| c.len() == 2 && c[1].closed_normally);
    let (lost, resumed) = (&connections[0], &connections[1]);
    assert!(lost.dropped);
    assert!(
        lost.final_transcript()
            .to_lowercase()
            .contains("train station"),
        "the first sentence was final before the drop: {lost:?}"
    );
    assert!(
        !resumed
            .final_transcript()
            .to_lowercase()
            .contains("station"),
        "audio already covered by final results is not sent again: {resumed:?}"
    );
    assert!(resumed.audio_samples < lost.audio_samples + resumed.audio_samples / 2);
}

#[test]
fn a_server_that_stops_answering_is_a_timeout() {
    let server = server(DeepgramFault::Stall);
    let backend = backend(&server, KEY, r#","timeout_ms":800"#, "test-tone-tts");
    let session = session_at(&backend, 16000);
    push_all(&session, &utterance(150.0, 800, 16000), 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    let (status, message) = errors(&events).remove(0);
    assert_eq!(status, VbStatus::VB_ERR_TIMEOUT, "{message}");
    assert!(
        message.contains("deepgram") && message.contains("800 ms"),
        "{message}"
    );
    assert_key_absent(&events, KEY);
    listening_after_failed_turn(&session, &events);
    let connections = server.connections();
    assert_eq!(connections.len(), 1, "a stalled server is not reconnected");
    assert!(
        connections[0]
            .controls
            .ends_with(&["Finalize".into(), "CloseStream".into()])
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
fn a_missing_key_is_a_config_error_at_backend_creation() {
    assert!(
        std::env::var_os("DEEPGRAM_API_KEY").is_none(),
        "this test needs DEEPGRAM_API_KEY unset"
    );
    let json = r#"{"provider":"local","stt_provider":"deepgram","tts_provider":"espeak",
                   "stt_config":{"base_url":"ws://127.0.0.1:9"}}"#;
    let Err(e) = Backend::from_json(json) else {
        panic!("a backend without a key");
    };
    assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
    assert_eq!(
        e.message(),
        "stt_config.api_key: missing (set it or the DEEPGRAM_API_KEY environment variable)"
    );
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
    let server = server(DeepgramFault::None);
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
