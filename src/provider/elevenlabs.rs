//! `elevenlabs`: text to speech over ElevenLabs' stream-input WebSocket
//! (`/v1/text-to-speech/{voice_id}/stream-input`).
//!
//! The wire protocol, as ElevenLabs documents it in the endpoint's AsyncAPI reference
//! (<https://elevenlabs.io/docs/api-reference/text-to-speech/v-1-text-to-speech-voice-id-stream-input>):
//! query parameters `model_id` and `output_format` (`pcm_8000` … `pcm_44100` are raw 16-bit
//! little-endian mono PCM), the key in the `xi-api-key` header; client messages
//! `InitializeConnection` (`{"text": " "}` plus `voice_settings` and `generation_config`),
//! `SendText` (`{"text": …, "flush": …}`, text that should end with a space) and
//! `CloseConnection` (`{"text": ""}`); server messages `AudioOutput`
//! (`{"audio": base64, "alignment": …, "normalizedAlignment": …}`, alignment listing the
//! characters the chunk speaks) and `FinalOutput` (`{"isFinal": true}`). Errors close the socket
//! with 1008 (policy violation) and a reason, e.g. the inactivity timeout quoted in
//! `elevenlabs/elevenlabs-docs` issue 426, sometimes after a JSON message
//! `{"message", "error", "code"}` (the shape quoted in `elevenlabs/elevenlabs-python` issue 167).
//!
//! One WebSocket per reply, on the I/O runtime. [`TtsProvider::synthesize`] connects as soon as
//! the reply starts (while the agent is still thinking), sends the agent's text as it streams,
//! cut at word boundaries so that every text message ends with whitespace, and at the end of
//! the reply sends the rest with `flush: true` and then the end of input. Audio is
//! base64-decoded and handed on as it arrives (waiting for playout when the reply's audio
//! channel is full); the reply is done at `isFinal`. Dropping the future (barge-in) drops the
//! socket, which closes the connection at once.
//!
//! Failures:
//! - A connection lost mid-reply is reconnected with the retry rules when the audio received so
//!   far is covered by alignment: the text after the last aligned character is sent again on the
//!   new connection, so nothing is spoken twice. Audio that came without alignment cannot be
//!   placed in the text, so a loss after it fails the reply (`VB_ERR_CONNECTION_FAILED`).
//! - No answer within `timeout_ms` once the reply's text has ended: `VB_ERR_TIMEOUT`.
//! - An error message, a Close frame with an error code or a message that does not follow the
//!   schema: `VB_ERR_PROVIDER` naming `elevenlabs`. A refused key is `VB_ERR_UNAUTHORIZED`.
//!
//! Settings (`tts_config`, strict):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `api_key` | env `ELEVENLABS_API_KEY` | the API key, sent as the `xi-api-key` header |
//! | `base_url` | `wss://api.elevenlabs.io` | service root (`ws://` or `wss://`) |
//! | `voice_id` | required | the voice |
//! | `model_id` | `eleven_flash_v2_5` | the model |
//! | `output_format` | `pcm_24000` | `pcm_8000`, `pcm_16000`, `pcm_22050`, `pcm_24000` or `pcm_44100` |
//! | `voice_settings` | none | `{stability, similarity_boost, style (0–1), use_speaker_boost, speed (0.7–1.2)}` |
//! | `chunk_length_schedule` | none | characters buffered before each generation, each 50–500 |
//! | `timeout_ms` | 10000 | deadline of a connection attempt and of each answer, 100–600000 |

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::net::{self, WebSocket};
use super::tts::{TtsProvider, TtsRequest};
use super::{BoxFuture, ProviderSetup};
use crate::config::{RetryConfig, Secret, check_range, parse_section};
use crate::error::{Error, Result, VbStatus};

/// The registry name.
pub const NAME: &str = "elevenlabs";
/// The keys `tts_config` may have.
const KEYS: [&str; 8] = [
    "api_key",
    "base_url",
    "voice_id",
    "model_id",
    "output_format",
    "voice_settings",
    "chunk_length_schedule",
    "timeout_ms",
];
/// The raw PCM output formats and their rates.
const PCM_FORMATS: [(&str, u32); 5] = [
    ("pcm_8000", 8000),
    ("pcm_16000", 16000),
    ("pcm_22050", 22050),
    ("pcm_24000", 24000),
    ("pcm_44100", 44100),
];

/// Settings of the `elevenlabs` provider, parsed from `tts_config` (see the module docs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElevenLabsConfig {
    /// The API key; `None` falls back to `ELEVENLABS_API_KEY`.
    pub api_key: Option<Secret>,
    /// Service root, `ws://` or `wss://`, without a query.
    pub base_url: String,
    /// The voice (required).
    pub voice_id: String,
    /// The model.
    pub model_id: String,
    /// One of the `pcm_*` formats.
    pub output_format: String,
    /// Voice settings sent in the first message; unset fields keep the voice's defaults.
    pub voice_settings: Option<VoiceSettings>,
    /// `generation_config.chunk_length_schedule`; `None` keeps the service's default.
    pub chunk_length_schedule: Option<Vec<u32>>,
    /// Deadline of a connection attempt and of each expected answer, in ms.
    pub timeout_ms: u32,
}

impl Default for ElevenLabsConfig {
    fn default() -> Self {
        ElevenLabsConfig {
            api_key: None,
            base_url: "wss://api.elevenlabs.io".to_owned(),
            voice_id: String::new(),
            model_id: "eleven_flash_v2_5".to_owned(),
            output_format: "pcm_24000".to_owned(),
            voice_settings: None,
            chunk_length_schedule: None,
            timeout_ms: net::DEFAULT_TIMEOUT_MS,
        }
    }
}

/// `voice_settings` of the first message (`RealtimeVoiceSettings`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceSettings {
    /// 0–1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stability: Option<f64>,
    /// 0–1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity_boost: Option<f64>,
    /// 0–1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<f64>,
    /// Speaker boost on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_speaker_boost: Option<bool>,
    /// 0.7–1.2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
}

impl ElevenLabsConfig {
    /// Parses `tts_config` strictly; errors are `VB_ERR_INVALID_CONFIG` naming the field.
    pub fn from_json(config: &serde_json::Value) -> Result<Self> {
        let parsed: ElevenLabsConfig = parse_section("tts_config", config, &KEYS)?;
        net::check_ws_url("tts_config.base_url", &parsed.base_url)?;
        if parsed.voice_id.is_empty() {
            return Err(Error::invalid_config(
                "tts_config.voice_id: missing (the ElevenLabs voice to speak with)",
            ));
        }
        net::check_token("tts_config.voice_id", &parsed.voice_id)?;
        net::check_token("tts_config.model_id", &parsed.model_id)?;
        if !PCM_FORMATS.iter().any(|(f, _)| *f == parsed.output_format) {
            return Err(Error::invalid_config(format!(
                "tts_config.output_format: '{}' is not one of {}",
                parsed.output_format,
                PCM_FORMATS.map(|(f, _)| f).join(", ")
            )));
        }
        if let Some(v) = &parsed.voice_settings {
            let unit = [
                ("stability", v.stability),
                ("similarity_boost", v.similarity_boost),
                ("style", v.style),
            ];
            for (name, value) in unit {
                check_unit_range(
                    &format!("tts_config.voice_settings.{name}"),
                    value,
                    0.0,
                    1.0,
                )?;
            }
            check_unit_range("tts_config.voice_settings.speed", v.speed, 0.7, 1.2)?;
        }
        if let Some(schedule) = &parsed.chunk_length_schedule {
            if schedule.is_empty() {
                return Err(Error::invalid_config(
                    "tts_config.chunk_length_schedule: must not be empty",
                ));
            }
            for (i, &n) in schedule.iter().enumerate() {
                check_range(
                    &format!("tts_config.chunk_length_schedule[{i}]"),
                    n.into(),
                    50,
                    500,
                )?;
            }
        }
        check_range(
            "tts_config.timeout_ms",
            parsed.timeout_ms.into(),
            100,
            600_000,
        )?;
        Ok(parsed)
    }

    /// The rate of `output_format`.
    pub fn sample_rate(&self) -> u32 {
        PCM_FORMATS
            .iter()
            .find(|(f, _)| *f == self.output_format)
            .map_or(0, |&(_, rate)| rate)
    }
}

fn check_unit_range(field: &str, value: Option<f64>, min: f64, max: f64) -> Result<()> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(Error::invalid_config(format!(
            "{field}: {v} is outside {min}–{max}"
        ))),
        _ => Ok(()),
    }
}

/// The registry factory: validates `tts_config` and finds the key.
pub fn create(setup: &ProviderSetup) -> Result<Arc<dyn TtsProvider>> {
    Ok(Arc::new(ElevenLabsTts::new(setup)?))
}

/// The ElevenLabs streaming TTS client. Cheap to share: each reply opens its own connection.
pub struct ElevenLabsTts {
    shared: Arc<Shared>,
}

/// What every reply of one provider uses.
struct Shared {
    config: ElevenLabsConfig,
    key: Secret,
    retry: RetryConfig,
    url: String,
    /// The `InitializeConnection` message.
    init: String,
}

impl ElevenLabsTts {
    /// Validates the config and resolves the API key (`VB_ERR_INVALID_CONFIG` when neither
    /// `tts_config.api_key` nor `ELEVENLABS_API_KEY` is set).
    pub fn new(setup: &ProviderSetup) -> Result<Self> {
        let config = ElevenLabsConfig::from_json(setup.config)?;
        let key = net::api_key(
            "tts_config.api_key",
            config.api_key.as_ref(),
            "ELEVENLABS_API_KEY",
        )?;
        let url = format!(
            "{}/v1/text-to-speech/{}/stream-input?model_id={}&output_format={}",
            config.base_url.trim_end_matches('/'),
            config.voice_id,
            config.model_id,
            config.output_format
        );
        let mut init = json!({ "text": " " });
        if let Some(settings) = &config.voice_settings {
            init["voice_settings"] = json!(settings);
        }
        if let Some(schedule) = &config.chunk_length_schedule {
            init["generation_config"] = json!({ "chunk_length_schedule": schedule });
        }
        Ok(ElevenLabsTts {
            shared: Arc::new(Shared {
                init: init.to_string(),
                url,
                config,
                key,
                retry: setup.retry,
            }),
        })
    }

    /// The stream-input URL.
    pub fn url(&self) -> &str {
        &self.shared.url
    }
}

impl TtsProvider for ElevenLabsTts {
    fn name(&self) -> &str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        self.shared.config.sample_rate()
    }

    fn synthesize(&self, request: TtsRequest) -> BoxFuture<'static, Result<()>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let run = ReplyRun {
                shared: shared.clone(),
                request,
                text_open: true,
                words: WordChunker::default(),
                sent: Vec::new(),
                spoken: 0,
                unaligned_audio: false,
                odd_byte: None,
            };
            run.run()
                .await
                .map_err(|e| Error::new(e.status(), net::scrub(e.message(), &shared.key)))
        })
    }
}

/// One reply being spoken, across the connections it may need.
struct ReplyRun {
    shared: Arc<Shared>,
    request: TtsRequest,
    /// Whether more of the reply's text may come.
    text_open: bool,
    words: WordChunker,
    /// Every character sent as reply text, in order.
    sent: Vec<char>,
    /// Characters of `sent` whose audio has arrived, per the alignments.
    spoken: usize,
    /// Audio arrived that no alignment accounted for yet.
    unaligned_audio: bool,
    /// A byte of a sample split across two audio messages.
    odd_byte: Option<u8>,
}

/// How one connection ended, when not with a fatal error.
enum Outcome {
    /// The server said the reply is complete (`isFinal`).
    Finished,
    /// The reply is spoken (or nobody listens any more).
    Done,
    /// The connection was lost; reconnecting may complete the reply.
    Dropped(Error),
}

type Tx = SplitSink<WebSocket, Message>;

impl ReplyRun {
    async fn run(mut self) -> Result<()> {
        let mut reconnections = 0;
        loop {
            let socket = net::connect_websocket(
                NAME,
                &self.shared.url,
                &[("xi-api-key", self.shared.key.expose())],
                self.shared.timeout(),
                &self.shared.retry,
            )
            .await?;
            match self.speak(socket).await? {
                Outcome::Finished | Outcome::Done => return Ok(()),
                Outcome::Dropped(e) if self.unaligned_audio => {
                    return Err(Error::new(
                        e.status(),
                        format!(
                            "{} (audio without alignment had arrived, so the reply cannot resume \
                             without repeating speech)",
                            e.message()
                        ),
                    ));
                }
                Outcome::Dropped(e) => {
                    reconnections += 1;
                    if reconnections >= self.shared.retry.max_attempts {
                        return Err(Error::new(
                            e.status(),
                            format!("{} (after {reconnections} reconnections)", e.message()),
                        ));
                    }
                    tokio::time::sleep(net::backoff(&self.shared.retry, reconnections)).await;
                }
            }
        }
    }

    /// Speaks over one connection: the first message, the text not yet spoken (after a
    /// reconnection), then new text as it comes; audio is passed on meanwhile.
    async fn speak(&mut self, socket: WebSocket) -> Result<Outcome> {
        let (mut tx, mut rx) = socket.split();
        self.odd_byte = None;
        let timeout = self.shared.timeout();
        let init = Message::text(self.shared.init.clone());
        if let Err(e) = self.send(&mut tx, init).await? {
            return Ok(Outcome::Dropped(e));
        }
        let unspoken: String = self.sent[self.spoken..].iter().collect();
        if !unspoken.is_empty() {
            let resend = json!({ "text": unspoken, "flush": !self.text_open });
            if let Err(e) = self
                .send(&mut tx, Message::text(resend.to_string()))
                .await?
            {
                return Ok(Outcome::Dropped(e));
            }
        }
        // Once the end of input is out: when the server must have answered by.
        let mut answer_by = None;
        if !self.text_open {
            if let Err(e) = self.send(&mut tx, end_of_input()).await? {
                return Ok(Outcome::Dropped(e));
            }
            answer_by = Some(Instant::now() + timeout);
        }
        loop {
            tokio::select! {
                chunk = self.request.text.recv(), if self.text_open => {
                    let sent = match chunk {
                        Some(text) => match self.words.push(&text) {
                            Some(words) => self.send_text(&mut tx, words, false).await?,
                            None => continue,
                        },
                        None => {
                            self.text_open = false;
                            let rest = self.words.finish();
                            answer_by = Some(Instant::now() + timeout);
                            match self.send_text(&mut tx, rest, true).await? {
                                Ok(()) => self.send(&mut tx, end_of_input()).await?,
                                Err(e) => Err(e),
                            }
                        }
                    };
                    if let Err(e) = sent {
                        return Ok(Outcome::Dropped(e));
                    }
                }
                message = rx.next() => match self.on_message(message).await? {
                    Some(Outcome::Finished) => break,
                    Some(outcome) => return Ok(outcome),
                    None => {
                        if answer_by.is_some() {
                            answer_by = Some(Instant::now() + timeout);
                        }
                    }
                },
                () = sleep_until_some(answer_by) => {
                    return Err(Error::new(
                        VbStatus::VB_ERR_TIMEOUT,
                        format!(
                            "elevenlabs: no audio from {} within {} ms after the reply's text ended",
                            net::redact_url(&self.shared.url),
                            timeout.as_millis()
                        ),
                    ));
                }
                () = self.request.audio.closed() => return Ok(Outcome::Done),
            }
        }
        // The reply is complete: close the connection properly, off the reply's path.
        tokio::spawn(net::close_websocket(tx, rx, timeout));
        Ok(Outcome::Done)
    }

    /// Sends reply text (remembered for a resumption).
    async fn send_text(
        &mut self,
        tx: &mut Tx,
        text: String,
        flush: bool,
    ) -> Result<Result<(), Error>> {
        self.sent.extend(text.chars());
        let message = if flush {
            json!({ "text": text, "flush": true })
        } else {
            json!({ "text": text })
        };
        self.send(tx, Message::text(message.to_string())).await
    }

    /// Sends one message within the timeout. Outer error: fatal (timeout); inner error: the
    /// connection is lost.
    async fn send(&self, tx: &mut Tx, message: Message) -> Result<Result<(), Error>> {
        let timeout = self.shared.timeout();
        match tokio::time::timeout(timeout, tx.send(message)).await {
            Err(_) => Err(Error::new(
                VbStatus::VB_ERR_TIMEOUT,
                format!(
                    "elevenlabs: {} took no text for {} ms",
                    net::redact_url(&self.shared.url),
                    timeout.as_millis()
                ),
            )),
            Ok(Err(e)) => Ok(Err(self.lost(format!("sending failed: {e}")))),
            Ok(Ok(())) => Ok(Ok(())),
        }
    }

    fn lost(&self, why: impl std::fmt::Display) -> Error {
        Error::new(
            VbStatus::VB_ERR_CONNECTION_FAILED,
            format!(
                "elevenlabs: lost the connection to {}: {why}",
                net::redact_url(&self.shared.url)
            ),
        )
    }

    /// Handles what the socket produced; `Some` ends this connection.
    async fn on_message(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<Option<Outcome>> {
        match message {
            None => Ok(Some(Outcome::Dropped(self.lost("the stream ended")))),
            Some(Err(e)) => Ok(Some(Outcome::Dropped(self.lost(e)))),
            Some(Ok(Message::Text(text))) => self.on_text(&text).await,
            Some(Ok(Message::Close(frame))) => self.on_close(frame).map(Some),
            Some(Ok(Message::Binary(_))) => Err(Error::provider(
                NAME,
                "malformed message from the server: a binary message where JSON was expected",
            )),
            Some(Ok(_)) => Ok(None), // ping, pong: tungstenite answers pings itself
        }
    }

    fn on_close(&self, frame: Option<CloseFrame>) -> Result<Outcome> {
        let (code, reason) = match &frame {
            Some(f) => (f.code, f.reason.as_str().to_owned()),
            None => (CloseCode::Status, String::new()),
        };
        match code {
            // The server ended the stream after all the text: whatever it sent is the reply.
            CloseCode::Normal if !self.text_open => Ok(Outcome::Done),
            CloseCode::Normal
            | CloseCode::Away
            | CloseCode::Restart
            | CloseCode::Again
            | CloseCode::Status => Ok(Outcome::Dropped(self.lost(format!(
                "the server closed the stream early ({} {reason})",
                u16::from(code)
            )))),
            _ => Err(Error::provider(
                NAME,
                format!(
                    "the server closed the stream with {} {reason}",
                    u16::from(code)
                ),
            )),
        }
    }

    /// A JSON message: audio, the end of the reply, or an error.
    async fn on_text(&mut self, text: &str) -> Result<Option<Outcome>> {
        let malformed = |e: &dyn std::fmt::Display| {
            Error::provider(NAME, format!("malformed message from the server: {e}"))
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| malformed(&e))?;
        if value.get("error").is_some() {
            let error: ErrorMessage = serde_json::from_value(value).map_err(|e| malformed(&e))?;
            return Err(Error::provider(
                NAME,
                format!(
                    "the server reported an error: {} ({})",
                    error.message.unwrap_or_default(),
                    error.error
                ),
            ));
        }
        let output: Output = serde_json::from_value(value).map_err(|e| malformed(&e))?;
        if output.audio.is_none() && output.is_final.is_none() {
            return Err(malformed(&"neither \"audio\" nor \"isFinal\""));
        }
        if let Some(audio) = output.audio.filter(|a| !a.is_empty()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(audio.as_bytes())
                .map_err(|e| malformed(&format!("audio is not base64: {e}")))?;
            match &output.alignment {
                Some(alignment) => {
                    self.spoken = (self.spoken + alignment.chars.len()).min(self.sent.len());
                    self.unaligned_audio = false;
                }
                None => self.unaligned_audio = true,
            }
            let pcm = self.pcm(&bytes);
            if !pcm.is_empty() && self.request.audio.send(pcm).await.is_err() {
                return Ok(Some(Outcome::Done)); // nobody plays this reply any more
            }
        }
        Ok((output.is_final == Some(true)).then_some(Outcome::Finished))
    }

    /// 16-bit little-endian samples from `bytes`, keeping an odd trailing byte for the next
    /// message.
    fn pcm(&mut self, bytes: &[u8]) -> Vec<i16> {
        let mut joined = Vec::with_capacity(bytes.len() + 1);
        joined.extend(self.odd_byte.take());
        joined.extend_from_slice(bytes);
        if joined.len() % 2 == 1 {
            self.odd_byte = joined.pop();
        }
        joined
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }
}

impl Shared {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms.into())
    }
}

/// `CloseConnection`: the end of input.
fn end_of_input() -> Message {
    Message::text(r#"{"text":""}"#)
}

/// Waits until `deadline`; forever when there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Cuts streamed text at word boundaries: each piece ends with whitespace, as the service wants
/// its text messages to.
#[derive(Debug, Default)]
struct WordChunker {
    pending: String,
}

impl WordChunker {
    /// Adds a chunk; returns the text up to and including its last whitespace, if any.
    fn push(&mut self, chunk: &str) -> Option<String> {
        self.pending.push_str(chunk);
        let end = self
            .pending
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map(|(i, c)| i + c.len_utf8())?;
        let words: String = self.pending.drain(..end).collect();
        (!words.trim().is_empty()).then_some(words)
    }

    /// The rest once the text has ended, ending with a space (a lone space when nothing is left).
    fn finish(&mut self) -> String {
        let mut rest = std::mem::take(&mut self.pending);
        rest.push(' ');
        rest
    }
}

/// `AudioOutput` or `FinalOutput`.
#[derive(Debug, Deserialize)]
struct Output {
    audio: Option<String>,
    #[serde(rename = "isFinal")]
    is_final: Option<bool>,
    alignment: Option<Alignment>,
    #[serde(rename = "normalizedAlignment")]
    _normalized_alignment: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct Alignment {
    chars: Vec<String>,
}

/// An error message.
#[derive(Debug, Deserialize)]
struct ErrorMessage {
    message: Option<String>,
    error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup(config: &serde_json::Value) -> Result<ElevenLabsTts> {
        ElevenLabsTts::new(&ProviderSetup::new(config))
    }

    #[test]
    fn url_rate_and_first_message_follow_the_config() {
        let tts = setup(&json!({
            "api_key": "k",
            "base_url": "ws://127.0.0.1:9/",
            "voice_id": "voice1",
            "output_format": "pcm_22050",
            "voice_settings": {"stability": 0.4, "speed": 1.1},
            "chunk_length_schedule": [50, 90]
        }))
        .unwrap();
        assert_eq!(
            tts.url(),
            "ws://127.0.0.1:9/v1/text-to-speech/voice1/stream-input?model_id=eleven_flash_v2_5\
             &output_format=pcm_22050"
        );
        assert_eq!(tts.sample_rate(), 22050);
        let init: serde_json::Value = serde_json::from_str(&tts.shared.init).unwrap();
        assert_eq!(
            init,
            json!({
                "text": " ",
                "voice_settings": {"stability": 0.4, "speed": 1.1},
                "generation_config": {"chunk_length_schedule": [50, 90]}
            })
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            (json!({"api_key": "k"}), "tts_config.voice_id: missing"),
            (
                json!({"api_key": "k", "voice_id": "v", "output_format": "mp3_44100_128"}),
                "tts_config.output_format: 'mp3_44100_128' is not one of pcm_8000",
            ),
            (
                json!({"api_key": "k", "voice_id": "v", "voice_settings": {"speed": 2.0}}),
                "tts_config.voice_settings.speed: 2 is outside 0.7–1.2",
            ),
            (
                json!({"api_key": "k", "voice_id": "v", "voice_settings": {"pitch": 1}}),
                "tts_config.voice_settings.pitch: unknown field",
            ),
            (
                json!({"api_key": "k", "voice_id": "v", "chunk_length_schedule": [120, 20]}),
                "tts_config.chunk_length_schedule[1]: 20 is below the minimum 50",
            ),
            (
                json!({"api_key": "k", "voice_id": "a/b"}),
                "tts_config.voice_id: 'a/b' must be",
            ),
            (
                json!({"api_key": "k", "voice_id": "v", "x": 1}),
                "tts_config.x: unknown key",
            ),
        ];
        for (config, message) in cases {
            let e = setup(&config).err().expect("invalid config accepted");
            assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
            assert!(
                e.message().starts_with(message),
                "{config}: {}",
                e.message()
            );
        }
    }

    #[test]
    fn text_goes_out_in_whole_words() {
        let mut words = WordChunker::default();
        assert_eq!(words.push("Hel"), None);
        assert_eq!(words.push("lo wor").as_deref(), Some("Hello "));
        assert_eq!(words.push("ld. How ").as_deref(), Some("world. How "));
        assert_eq!(words.push("  "), None);
        assert_eq!(words.push("are"), None);
        assert_eq!(words.finish(), "are ");
        assert_eq!(words.finish(), " ");
    }
}
