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

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::openai::{KEY_ENV, api_url};
use crate::config::{RetryConfig, Secret, check_range, parse_section};
use crate::dsp::resample::StreamResampler;
use crate::error::{Error, Result, VbStatus};
use crate::net::{DEFAULT_TIMEOUT_MS, WebSocket, api_key, connect_websocket, redact_url, scrub};
use crate::provider::{BoxFuture, ProviderSetup, S2sEvent, S2sInput, S2sProvider, S2sSession};

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

/// The response the server is streaming.
struct Active {
    id: String,
    /// The assistant item carrying its audio, once known.
    audio: Option<Spoken>,
}

/// Audio of one assistant item as delivered to the session, to truncate it on barge-in.
#[derive(Clone)]
struct Spoken {
    item_id: String,
    first_audio: Instant,
    samples: u64,
}

impl Spoken {
    /// How much of the item the user has heard by now (estimated: playout starts when the first
    /// audio arrives and cannot run ahead of the audio delivered), or `None` once all of it has
    /// been played.
    fn heard_ms(&self) -> Option<u64> {
        let delivered_ms = self.samples * 1000 / u64::from(RATE);
        let elapsed_ms = self.first_audio.elapsed().as_millis() as u64;
        (elapsed_ms < delivered_ms).then_some(elapsed_ms)
    }
}

/// What woke the session loop.
enum Wake {
    Input(Option<S2sInput>),
    Server(Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Deadline,
}

/// One session's conversation with the server, across reconnections.
struct Conversation {
    config: Arc<Config>,
    input: mpsc::UnboundedReceiver<S2sInput>,
    events: mpsc::UnboundedSender<S2sEvent>,
    resampler: StreamResampler,
    /// 24 kHz PCM bytes of the user turn not yet committed, appended again after a reconnection.
    uncommitted: Vec<u8>,
    in_turn: bool,
    /// Whether the server created a response since the current turn began (server VAD).
    answered_in_turn: bool,
    /// A response is expected and not created yet: the `event_id` of its `response.create`, or
    /// empty when the server creates it by itself (server VAD).
    requested: Option<String>,
    /// A cancel was sent for the requested response before it was created.
    cancel_requested: bool,
    /// Committed turns whose `response.create` waits for the active response to end.
    queued_creates: u32,
    active: Option<Active>,
    /// Responses cancelled whose `response.done` has not come yet: their output is dropped.
    cancelled: Vec<String>,
    /// The last assistant audio item, which may still be playing.
    last_spoken: Option<Spoken>,
    /// When the server must next be heard from (while a response is requested or under way).
    deadline: Option<Instant>,
    /// The server refused the session settings: this connection is not used.
    refused: bool,
    next_event_id: u64,
}

impl Conversation {
    fn new(config: Arc<Config>, session: S2sSession) -> Self {
        Conversation {
            resampler: StreamResampler::new(session.input_rate, RATE),
            config,
            input: session.input,
            events: session.events,
            uncommitted: Vec::new(),
            in_turn: false,
            answered_in_turn: false,
            requested: None,
            cancel_requested: false,
            queued_creates: 0,
            active: None,
            cancelled: Vec::new(),
            last_spoken: None,
            deadline: None,
            refused: false,
            next_event_id: 0,
        }
    }

    async fn run(mut self) -> Result<()> {
        let mut socket: Option<WebSocket> = None;
        let mut connect_now = true;
        loop {
            if socket.is_none() && connect_now {
                connect_now = false;
                match self.connect().await {
                    Ok(ws) => socket = Some(ws),
                    Err(e) => self.emit(S2sEvent::Error(e)),
                }
            }
            let Some(ws) = socket.as_mut() else {
                match self.input.recv().await {
                    None => return Ok(()),
                    Some(input) => connect_now = self.offline(input),
                }
                continue;
            };
            let deadline = self.deadline;
            let wake = tokio::select! {
                input = self.input.recv() => Wake::Input(input),
                message = ws.next() => Wake::Server(message),
                () = sleep_until(deadline) => Wake::Deadline,
            };
            let outcome = match wake {
                Wake::Input(None) => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                Wake::Input(Some(input)) => self.on_input(ws, input).await,
                Wake::Server(message) => self.on_message(ws, message).await,
                Wake::Deadline => Err(Error::new(
                    VbStatus::VB_ERR_TIMEOUT,
                    format!(
                        "{NAME}: no answer from {} within {} ms",
                        self.config.shown,
                        self.config.timeout.as_millis()
                    ),
                )),
            };
            if let Err(e) = outcome {
                socket = None;
                if std::mem::take(&mut self.refused) {
                    // Running with the server's defaults instead would be another session than
                    // the one configured: report it, and try again at the next turn.
                    self.emit(S2sEvent::Error(e));
                    self.connection_lost(None);
                    connect_now = false;
                } else {
                    self.connection_lost(Some(e));
                    connect_now = true;
                }
            }
        }
    }

    /// Opens the connection, configures the session and appends the uncommitted turn again.
    async fn connect(&mut self) -> Result<WebSocket> {
        let c = self.config.clone();
        let auth = format!("Bearer {}", c.key.expose());
        let mut ws = connect_websocket(
            NAME,
            &c.url,
            &[("Authorization", auth.as_str())],
            c.timeout,
            &c.retry,
        )
        .await?;
        self.send(
            &mut ws,
            json!({"type": "session.update", "event_id": SESSION_UPDATE_ID, "session": c.session}),
        )
        .await?;
        self.await_session_updated(&mut ws).await?;
        let replay = std::mem::take(&mut self.uncommitted);
        // One second of audio per event, well under the API's 15 MiB per event.
        for piece in replay.chunks(RATE as usize * 2) {
            if let Err(e) = self.append(&mut ws, piece).await {
                self.uncommitted = replay; // still not committed: for the next connection
                return Err(e);
            }
        }
        Ok(ws)
    }

    /// Waits for the server to accept `session.update` (`session.updated`), so that nothing of a
    /// turn is sent on a connection whose settings the server then refuses. A refusal is the
    /// server's error; no answer within `timeout_ms` is `VB_ERR_TIMEOUT`.
    async fn await_session_updated(&mut self, ws: &mut WebSocket) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        loop {
            let message = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| {
                    Error::new(
                        VbStatus::VB_ERR_TIMEOUT,
                        format!(
                            "{NAME}: {} did not confirm the session settings within {} ms",
                            self.config.shown,
                            self.config.timeout.as_millis()
                        ),
                    )
                })?;
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                None | Some(Ok(Message::Close(_))) => return Err(self.lost("closed")),
                Some(Err(e)) => return Err(self.lost(&e.to_string())),
                Some(Ok(_)) => continue,
            };
            let event: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            match event["type"].as_str() {
                Some("session.updated") => return Ok(()),
                Some("error") if event["error"]["event_id"] == SESSION_UPDATE_ID => {
                    return Err(self
                        .server_error("the server refused the session settings", &event["error"]));
                }
                _ => {} // session.created and the like
            }
        }
    }

    /// `VB_ERR_CONNECTION_FAILED`: the connection ended for `reason`.
    fn lost(&self, reason: &str) -> Error {
        Error::new(
            VbStatus::VB_ERR_CONNECTION_FAILED,
            format!(
                "{NAME}: the connection to {} was lost ({reason})",
                self.config.shown
            ),
        )
    }

    /// Input while there is no connection. Returns whether to try connecting again now (at the
    /// start of the next user turn).
    fn offline(&mut self, input: S2sInput) -> bool {
        match input {
            S2sInput::Audio(pcm) => {
                let starts_turn = !self.in_turn;
                self.in_turn = true;
                let resampled = self.resampler.push(&pcm);
                self.uncommitted.extend(pcm_bytes(&resampled));
                starts_turn
            }
            S2sInput::EndOfTurn => {
                // Nobody can answer this turn: end it so that the session listens again.
                self.in_turn = false;
                self.uncommitted.clear();
                self.emit(S2sEvent::ResponseDone);
                false
            }
            S2sInput::CancelResponse => {
                self.emit(S2sEvent::ResponseDone);
                false
            }
        }
    }

    async fn on_input(&mut self, ws: &mut WebSocket, input: S2sInput) -> Result<()> {
        match input {
            S2sInput::Audio(pcm) => {
                if !self.in_turn {
                    self.in_turn = true;
                    self.answered_in_turn = false;
                }
                let resampled = self.resampler.push(&pcm);
                let bytes = pcm_bytes(&resampled);
                self.append(ws, &bytes).await
            }
            S2sInput::EndOfTurn => {
                self.in_turn = false;
                let rest = pcm_bytes(&self.resampler.finish());
                self.append(ws, &rest).await?;
                match self.config.turn_detection {
                    TurnDetection::Engine => self.end_turn(ws).await,
                    TurnDetection::Server => {
                        let pad = vec![0u8; (RATE * SERVER_VAD_PAD_MS / 1000 * 2) as usize];
                        self.append(ws, &pad).await?;
                        if !self.answered_in_turn && !self.busy() {
                            self.requested = Some(String::new()); // the server creates it
                            self.touch();
                        }
                        Ok(())
                    }
                }
            }
            S2sInput::CancelResponse => self.cancel(ws).await,
        }
    }

    /// Engine turn detection: commit the turn and ask for the answer (after the response under
    /// way, if any).
    async fn end_turn(&mut self, ws: &mut WebSocket) -> Result<()> {
        if self.uncommitted.is_empty() {
            self.emit(S2sEvent::ResponseDone); // nothing was said: nothing to answer
            return Ok(());
        }
        self.send(ws, json!({"type": "input_audio_buffer.commit"}))
            .await?;
        self.uncommitted.clear();
        if self.busy() {
            self.queued_creates += 1;
            Ok(())
        } else {
            self.create_response(ws).await
        }
    }

    async fn create_response(&mut self, ws: &mut WebSocket) -> Result<()> {
        self.next_event_id += 1;
        let event_id = format!("vb_create_{}", self.next_event_id);
        self.send(ws, json!({"type": "response.create", "event_id": event_id}))
            .await?;
        self.requested = Some(event_id);
        self.touch();
        Ok(())
    }

    /// Barge-in: answer the cancel at once, then stop what the server is doing.
    async fn cancel(&mut self, ws: &mut WebSocket) -> Result<()> {
        self.emit(S2sEvent::ResponseDone);
        self.queued_creates = 0;
        if let Some(active) = self.active.take() {
            self.send(
                ws,
                json!({"type": "response.cancel", "response_id": active.id}),
            )
            .await?;
            self.cancelled.push(active.id);
        } else if self.requested.is_some() && !self.cancel_requested {
            self.send(ws, json!({"type": "response.cancel"})).await?;
            self.cancel_requested = true;
        }
        if let Some(spoken) = self.last_spoken.take() {
            if let Some(heard_ms) = spoken.heard_ms() {
                self.send(
                    ws,
                    json!({
                        "type": "conversation.item.truncate",
                        "item_id": spoken.item_id,
                        "content_index": 0,
                        "audio_end_ms": heard_ms,
                    }),
                )
                .await?;
            }
        }
        if self.active.is_none() && self.requested.is_none() {
            self.deadline = None;
        }
        Ok(())
    }

    async fn on_message(
        &mut self,
        ws: &mut WebSocket,
        message: Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<()> {
        let text = match message {
            None => return Err(self.lost("closed")),
            Some(Err(e)) => return Err(self.lost(&e.to_string())),
            Some(Ok(Message::Close(frame))) => {
                return Err(self.lost(&match frame {
                    Some(f) => format!("closed by the server: {} {}", f.code, f.reason),
                    None => "closed by the server".into(),
                }));
            }
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                self.emit(S2sEvent::Error(self.unreadable("a binary message")));
                return Ok(());
            }
            Some(Ok(_)) => return Ok(()), // ping/pong: tungstenite answers pings itself
        };
        if self.busy() {
            self.touch();
        }
        let event: Value = match serde_json::from_str(text.as_str()) {
            Ok(event @ Value::Object(_)) => event,
            _ => {
                let start: String = text.as_str().chars().take(80).collect();
                self.emit(S2sEvent::Error(self.unreadable(&format!("'{start}'"))));
                return Ok(());
            }
        };
        if let Err(e) = self.on_event(ws, &event).await {
            if e.status() != VbStatus::VB_ERR_PROVIDER || self.refused {
                return Err(e);
            }
            self.emit(S2sEvent::Error(e));
        }
        Ok(())
    }

    /// One server event. `VB_ERR_PROVIDER` errors are reported and the session goes on; others
    /// mean the connection is broken.
    async fn on_event(&mut self, ws: &mut WebSocket, event: &Value) -> Result<()> {
        let kind = event["type"].as_str().unwrap_or_default();
        let field = |name: &str| -> Result<&str> {
            event[name]
                .as_str()
                .ok_or_else(|| self.unreadable(&format!("{kind} without '{name}'")))
        };
        match kind {
            "response.created" => {
                let id = event["response"]["id"]
                    .as_str()
                    .ok_or_else(|| self.unreadable("response.created without response.id"))?
                    .to_owned();
                self.requested = None;
                self.answered_in_turn = true;
                if std::mem::take(&mut self.cancel_requested) {
                    self.cancelled.push(id);
                } else {
                    if self.active.is_some() {
                        self.emit(S2sEvent::ResponseDone); // only one response at a time
                    }
                    self.active = Some(Active { id, audio: None });
                }
            }
            "response.output_audio.delta" => {
                let response_id = field("response_id")?;
                let item_id = field("item_id")?;
                let audio = BASE64
                    .decode(field("delta")?)
                    .map_err(|e| self.unreadable(&format!("audio delta: {e}")))?;
                if audio.len() % 2 != 0 {
                    return Err(self.unreadable("audio delta with an odd byte count"));
                }
                let Some(active) = self.active.as_mut().filter(|a| a.id == response_id) else {
                    return Ok(()); // a cancelled response's audio: dropped
                };
                let samples: Vec<i16> = audio
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                let spoken = active.audio.get_or_insert_with(|| Spoken {
                    item_id: item_id.to_owned(),
                    first_audio: Instant::now(),
                    samples: 0,
                });
                spoken.samples += samples.len() as u64;
                self.last_spoken = Some(spoken.clone());
                self.emit(S2sEvent::Audio(samples));
            }
            "response.output_audio_transcript.delta" | "response.output_text.delta" => {
                let delta = field("delta")?;
                let response_id = field("response_id")?;
                if self.is_active(response_id) {
                    self.emit(S2sEvent::ResponseText(delta.to_owned()));
                }
            }
            "conversation.item.input_audio_transcription.completed" => {
                let transcript = field("transcript")?.trim().to_owned();
                self.emit(S2sEvent::UserTranscript(transcript));
            }
            "conversation.item.input_audio_transcription.failed" => {
                return Err(self.server_error("input transcription failed", &event["error"]));
            }
            // The server's VAD took the turn.
            "input_audio_buffer.committed"
                if self.config.turn_detection == TurnDetection::Server =>
            {
                self.uncommitted.clear();
            }
            "response.done" => self.response_done(ws, event).await?,
            "error" => return self.error_event(&event["error"]),
            _ => {} // events this client does not need
        }
        Ok(())
    }

    async fn response_done(&mut self, ws: &mut WebSocket, event: &Value) -> Result<()> {
        let response = &event["response"];
        let id = response["id"]
            .as_str()
            .ok_or_else(|| self.unreadable("response.done without response.id"))?;
        if let Some(i) = self.cancelled.iter().position(|c| c == id) {
            self.cancelled.swap_remove(i);
        } else if self.is_active(id) {
            self.active = None;
            if response["status"] == "failed" {
                let details = &response["status_details"]["error"];
                self.emit(S2sEvent::Error(
                    self.server_error("the response failed", details),
                ));
            }
            self.emit(S2sEvent::ResponseDone);
        }
        if !self.busy() {
            self.deadline = None;
            if self.queued_creates > 0 {
                self.queued_creates -= 1;
                self.create_response(ws).await?;
            }
        }
        Ok(())
    }

    /// An `error` event: reported, and the response it refused (by `event_id`) is ended. A
    /// refused `session.update` ends the connection.
    fn error_event(&mut self, error: &Value) -> Result<()> {
        // Cancelling a response that ended meanwhile: the cancel's aim is met.
        if error["code"] == "response_cancel_not_active" {
            return Ok(());
        }
        if error["event_id"] == SESSION_UPDATE_ID {
            self.refused = true;
            return Err(self.server_error("the server refused the session settings", error));
        }
        let refused_create =
            self.requested.is_some() && error["event_id"].as_str() == self.requested.as_deref();
        self.emit(S2sEvent::Error(
            self.server_error("the server reported an error", error),
        ));
        if refused_create {
            self.requested = None;
            if std::mem::take(&mut self.cancel_requested) {
                return Ok(()); // its cancel was answered already
            }
            self.emit(S2sEvent::ResponseDone);
            if !self.busy() {
                self.deadline = None;
            }
        }
        Ok(())
    }

    /// The connection ended (`error`: it broke or timed out): end what it carried, keep the
    /// uncommitted turn. The error is reported when it cut a response short or was a timeout.
    fn connection_lost(&mut self, error: Option<Error>) {
        let cut_response =
            (self.requested.is_some() && !self.cancel_requested) || self.active.is_some();
        let reported = error.filter(|e| cut_response || e.status() == VbStatus::VB_ERR_TIMEOUT);
        if let Some(error) = reported {
            self.emit(S2sEvent::Error(error));
        }
        if cut_response {
            self.emit(S2sEvent::ResponseDone);
        }
        self.requested = None;
        self.cancel_requested = false;
        self.active = None;
        self.cancelled.clear();
        self.queued_creates = 0;
        self.last_spoken = None;
        self.deadline = None;
    }

    /// Whether `response_id` is the active response (not a cancelled or unknown one).
    fn is_active(&self, response_id: &str) -> bool {
        self.active.as_ref().is_some_and(|a| a.id == response_id)
    }

    fn busy(&self) -> bool {
        self.requested.is_some() || self.active.is_some()
    }

    /// The server was heard from (or was asked something): restart its deadline.
    fn touch(&mut self) {
        self.deadline = Some(Instant::now() + self.config.timeout);
    }

    async fn append(&mut self, ws: &mut WebSocket, pcm: &[u8]) -> Result<()> {
        self.uncommitted.extend_from_slice(pcm);
        if pcm.is_empty() {
            return Ok(());
        }
        let audio = BASE64.encode(pcm);
        self.send(
            ws,
            json!({"type": "input_audio_buffer.append", "audio": audio}),
        )
        .await
    }

    /// Sends one client event within the deadline.
    async fn send(&mut self, ws: &mut WebSocket, event: Value) -> Result<()> {
        let shown = &self.config.shown;
        match tokio::time::timeout(
            self.config.timeout,
            ws.send(Message::text(event.to_string())),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::new(
                VbStatus::VB_ERR_CONNECTION_FAILED,
                format!("{NAME}: the connection to {shown} was lost ({e})"),
            )),
            Err(_) => Err(Error::new(
                VbStatus::VB_ERR_TIMEOUT,
                format!(
                    "{NAME}: {shown} took no data for {} ms",
                    self.config.timeout.as_millis()
                ),
            )),
        }
    }

    fn emit(&self, event: S2sEvent) {
        let _ = self.events.send(event);
    }

    fn unreadable(&self, what: &str) -> Error {
        Error::provider(NAME, format!("unreadable server event: {what}"))
    }

    /// `VB_ERR_PROVIDER` with the server's error object (`type`, `code`, `message`).
    fn server_error(&self, what: &str, error: &Value) -> Error {
        let mut labels: Vec<&str> = ["type", "code"]
            .iter()
            .filter_map(|k| error[*k].as_str())
            .collect();
        labels.dedup();
        let message = error["message"].as_str().unwrap_or("no message");
        let message = scrub(message, &self.config.key);
        Error::provider(NAME, format!("{what} ({}): {message}", labels.join(", ")))
    }
}

/// Sleeps until `deadline`; forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// 16-bit little-endian bytes of `pcm`.
fn pcm_bytes(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().flat_map(|s| s.to_le_bytes()).collect()
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

    #[test]
    fn heard_audio_is_capped_by_the_audio_delivered() {
        let spoken = Spoken {
            item_id: "item_1".into(),
            first_audio: Instant::now() - Duration::from_millis(300),
            samples: u64::from(RATE), // one second delivered
        };
        let heard = spoken.heard_ms().unwrap();
        assert!((300..1000).contains(&heard), "{heard}");
        let played = Spoken {
            samples: u64::from(RATE) / 10,
            ..spoken
        };
        assert_eq!(
            played.heard_ms(),
            None,
            "100 ms delivered 300 ms ago were all played"
        );
    }
}
