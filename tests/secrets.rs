//! API keys, signing keys and access tokens never leak: one conversation runs with every place a
//! secret could escape switched on (network providers with a key, a refused key, JWT auth with a
//! refused token, OTLP export, the Prometheus endpoint, the session store, every log record at
//! the most verbose level), everything the engine wrote is collected, and the secrets are searched
//! for in it.
#![cfg(feature = "test-providers")]

mod common;
mod servers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use livekit_api::access_token::{AccessToken, VideoGrants};
use servers::openai_http::OpenAiHttpServer;
use servers::otlp::{OtlpReceiver, scrape};
use voicebackend::config::Secret;
use voicebackend::logging::{self, LevelFilter, LogRecord};
use voicebackend::{Backend, Event, SessionConfig, VbEventKind as K, VbStatus};

const OPENAI_KEY: &str = "sk-leaktest-openai-7f3a9c2d";
const WRONG_OPENAI_KEY: &str = "sk-leaktest-wrong-51e0b6aa";
const JWT_SECRET: &str = "leaktest-jwt-signing-key-0c4d";

fn token(identity: &str, secret: &str) -> String {
    AccessToken::with_api_key("APIleaktest", secret)
        .with_identity(identity)
        .with_grants(VideoGrants {
            room_join: true,
            room: "support".to_owned(),
            ..VideoGrants::default()
        })
        .to_jwt()
        .unwrap()
}

fn backend_json(server: &OpenAiHttpServer, key: &str, otlp: &str, store: &str) -> String {
    let url = server.base_url();
    format!(
        r#"{{"provider":"local",
            "stt_provider":"openai","stt_config":{{"api_key":"{key}","base_url":"{url}"}},
            "tts_provider":"openai","tts_config":{{"api_key":"{key}","base_url":"{url}"}},
            "retry":{{"max_attempts":2,"initial_backoff_ms":10,"max_backoff_ms":20}},
            "auth":{{"jwt_hs256_secret":"{JWT_SECRET}","required":true}},
            "persistence":{{"path":"{store}"}},
            "telemetry":{{"otlp_endpoint":"{otlp}","prometheus_addr":"127.0.0.1:0",
                          "export_interval_ms":100}}}}"#
    )
}

/// Everything a host, a log pipeline or an operator could see from the engine.
#[derive(Default)]
struct Seen {
    text: String,
    bytes: Vec<u8>,
}

impl Seen {
    fn note(&mut self, what: impl std::fmt::Display) {
        self.text.push_str(&what.to_string());
        self.text.push('\n');
    }

    fn events(&mut self, events: &[Event]) {
        for e in events {
            self.note(format!("{e:?}"));
        }
    }

    fn assert_free_of(&self, secrets: &[&str]) {
        for secret in secrets {
            assert!(
                !self.text.contains(secret),
                "a secret leaked into what the engine reported:\n{}",
                self.text
            );
            assert!(
                !self
                    .bytes
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "a secret leaked into exported or stored bytes"
            );
        }
    }
}

#[test]
fn keys_tokens_and_signing_keys_appear_in_no_event_error_export_or_store() {
    let server = OpenAiHttpServer::start(OPENAI_KEY);
    let otlp = OtlpReceiver::start();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("sessions.redb");
    let good_token = token("alice", JWT_SECRET);
    let forged_token = token("mallory", "not-the-signing-key");
    let mut seen = Seen::default();
    // Every log record, as a host's log callback at its most verbose would get them.
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    logging::forward(
        Some(Box::new(move |r: &LogRecord| {
            let mut log = sink.lock().unwrap();
            log.push_str(&format!("{} {} {}\n", r.level, r.target, r.message));
        })),
        LevelFilter::TRACE,
    )
    .unwrap();

    let json = backend_json(
        &server,
        OPENAI_KEY,
        &otlp.endpoint(),
        store.to_str().unwrap(),
    );
    let backend = Backend::from_json(&json).unwrap();
    seen.note(format!("{:?}", backend.config()));
    backend.start().unwrap();

    // A forged token and a missing one are refused with messages that quote neither.
    for auth_token in [Some(&forged_token), None] {
        let config = SessionConfig {
            auth_token: auth_token.map(|t| Secret::new(t.as_str())),
            ..SessionConfig::default()
        };
        seen.note(format!("{config:?}"));
        let refused = backend
            .create_session(config, Some(echo_agent()), None)
            .unwrap_err();
        assert_eq!(refused.status(), VbStatus::VB_ERR_UNAUTHORIZED);
        seen.note(&refused);
    }

    // A real conversation with a valid token; the record is on disk while it is active.
    let config = SessionConfig {
        auth_token: Some(Secret::new(good_token.as_str())),
        metadata: serde_json::json!({"note": "metadata is stored, tokens are not"}),
        ..SessionConfig::default()
    };
    seen.note(format!("{config:?}"));
    let session = backend
        .create_session(config, Some(echo_agent()), None)
        .unwrap();
    session.start().unwrap();
    let mut speech = silence(300, 16000);
    speech.extend(espeak_speech("What time is it?", "en-us"));
    speech.extend(silence(900, 16000));
    push_all(&session, &speech, 16000);
    let (events, _) = play_until(&session, reply_finished());
    assert!(
        !texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL).is_empty(),
        "the conversation must really happen: {events:#?}"
    );
    seen.events(&events);
    backend.flush_store().unwrap();
    seen.bytes.extend(std::fs::read(&store).unwrap());

    // Telemetry: the Prometheus page and every OTLP body.
    let address = backend.telemetry().prometheus_addr().unwrap();
    seen.note(scrape(address).2);
    let deadline = std::time::Instant::now() + PATIENCE;
    while otlp.bodies("/v1/traces").is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    session.stop().unwrap();
    backend.stop(Duration::from_secs(5)).unwrap();
    for path in ["/v1/metrics", "/v1/traces"] {
        let bodies = otlp.bodies(path);
        assert!(!bodies.is_empty(), "nothing was exported to {path}");
        bodies.iter().for_each(|b| seen.bytes.extend(b));
    }

    // A key the server refuses: the error event names the provider, not the key.
    let json = backend_json(
        &server,
        WRONG_OPENAI_KEY,
        &otlp.endpoint(),
        dir.join("refused.redb").to_str().unwrap(),
    );
    let backend = Backend::from_json(&json).unwrap();
    backend.start().unwrap();
    let config = SessionConfig {
        auth_token: Some(Secret::new(good_token.as_str())),
        ..SessionConfig::default()
    };
    let session = backend
        .create_session(config, Some(echo_agent()), None)
        .unwrap();
    session.start().unwrap();
    push_all(&session, &speech, 16000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_ERROR);
    assert_eq!(events.last().unwrap().error, VbStatus::VB_ERR_UNAUTHORIZED);
    seen.events(&events);
    backend.stop(Duration::ZERO).unwrap();

    // The log: once the last record (the second backend stopping) has reached the sink.
    let deadline = std::time::Instant::now() + PATIENCE;
    while log.lock().unwrap().matches("backend stopped").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = log.lock().unwrap().clone();
    assert!(log.contains("session refused"), "{log}");
    assert!(log.contains("session started"), "{log}");
    seen.note(&log);

    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    let (good_signature, forged_signature) = (signature(&good_token), signature(&forged_token));
    seen.assert_free_of(&[
        OPENAI_KEY,
        WRONG_OPENAI_KEY,
        JWT_SECRET,
        &good_token,
        &forged_token,
        &good_signature,
        &forged_signature,
    ]);
    // The search can fail: the reported material holds what it should.
    assert!(seen.text.contains("openai"), "{}", seen.text);
    assert!(
        seen.bytes.windows(5).any(|w| w == b"alice"),
        "the store holds the session of the token's user"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
