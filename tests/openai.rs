//! The `openai` STT and TTS providers in full sessions against the local OpenAI-protocol HTTP
//! server (`tests/servers/openai_http/`), which answers as OpenAI's audio API documents and is
//! backed by the embedded Whisper and eSpeak NG engines: real transcripts of real speech, real
//! speech back, streamed partials, transient server errors retried, a self-hosted `base_url`,
//! barge-in. The faults the server can inject (a refused key, a rejected request, an unreadable
//! answer, a stall, an answer cut mid-stream) and a missing key are OpenAI's rows of the fault
//! matrix, `tests/provider_faults.rs`.

mod common;
mod servers;

use common::*;
use servers::openai_engines::{Fault, hear};
use servers::openai_http::OpenAiHttpServer;
use voicebackend::{Backend, VbEventKind as K, VbSessionState as S};

const KEY: &str = "sk-local-test-0123456789abcdef";

/// A started backend on `openai` STT and TTS at `server`, with `stt`/`tts` merged into their
/// configs and quick retries.
fn backend(server: &OpenAiHttpServer, stt: &str, tts: &str) -> Backend {
    let url = server.base_url();
    let json = format!(
        r#"{{"provider":"local",
            "stt_provider":"openai","stt_config":{{"api_key":"{KEY}","base_url":"{url}"{stt}}},
            "tts_provider":"openai","tts_config":{{"api_key":"{KEY}","base_url":"{url}"{tts}}},
            "retry":{{"max_attempts":3,"initial_backoff_ms":10,"max_backoff_ms":40}}}}"#
    );
    let backend = Backend::from_json(&json).expect("backend config");
    backend.start().unwrap();
    backend
}

#[test]
fn openai_stt_and_tts_hold_a_conversation_with_a_local_openai_protocol_server() {
    let server = OpenAiHttpServer::start(KEY);
    let backend = backend(&server, r#","language":"en""#, r#","voice":"nova""#);
    let session = session_at(&backend, 16000);
    say_as_user(&session, "What is twelve plus seven?");
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_AGENT_RESPONSE);
    let heard = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL)
        .join(" ")
        .to_lowercase();
    assert!(heard.contains("plus"), "{heard}");
    let (_, reply) = play_until(&session, back_to_listening);
    assert!(
        reply.len() > 16000,
        "a spoken reply: {} samples",
        reply.len()
    );
    let reply_heard = hear(&reply);
    assert!(
        reply_heard.contains("you said") && reply_heard.contains("plus"),
        "the reply audio says the reply: {reply_heard}"
    );

    let stt = server.requests_to("/v1/audio/transcriptions");
    assert_eq!(stt.len(), 1);
    assert!(stt[0].authorized);
    assert_eq!(stt[0].fields["model"], "whisper-1");
    assert_eq!(stt[0].fields["response_format"], "json");
    assert_eq!(stt[0].fields["language"], "en");
    let file = stt[0].file.as_ref().expect("a file part");
    assert_eq!(
        (file.file_name.as_str(), file.content_type.as_str()),
        ("audio.wav", "audio/wav")
    );
    assert_eq!(
        (file.sample_rate, file.channels, file.bits_per_sample),
        (16000, 1, 16),
        "a WAV at the internal rate"
    );
    assert!(
        file.samples > 16000,
        "the whole turn: {} samples",
        file.samples
    );
    let tts = server.requests_to("/v1/audio/speech");
    assert!(!tts.is_empty());
    let body = tts[0].json.as_ref().unwrap();
    assert_eq!(body["model"], "gpt-4o-mini-tts");
    assert_eq!(body["voice"], "nova");
    assert_eq!(body["response_format"], "pcm");
    let spoken: String = tts
        .iter()
        .map(|r| r.text.clone())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(spoken.to_lowercase().starts_with("you said"), "{spoken}");
}

#[test]
fn streamed_transcriptions_report_partials_before_the_final() {
    let server = OpenAiHttpServer::start(KEY);
    let backend = backend(
        &server,
        r#","model":"gpt-4o-mini-transcribe","stream":true"#,
        "",
    );
    let session = session_at(&backend, 16000);
    say_as_user(&session, "I would like to book a table for two people.");
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_TRANSCRIPT_FINAL);
    let partials = texts(&events, K::VB_EVENT_TRANSCRIPT_PARTIAL);
    let last = events.last().unwrap().text.clone().unwrap();
    assert!(last.to_lowercase().contains("table"), "{last}");
    assert!(
        partials.len() >= 2,
        "one partial per streamed word: {partials:?}"
    );
    assert!(
        last.starts_with(partials[0].as_str()),
        "{partials:?} then {last}"
    );
    assert_eq!(server.requests()[0].fields["stream"], "true");
}

#[test]
fn transient_server_errors_are_retried() {
    let server = OpenAiHttpServer::start(KEY);
    server.fail_next(
        Fault::Status {
            status: 500,
            kind: "server_error",
            code: None,
            message: "The server had an error while processing your request.",
        },
        1,
    );
    server.fail_next(
        Fault::Status {
            status: 429,
            kind: "requests",
            code: Some("rate_limit_exceeded"),
            message: "Rate limit reached for requests.",
        },
        1,
    );
    let backend = backend(&server, "", "");
    let session = session_at(&backend, 16000);
    session.say("Hello there.").unwrap();
    let (events, audio) = play_until(&session, reply_finished());
    assert!(!kinds(&events).contains(&K::VB_EVENT_ERROR));
    assert!(rms(&audio) > 300.0, "speech after two retries");
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 429, 200]);
}

#[test]
fn a_self_hosted_base_url_with_v1_works() {
    let server = OpenAiHttpServer::start(KEY);
    let url = format!("{}/v1", server.base_url());
    let json = format!(
        r#"{{"provider":"local","stt_provider":"openai","stt_config":{{"api_key":"{KEY}","base_url":"{url}"}},
            "tts_provider":"openai","tts_config":{{"api_key":"{KEY}","base_url":"{url}","model":"tts-1","speed":1.25}}}}"#
    );
    let backend = Backend::from_json(&json).unwrap();
    backend.start().unwrap();
    let session = session_at(&backend, 16000);
    session.say("Self hosted.").unwrap();
    let (_, audio) = play_until(&session, reply_finished());
    assert!(rms(&audio) > 300.0);
    let request = &server.requests()[0];
    assert_eq!(request.path, "/v1/audio/speech");
    assert_eq!(request.json.as_ref().unwrap()["speed"], 1.25);
    assert_eq!(request.json.as_ref().unwrap()["model"], "tts-1");
}

#[test]
fn user_speech_interrupts_openai_speech_and_the_rest_of_the_reply_is_never_asked_for() {
    let server = OpenAiHttpServer::start(KEY);
    let backend = backend(&server, "", "");
    let session = session_at(&backend, 16000);
    let sentences = 8;
    let reply: String = (1..=sentences)
        .map(|i| format!("This is sentence number {i} of a long answer that takes a while. "))
        .collect();
    session.say(&reply).unwrap();
    events_until(&session, |e| {
        e.kind == K::VB_EVENT_STATE_CHANGED && e.state == S::VB_STATE_SPEAKING
    });
    let mut played = Vec::new();
    push_realtime(&session, &speech(210.0, 700, 16000), 16000, &mut played);
    events_until(&session, |e| e.kind == K::VB_EVENT_INTERRUPTED);
    assert!(!played.is_empty(), "the reply was playing");
    assert_eq!(readable_over_the_next_50_ms(&session), 0, "no stale speech");
    let asked = |server: &OpenAiHttpServer| {
        server
            .requests_to("/v1/audio/speech")
            .iter()
            .filter(|r| r.text.starts_with("This is sentence number"))
            .count()
    };
    let before = asked(&server);
    // The interruption is a user turn of its own: let it be transcribed and answered.
    push_all(&session, &silence(900, 16000), 16000);
    events_until(&session, |e| e.kind == K::VB_EVENT_TRANSCRIPT_FINAL);
    events_until(&session, back_to_listening);
    assert!(
        before < sentences,
        "asked for {before} of {sentences} sentences"
    );
    assert_eq!(
        asked(&server),
        before,
        "nothing of the cancelled reply is asked for later"
    );
}
