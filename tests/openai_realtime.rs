//! `pipeline_type: "s2s"` with the `openai-realtime` provider in full sessions against the local
//! OpenAI-protocol Realtime server (`tests/servers/openai_realtime/`), which speaks the GA
//! Realtime API's events and is backed by the embedded engines: it transcribes the committed
//! turn with Whisper and answers "You said: …" spoken by eSpeak NG, streamed as audio deltas.
//! Here: the session's events end to end, barge-in, an `error` event refusing a response, and
//! the server's own turn detection. The faults the server can inject (a refused key, refused
//! session settings, an unreadable message, a stall, a connection dropped mid-response) and a
//! missing key are OpenAI Realtime's rows of the fault matrix, `tests/provider_faults.rs`.

mod common;
mod servers;

use common::*;
use serde_json::{Value, json};
use servers::openai_engines::{Fault, hear};
use servers::openai_realtime::OpenAiRealtimeServer;
use voicebackend::{
    Backend, Event, Session, SessionConfig, VbEventKind as K, VbSessionState as S, VbStatus,
};

const KEY: &str = "sk-local-realtime-0123456789";

/// A started `s2s` backend on `openai-realtime` at `server`, with `extra` merged into
/// `s2s_config` and quick retries.
fn backend(server: &OpenAiRealtimeServer, extra: &str) -> Backend {
    let url = server.base_url();
    let json = format!(
        r#"{{"provider":"local","pipeline_type":"s2s","s2s_provider":"openai-realtime",
            "s2s_config":{{"api_key":"{KEY}","base_url":"{url}"{extra}}},
            "retry":{{"max_attempts":3,"initial_backoff_ms":10,"max_backoff_ms":40}}}}"#
    );
    let backend = Backend::from_json(&json).expect("backend config");
    backend.start().unwrap();
    backend
}

fn started(backend: &Backend) -> Session {
    let session = backend
        .create_session(SessionConfig::default(), None, None)
        .expect("create_session");
    session.start().unwrap();
    session
}

#[test]
fn s2s_sessions_talk_with_the_openai_realtime_api_end_to_end() {
    let server = OpenAiRealtimeServer::start(KEY);
    let backend = backend(&server, r#","voice":"cedar","instructions":"Be brief.""#);
    let session = started(&backend);
    say_as_user(&session, "What is the weather like today?");
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL).join(" ");
    assert!(heard.to_lowercase().contains("weather"), "{heard}");
    let answer = texts(&events, K::VB_EVENT_AGENT_RESPONSE).join(" ");
    assert_eq!(
        answer,
        format!("You said: {}.", heard.trim_end_matches(['.', '?', '!']))
    );
    let (rest, reply) = play_until(&session, back_to_listening);
    assert!(!kinds(&events).contains(&K::VB_EVENT_ERROR));
    assert!(!kinds(&rest).contains(&K::VB_EVENT_ERROR));
    let reply_heard = hear(&reply);
    assert!(
        reply_heard.contains("you said") && reply_heard.contains("weather"),
        "the reply audio says the reply: {reply_heard}"
    );
    assert_eq!(session.state(), S::VB_STATE_LISTENING);

    assert_eq!(server.connections(), 1);
    let update = &server.client_events_of("session.update")[0]["session"];
    assert_eq!(update["type"], "realtime");
    assert_eq!(update["output_modalities"], json!(["audio"]));
    assert_eq!(update["instructions"], "Be brief.");
    let pcm = json!({"type": "audio/pcm", "rate": 24000});
    assert_eq!(update["audio"]["input"]["format"], pcm);
    assert_eq!(update["audio"]["output"]["format"], pcm);
    assert_eq!(update["audio"]["output"]["voice"], "cedar");
    assert_eq!(
        update["audio"]["input"]["turn_detection"],
        Value::Null,
        "the engine ends turns"
    );
    assert_eq!(
        update["audio"]["input"]["transcription"]["model"],
        "gpt-4o-mini-transcribe"
    );
    let types: Vec<String> = server
        .client_events()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .filter(|t| t != "input_audio_buffer.append")
        .collect();
    assert_eq!(
        types,
        [
            "session.update",
            "input_audio_buffer.commit",
            "response.create"
        ]
    );
    let appended: usize = server
        .client_events_of("input_audio_buffer.append")
        .iter()
        .map(|e| e["audio"].as_str().unwrap().len() / 4 * 3 / 2)
        .sum();
    assert!(
        appended > 24000,
        "the turn went up at 24 kHz: {appended} samples"
    );
}

#[test]
fn barge_in_cancels_the_response_truncates_what_was_heard_and_plays_no_stale_audio() {
    let server = OpenAiRealtimeServer::start(KEY);
    let backend = backend(&server, "");
    let session = started(&backend);
    say_as_user(
        &session,
        "Please tell me a long story about the river, the mountains and the sea.",
    );
    events_until(&session, |e| {
        e.kind == K::VB_EVENT_STATE_CHANGED && e.state == S::VB_STATE_SPEAKING
    });
    let mut played = Vec::new();
    push_realtime(&session, &speech(210.0, 700, 16000), 16000, &mut played);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_INTERRUPTED);
    assert!(!played.is_empty(), "the reply was playing");
    assert_eq!(
        readable_over_the_next_50_ms(&session),
        0,
        "no audio of the cancelled response"
    );
    let cancels = server.client_events_of("response.cancel");
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert!(
        cancels[0]["response_id"]
            .as_str()
            .unwrap()
            .starts_with("resp_")
    );
    let truncates = server.client_events_of("conversation.item.truncate");
    assert_eq!(truncates.len(), 1);
    let heard_ms = truncates[0]["audio_end_ms"].as_u64().unwrap();
    assert!(heard_ms > 0, "{truncates:?}");
    assert_eq!(truncates[0]["content_index"], 0);
    // The barge-in is a turn of its own, answered by a new response.
    push_all(&session, &silence(900, 16000), 16000);
    let (rest, _) = play_until(&session, reply_finished());
    let all: Vec<Event> = events.into_iter().chain(rest).collect();
    assert!(
        !kinds(&all).contains(&K::VB_EVENT_ERROR),
        "{:?}",
        texts(&all, K::VB_EVENT_ERROR)
    );
    assert_eq!(server.client_events_of("response.create").len(), 2);
}

#[test]
fn an_error_event_refusing_a_response_is_a_provider_error_and_the_session_keeps_listening() {
    let server = OpenAiRealtimeServer::start(KEY);
    server.fail_next(
        Fault::Status {
            status: 500,
            kind: "server_error",
            code: None,
            message: "The server had an error while processing your request.",
        },
        1,
    );
    let backend = backend(&server, "");
    let session = started(&backend);
    say_as_user(&session, "Good evening.");
    let events = events_until(&session, is_error);
    let error = events.last().unwrap();
    assert_eq!(error.error, VbStatus::VB_ERR_PROVIDER);
    assert_eq!(
        error.text.as_deref().unwrap(),
        "s2s openai-realtime: the server reported an error (server_error): \
         The server had an error while processing your request."
    );
    events_until(&session, back_to_listening);
    say_as_user(&session, "Good evening again.");
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    assert!(!kinds(&events).contains(&K::VB_EVENT_ERROR));
    assert_eq!(
        server.connections(),
        1,
        "an error event does not end the connection"
    );
}

#[test]
fn server_turn_detection_lets_the_servers_vad_end_the_turn() {
    let server = OpenAiRealtimeServer::start(KEY);
    server.set_realtime_pace(false);
    let backend = backend(&server, r#","turn_detection":"server""#);
    let session = started(&backend);
    say_as_user(&session, "Turn on the lights in the kitchen.");
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    assert!(!kinds(&events).contains(&K::VB_EVENT_ERROR));
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL)
        .join(" ")
        .to_lowercase();
    assert!(heard.contains("kitchen"), "{heard}");
    play_until(&session, back_to_listening);
    let vad = &server.client_events_of("session.update")[0]["session"]["audio"]["input"]["turn_detection"];
    assert_eq!(vad["type"], "server_vad");
    assert_eq!(vad["create_response"], true);
    assert_eq!(
        vad["interrupt_response"], false,
        "barge-in stays the engine's"
    );
    assert!(
        server
            .client_events_of("input_audio_buffer.commit")
            .is_empty()
    );
    assert!(server.client_events_of("response.create").is_empty());
}
