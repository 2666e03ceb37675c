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

mod config;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::ws_link::{self, Ending, Frame, Link};
use crate::config::{RetryConfig, Secret};
use crate::error::{Error, Result};
use crate::net::{self, WebSocket};
use crate::provider::tts::{TtsProvider, TtsRequest};
use crate::provider::{BoxFuture, ProviderSetup};

pub use config::{ElevenLabsConfig, VoiceSettings};

/// The registry name.
pub const NAME: &str = "elevenlabs";

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

/// What an answer from the server means for the reply.
enum Flow {
    /// More is coming.
    Continue,
    /// The server said the reply is complete (`isFinal`).
    Finished,
    /// Nobody plays this reply any more.
    Abandoned,
}

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
                Ending::Done => return Ok(()),
                Ending::Lost(e) if self.unaligned_audio => {
                    return Err(Error::new(
                        e.status(),
                        format!(
                            "{} (audio without alignment had arrived, so the reply cannot resume \
                             without repeating speech)",
                            e.message()
                        ),
                    ));
                }
                Ending::Lost(e) => {
                    ws_link::before_reconnecting(&self.shared.retry, &mut reconnections, e).await?;
                }
            }
        }
    }

    /// Speaks over one connection: the first message, the text not yet spoken (after a
    /// reconnection), then new text as it comes; audio is passed on meanwhile.
    async fn speak(&mut self, socket: WebSocket) -> Result<Ending> {
        let (mut link, mut incoming) =
            Link::new(NAME, &self.shared.url, self.shared.timeout(), socket);
        self.odd_byte = None;
        let timeout = link.timeout();
        if let Err(e) = link.send(Message::text(self.shared.init.clone())).await? {
            return Ok(Ending::Lost(e));
        }
        let unspoken: String = self.sent[self.spoken..].iter().collect();
        if !unspoken.is_empty() {
            let resend = json!({ "text": unspoken, "flush": !self.text_open });
            if let Err(e) = link.send(Message::text(resend.to_string())).await? {
                return Ok(Ending::Lost(e));
            }
        }
        // Once the end of input is out: when the server must have answered by.
        let mut answer_by = None;
        if !self.text_open {
            if let Err(e) = link.send(end_of_input()).await? {
                return Ok(Ending::Lost(e));
            }
            answer_by = Some(Instant::now() + timeout);
        }
        loop {
            tokio::select! {
                chunk = self.request.text.recv(), if self.text_open => {
                    let sent = match chunk {
                        Some(text) => match self.words.push(&text) {
                            Some(words) => self.send_text(&mut link, words, false).await?,
                            None => continue,
                        },
                        None => {
                            self.text_open = false;
                            let rest = self.words.finish();
                            answer_by = Some(Instant::now() + timeout);
                            match self.send_text(&mut link, rest, true).await? {
                                Ok(()) => link.send(end_of_input()).await?,
                                Err(e) => Err(e),
                            }
                        }
                    };
                    if let Err(e) = sent {
                        return Ok(Ending::Lost(e));
                    }
                }
                frame = incoming.next() => match link.frame(frame, !self.text_open)? {
                    Frame::Text(text) => match self.on_text(&text).await? {
                        Flow::Continue => {
                            if answer_by.is_some() {
                                answer_by = Some(Instant::now() + timeout);
                            }
                        }
                        Flow::Finished => break,
                        Flow::Abandoned => return Ok(Ending::Done),
                    },
                    // The server ended the stream after all the text: what it sent is the reply.
                    Frame::Ended(ending) => return Ok(ending),
                    Frame::Nothing => {}
                },
                () = ws_link::sleep_until(answer_by) => {
                    return Err(link.no_answer("the reply's text ended"));
                }
                () = self.request.audio.closed() => return Ok(Ending::Done),
            }
        }
        // The reply is complete: close the connection properly, off the reply's path.
        link.close(incoming);
        Ok(Ending::Done)
    }

    /// Sends reply text (remembered for a resumption); errors as [`Link::send`]'s.
    async fn send_text(
        &mut self,
        link: &mut Link,
        text: String,
        flush: bool,
    ) -> Result<Result<(), Error>> {
        self.sent.extend(text.chars());
        let message = if flush {
            json!({ "text": text, "flush": true })
        } else {
            json!({ "text": text })
        };
        link.send(Message::text(message.to_string())).await
    }

    /// A JSON message: audio, the end of the reply, or an error.
    async fn on_text(&mut self, text: &str) -> Result<Flow> {
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
                return Ok(Flow::Abandoned);
            }
        }
        Ok(if output.is_final == Some(true) {
            Flow::Finished
        } else {
            Flow::Continue
        })
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

#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;

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
        crate::config::assert_config_errors(&cases, setup);
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
