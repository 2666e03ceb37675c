//! `openai-realtime`: speech to speech with OpenAI's Realtime API over a WebSocket, or with any
//! server that speaks it (set `base_url`). Runs on the backend's I/O runtime, one connection per
//! session.
//!
//! It speaks the generally available (GA) version of the API, not the beta (no `OpenAI-Beta`
//! header; beta event names such as `response.audio.delta` are not used). The messages are those
//! of OpenAI's API reference, read in the generated types of the official `openai-python` SDK
//! (`types/realtime/*.py`: `session_update_event`, `realtime_session_create_request`,
//! `realtime_audio_config_input`/`_output`, `realtime_audio_formats`,
//! `realtime_audio_input_turn_detection`, `input_audio_buffer_append_event`/`_commit_event`,
//! `response_create_event`, `response_cancel_event`, `conversation_item_truncate_event`, and the
//! server events `session_created_event`, `input_audio_buffer_committed_event`,
//! `response_created_event`, `response_audio_delta_event` (`response.output_audio.delta`),
//! `response_audio_transcript_delta_event` (`response.output_audio_transcript.delta`),
//! `conversation_item_input_audio_transcription_completed_event`, `response_done_event`,
//! `realtime_error_event`); the URL is `{base_url}/v1/realtime?model=…` as the SDK builds it.
//!
//! The conversation:
//! - Connect with `Authorization: Bearer <key>` (a refused key is `VB_ERR_UNAUTHORIZED`), then
//!   `session.update`: audio in and out as `audio/pcm` at 24 kHz, the voice, the instructions,
//!   input transcription (`transcription_model`), and turn detection; nothing else is sent
//!   until the server confirms them (`session.updated`).
//! - User speech (the session's internal rate) is resampled to 24 kHz and sent as
//!   `input_audio_buffer.append` (base64 of 16-bit little-endian PCM).
//! - `turn_detection: "engine"` (default): the server's VAD is off; when the engine's turn
//!   detector ends the turn the provider sends `input_audio_buffer.commit` and `response.create`
//!   (a turn ending while a response is still under way is committed at once and answered after
//!   it, since the API allows one response at a time). `"server"`: the server's `server_vad`
//!   ends turns and creates responses by itself; since the engine forwards only the audio of
//!   user turns, the provider appends [`SERVER_VAD_PAD_MS`] of silence at the engine's end of
//!   turn so that the server hears the turn end. Barge-in stays the engine's decision in both
//!   modes (`interrupt_response: false`), so `interruptions` settings keep their meaning.
//! - `response.output_audio.delta` becomes [`S2sEvent::Audio`] (24 kHz),
//!   `response.output_audio_transcript.delta` [`S2sEvent::ResponseText`],
//!   `conversation.item.input_audio_transcription.completed` [`S2sEvent::UserTranscript`],
//!   `response.done` [`S2sEvent::ResponseDone`], and `error` events [`S2sEvent::Error`].
//! - Barge-in ([`S2sInput::CancelResponse`]) is answered at once with one `ResponseDone`; the
//!   response under way gets `response.cancel` and its audio item `conversation.item.truncate` at
//!   the point the user is estimated to have heard (the time since its first audio, capped by the
//!   audio delivered); whatever the server still sends for it is dropped.
//! - A response must hear from the server every `timeout_ms`, else `VB_ERR_TIMEOUT` and the
//!   connection is dropped. A connection that breaks is opened again at once per the backend's
//!   `retry` rules, `session.update` is sent again and the audio of the user turn not yet
//!   committed is appended again; a response it cut short is reported (`VB_ERR_CONNECTION_FAILED`)
//!   and ended. The server keeps conversation context per connection, so a new connection starts
//!   a fresh conversation. When no connection can be made the error is reported, turns are
//!   answered with an empty response so that the session keeps listening, and the next user
//!   turn tries again. A `session.update` the server refuses (an `error` event naming it) is
//!   reported and the connection closed rather than run with the server's defaults (which
//!   would be another session than the one configured); the next user turn tries again.
//!
//! `s2s_config` (strict): `api_key` (else `OPENAI_API_KEY`), `base_url` (default
//! `wss://api.openai.com`; `ws://` for local servers), `model` (default `gpt-realtime`), `voice`
//! (default `marin`), `instructions` (optional), `turn_detection` (`"engine"` or `"server"`),
//! `transcription_model` (default `gpt-4o-mini-transcribe`), `timeout_ms` (100–600000, default
//! 10000).

mod conversation;
#[cfg(feature = "fuzzing")]
pub(crate) use conversation::fuzz;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::openai::{KEY_ENV, api_url};
use crate::config::{RetryConfig, Secret, check_range, parse_section};
use crate::error::{Error, Result};
use crate::net::{DEFAULT_TIMEOUT_MS, api_key, redact_url};
use crate::provider::{BoxFuture, ProviderSetup, S2sProvider, S2sSession};
use conversation::Conversation;

/// The registry name.
pub const NAME: &str = "openai-realtime";
/// The default `base_url`.
pub const DEFAULT_BASE_URL: &str = "wss://api.openai.com";
/// The rate of audio in both directions (`audio/pcm` supports only 24 kHz).
pub const RATE: u32 = 24_000;
/// `silence_duration_ms` of the server's VAD in `turn_detection: "server"`.
pub const SERVER_VAD_SILENCE_MS: u32 = 500;
/// Silence appended at the engine's end of turn in `turn_detection: "server"`.
pub const SERVER_VAD_PAD_MS: u32 = SERVER_VAD_SILENCE_MS + 300;

/// `event_id` of the `session.update` the provider sends, to recognize the server refusing it.
const SESSION_UPDATE_ID: &str = "vb_session_update";

const KEYS: [&str; 8] = [
    "api_key",
    "base_url",
    "model",
    "voice",
    "instructions",
    "turn_detection",
    "transcription_model",
    "timeout_ms",
];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Settings {
    api_key: Option<Secret>,
    base_url: Option<String>,
    model: Option<String>,
    voice: Option<String>,
    instructions: Option<String>,
    turn_detection: Option<String>,
    transcription_model: Option<String>,
    timeout_ms: Option<u32>,
}

/// Who ends user turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TurnDetection {
    Engine,
    Server,
}

/// The validated settings shared by the sessions of one provider.
struct Config {
    url: String,
    shown: String,
    key: Secret,
    /// The `session` object of `session.update`.
    session: Value,
    turn_detection: TurnDetection,
    timeout: Duration,
    retry: RetryConfig,
}

/// The `openai-realtime` speech-to-speech provider.
pub struct OpenAiRealtime {
    config: Arc<Config>,
}

/// The registry factory: validates `s2s_config` (a missing key is `VB_ERR_INVALID_CONFIG`).
pub fn create(setup: &ProviderSetup) -> Result<Arc<dyn S2sProvider>> {
    Ok(Arc::new(OpenAiRealtime::new(setup)?))
}

impl OpenAiRealtime {
    /// Validates `s2s_config`; no connection is made until a session runs.
    pub fn new(setup: &ProviderSetup) -> Result<OpenAiRealtime> {
        let s: Settings = parse_section("s2s_config", setup.config, &KEYS)?;
        let key = api_key("s2s_config.api_key", s.api_key.as_ref(), KEY_ENV)?;
        if !key.expose().bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid_config(
                "s2s_config.api_key: must be printable ASCII without spaces",
            ));
        }
        let timeout_ms = s.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        check_range("s2s_config.timeout_ms", timeout_ms.into(), 100, 600_000)?;
        let text = |field: &str, value: Option<String>, default: &str| match value {
            Some(v) if v.trim().is_empty() => Err(Error::invalid_config(format!(
                "s2s_config.{field}: must not be empty (leave it out for the default)"
            ))),
            v => Ok(v.unwrap_or_else(|| default.to_owned())),
        };
        let model = text("model", s.model, "gpt-realtime")?;
        let voice = text("voice", s.voice, "marin")?;
        let transcription_model = text(
            "transcription_model",
            s.transcription_model,
            "gpt-4o-mini-transcribe",
        )?;
        let turn_detection = match s.turn_detection.as_deref() {
            None | Some("engine") => TurnDetection::Engine,
            Some("server") => TurnDetection::Server,
            Some(other) => {
                return Err(Error::invalid_config(format!(
                    "s2s_config.turn_detection: '{other}' is not \"engine\" or \"server\""
                )));
            }
        };
        let mut url = api_url(
            "s2s_config",
            s.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            &["ws", "wss"],
            "realtime",
        )?;
        url.query_pairs_mut().append_pair("model", &model);
        let pcm = json!({"type": "audio/pcm", "rate": RATE});
        let server_vad = (turn_detection == TurnDetection::Server).then(|| {
            json!({
                "type": "server_vad",
                "silence_duration_ms": SERVER_VAD_SILENCE_MS,
                "create_response": true,
                "interrupt_response": false,
            })
        });
        let mut session = json!({
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": pcm,
                    "transcription": {"model": transcription_model},
                    "turn_detection": server_vad,
                },
                "output": {"format": pcm, "voice": voice},
            },
        });
        if let Some(instructions) = s.instructions {
            session["instructions"] = json!(instructions);
        }
        Ok(OpenAiRealtime {
            config: Arc::new(Config {
                shown: redact_url(url.as_str()),
                url: url.into(),
                key,
                session,
                turn_detection,
                timeout: Duration::from_millis(timeout_ms.into()),
                retry: setup.retry,
            }),
        })
    }

    /// The WebSocket URL, as shown in messages (without the query).
    pub fn shown_url(&self) -> &str {
        &self.config.shown
    }
}

impl S2sProvider for OpenAiRealtime {
    fn name(&self) -> &str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        RATE
    }

    fn run(&self, session: S2sSession) -> BoxFuture<'static, Result<()>> {
        Box::pin(Conversation::new(self.config.clone(), session).run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(config: Value) -> Result<OpenAiRealtime> {
        OpenAiRealtime::new(&ProviderSetup::new(&config))
    }

    #[test]
    fn the_url_carries_the_model_and_the_session_asks_for_24_khz_pcm() {
        let p = provider(
            json!({"api_key": "k", "base_url": "ws://127.0.0.1:9", "model": "gpt-realtime-mini"}),
        )
        .unwrap();
        assert_eq!(
            p.config.url,
            "ws://127.0.0.1:9/v1/realtime?model=gpt-realtime-mini"
        );
        assert_eq!(p.shown_url(), "ws://127.0.0.1:9/v1/realtime");
        let s = &p.config.session;
        assert_eq!(s["type"], "realtime");
        assert_eq!(
            s["audio"]["input"]["format"],
            json!({"type": "audio/pcm", "rate": 24000})
        );
        assert_eq!(s["audio"]["output"]["voice"], "marin");
        assert_eq!(s["audio"]["input"]["turn_detection"], Value::Null);
        let p = provider(json!({"api_key": "k", "turn_detection": "server"})).unwrap();
        assert_eq!(
            p.config.url,
            "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        );
        assert_eq!(
            p.config.session["audio"]["input"]["turn_detection"]["type"],
            "server_vad"
        );
        assert_eq!(
            p.config.session["audio"]["input"]["turn_detection"]["interrupt_response"],
            false
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            (
                json!({"api_key": "k", "bar": 1}),
                "s2s_config.bar: unknown key",
            ),
            (
                json!({"api_key": "k", "turn_detection": "vad"}),
                "s2s_config.turn_detection: 'vad' is not",
            ),
            (
                json!({"api_key": "k", "base_url": "https://api.openai.com"}),
                "s2s_config.base_url: 'https://api.openai.com' must start with ws:// or wss://",
            ),
            (
                json!({"api_key": "k", "timeout_ms": 700000}),
                "s2s_config.timeout_ms: 700000 is above the maximum 600000",
            ),
            (
                json!({"api_key": "k", "voice": " "}),
                "s2s_config.voice: must not be empty",
            ),
        ];
        crate::config::assert_config_errors(&cases, |config| provider(config.clone()));
    }
}
