//! The vendors of the fault matrix (`tests/provider_faults.rs`): each network provider with its
//! local vendor-protocol server (`tests/servers/`) behind one trait, [`VendorServer`], so that the
//! matrix drives them all alike. An adapter arms its server with the matrix's [`Fault`] (in the
//! server's own fault modes), says what a turn is for its provider (the user's speech for speech
//! to text and speech to speech, the agent's reply for text to speech), and checks the evidence
//! of a fault that only its server has: what came over the wire. How a row runs is
//! [`matrix`].
#![allow(dead_code)]

pub mod deepgram;
pub mod elevenlabs;
pub mod matrix;
pub mod openai;
pub mod openai_realtime;

use serde_json::{Value, json};
use voicebackend::{Backend, Event, Session};

/// Quick retries, so that faults retried per the backend's rules settle fast.
const RETRY: &str = r#"{"max_attempts":3,"initial_backoff_ms":10,"max_backoff_ms":40}"#;

/// A network provider under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// `deepgram` speech to text over Deepgram's streaming listen WebSocket.
    Deepgram,
    /// `elevenlabs` text to speech over ElevenLabs' stream-input WebSocket.
    ElevenLabs,
    /// `openai` speech to text over OpenAI's HTTP audio API.
    OpenAiStt,
    /// `openai` text to speech over OpenAI's HTTP audio API.
    OpenAiTts,
    /// `openai-realtime` speech to speech over OpenAI's Realtime WebSocket.
    OpenAiRealtime,
}

/// A fault of a vendor's service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The service refuses the key: HTTP 401, at the WebSocket handshake or as the answer.
    RefusedKey,
    /// The service refuses what it is asked for: a language, a voice or a model it does not
    /// serve.
    Rejected,
    /// The service sends a message its protocol does not allow.
    Malformed,
    /// The service takes everything and answers nothing.
    Stall,
    /// The connection breaks mid-stream, without a close.
    Drop,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 5] = [
        Fault::RefusedKey,
        Fault::Rejected,
        Fault::Malformed,
        Fault::Stall,
        Fault::Drop,
    ];
}

impl Vendor {
    /// Every vendor.
    pub const ALL: [Vendor; 5] = [
        Vendor::Deepgram,
        Vendor::ElevenLabs,
        Vendor::OpenAiStt,
        Vendor::OpenAiTts,
        Vendor::OpenAiRealtime,
    ];

    /// The provider's role (`stt`, `tts`, `s2s`: its config section is `<role>_config`) and
    /// name; errors start with `<role> <name>: `.
    pub fn role_and_name(self) -> (&'static str, &'static str) {
        match self {
            Vendor::Deepgram => ("stt", "deepgram"),
            Vendor::ElevenLabs => ("tts", "elevenlabs"),
            Vendor::OpenAiStt => ("stt", "openai"),
            Vendor::OpenAiTts => ("tts", "openai"),
            Vendor::OpenAiRealtime => ("s2s", "openai-realtime"),
        }
    }

    /// The module of its rows in the matrix: a failing row's test is `<module>::<sentence>`.
    pub fn module(self) -> &'static str {
        match self {
            Vendor::Deepgram => "deepgram",
            Vendor::ElevenLabs => "elevenlabs",
            Vendor::OpenAiStt => "openai_stt",
            Vendor::OpenAiTts => "openai_tts",
            Vendor::OpenAiRealtime => "openai_realtime",
        }
    }

    /// The environment variable the key may come from instead of the config.
    pub fn key_variable(self) -> &'static str {
        match self {
            Vendor::Deepgram => "DEEPGRAM_API_KEY",
            Vendor::ElevenLabs => "ELEVENLABS_API_KEY",
            Vendor::OpenAiStt | Vendor::OpenAiTts | Vendor::OpenAiRealtime => "OPENAI_API_KEY",
        }
    }

    /// The key the vendor's local server accepts.
    pub fn key(self) -> &'static str {
        match self {
            Vendor::Deepgram => deepgram::KEY,
            Vendor::ElevenLabs => elevenlabs::KEY,
            Vendor::OpenAiStt | Vendor::OpenAiTts => openai::KEY,
            Vendor::OpenAiRealtime => openai_realtime::KEY,
        }
    }

    /// A key the vendor's local server refuses.
    pub fn wrong_key(self) -> &'static str {
        match self {
            Vendor::Deepgram => deepgram::WRONG_KEY,
            Vendor::ElevenLabs => elevenlabs::WRONG_KEY,
            Vendor::OpenAiStt | Vendor::OpenAiTts => openai::WRONG_KEY,
            Vendor::OpenAiRealtime => openai_realtime::WRONG_KEY,
        }
    }

    /// A `base_url` of the vendor's scheme where nothing listens.
    pub fn unreachable_url(self) -> &'static str {
        match self {
            Vendor::OpenAiStt | Vendor::OpenAiTts => "http://127.0.0.1:9",
            Vendor::Deepgram | Vendor::ElevenLabs | Vendor::OpenAiRealtime => "ws://127.0.0.1:9",
        }
    }

    /// A backend config (JSON) with this provider at `base_url`, `key` in its config section
    /// (none: no key there), `provider` merged into that section and `backend` into the top
    /// level; quick retries; the other roles on the scripted test providers.
    pub fn config(
        self,
        base_url: &str,
        key: Option<&str>,
        provider: &Value,
        backend: &Value,
    ) -> String {
        let (role, name) = self.role_and_name();
        let mut section = json!({"base_url": base_url});
        if let Some(key) = key {
            section["api_key"] = json!(key);
        }
        if self == Vendor::ElevenLabs {
            section["voice_id"] = json!(crate::servers::elevenlabs::VOICE_ID);
        }
        merge(&mut section, provider);
        let retry: Value = serde_json::from_str(RETRY).unwrap();
        let mut config = match role {
            "stt" => json!({"stt_provider": name, "tts_provider": "test-tone-tts"}),
            "tts" => json!({"stt_provider": "test-pitch-stt", "tts_provider": name}),
            _ => json!({"pipeline_type": "s2s", "s2s_provider": name}),
        };
        config["provider"] = json!("local");
        config["retry"] = retry;
        config[format!("{role}_config")] = section;
        merge(&mut config, backend);
        config.to_string()
    }

    /// Starts the vendor's local server with `fault` armed.
    pub fn start(self, fault: Fault) -> Box<dyn VendorServer> {
        match self {
            Vendor::Deepgram => Box::new(deepgram::Deepgram::start(fault)),
            Vendor::ElevenLabs => Box::new(elevenlabs::ElevenLabs::start(fault)),
            Vendor::OpenAiStt => Box::new(openai::OpenAi::start(fault, false)),
            Vendor::OpenAiTts => Box::new(openai::OpenAi::start(fault, true)),
            Vendor::OpenAiRealtime => Box::new(openai_realtime::Realtime::start(fault)),
        }
    }
}

/// What the host saw: every event it polled and the reply audio it read.
#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<Event>,
    pub played: Vec<i16>,
}

impl Outcome {
    /// Adds what the host saw next.
    pub fn extend(&mut self, next: Outcome) {
        self.events.extend(next.events);
        self.played.extend(next.played);
    }
}

/// A vendor's provider against its local server, with a fault armed.
pub trait VendorServer {
    /// Where the server listens: the provider's `base_url`.
    fn base_url(&self) -> String;

    /// A started session on `backend`, with the agent this vendor's turns need.
    fn session(&self, backend: &Backend) -> Session;

    /// Starts turn `n` (from 1): the user's speech, for a provider that listens or whose reply
    /// answers it; the agent's reply (`say`) for one that only speaks.
    fn begin_turn(&self, session: &Session, n: usize);

    /// Ends the turn begun: the silence after the user's speech (nothing after a `say`).
    fn end_turn(&self, session: &Session);

    /// Waits for turn `n`'s result (a final transcript, the reply played, the agent's response),
    /// checks that it is whole and returns what the host saw meanwhile.
    fn answered(&self, session: &Session, n: usize) -> Outcome;

    /// The server behaves again (a fault armed for every request is lifted).
    fn heal(&self);

    /// One entry per connection (WebSocket) or request (HTTP) the server saw for the provider:
    /// the HTTP status it refused it with (at the handshake or as the answer), `None` when it
    /// took it.
    fn attempts(&self) -> Vec<Option<u16>>;

    /// Checks what the server saw of `fault`, beyond what the host saw (`seen`).
    fn evidence(&self, fault: Fault, seen: &Outcome);
}

/// Sets every field of `update` in `target`, recursing into objects.
pub fn merge(target: &mut Value, update: &Value) {
    match (target, update) {
        (Value::Object(target), Value::Object(update)) => {
            for (key, value) in update {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, update) => *target = update.clone(),
    }
}
