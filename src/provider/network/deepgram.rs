//! `deepgram`: speech to text over Deepgram's streaming listen WebSocket (`/v1/listen`).
//!
//! The wire protocol, as Deepgram documents it:
//! - Handshake and messages: the AsyncAPI reference of the live endpoint,
//!   <https://developers.deepgram.com/reference/speech-to-text/listen-streaming> (query
//!   parameters `model`, `language`, `encoding`, `sample_rate`, `channels`, `interim_results`,
//!   `endpointing`, `punctuate`, `smart_format`; the `Authorization: Token <key>` header; binary
//!   audio; server messages `Results`, `Metadata`, `UtteranceEnd`, `SpeechStarted`).
//! - Control messages, sent as text frames: `{"type":"KeepAlive"}`
//!   (<https://developers.deepgram.com/docs/audio-keep-alive>: the server closes a connection that
//!   received nothing for 10 s), `{"type":"Finalize"}` (<https://developers.deepgram.com/docs/finalize>:
//!   flush buffered audio, answered by results with `from_finalize: true`) and
//!   `{"type":"CloseStream"}` (<https://developers.deepgram.com/docs/close-stream>: final results,
//!   a `Metadata` summary, then the server closes).
//! - Errors: a refused handshake is an HTTP 4xx/5xx with a `dg-error` header; errors during
//!   the stream are a Close frame whose reason names the error (`DATA-0000`, `NET-0000`,
//!   `NET-0001`),
//!   <https://developers.deepgram.com/docs/stt-troubleshooting-websocket-data-and-net-errors>;
//!   newer servers may send an `{"type":"Error","variant","description","message"}` message
//!   first (the shape Deepgram's Rust SDK parses, `src/common/stream_response.rs` of
//!   `deepgram/deepgram-rust-sdk`).
//!
//! One WebSocket per user turn, on the I/O runtime: [`SttProvider::transcribe`] connects when the
//! turn starts (with the backend's retry rules and `timeout_ms` per attempt), streams the turn's
//! audio as linear16 little-endian mono frames at the session's internal rate as the user
//! speaks, and sends `KeepAlive` whenever no audio went out for `keep_alive_ms`. Interim results
//! become partial transcripts (the turn's final segments so far plus the interim hypothesis);
//! each `is_final` result is one segment of the final transcript. When the turn's audio ends
//! the client sends `Finalize` and `CloseStream`, and the turn's transcript is the final
//! segments joined once the server has closed the stream.
//!
//! Failures:
//! - A connection lost mid-stream (no Close frame, or a Close frame saying the server is going
//!   away or restarting) is reconnected with the retry rules, and the turn's audio not yet
//!   covered by final results is sent again, so the transcript stays complete. Results carry
//!   their position (`start`, `duration`) in the connection's audio, which tells how much of the
//!   turn they cover.
//! - A server that stops answering once the turn's audio has ended: `VB_ERR_TIMEOUT` after
//!   `timeout_ms` without a message.
//! - An `Error` message, a Close frame with an error code, or a message that does not follow the
//!   schema: `VB_ERR_PROVIDER` naming `deepgram`. A refused key is `VB_ERR_UNAUTHORIZED`.
//!
//! Settings (`stt_config`, strict):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `api_key` | env `DEEPGRAM_API_KEY` | the API key, sent as `Authorization: Token <key>` |
//! | `base_url` | `wss://api.deepgram.com` | service root (`ws://` or `wss://`) |
//! | `model` | `nova-3` | `model` query parameter |
//! | `language` | `en` | `language` query parameter (BCP-47) |
//! | `endpointing_ms` | 300 | silence that ends a segment, in ms; 0 sends `endpointing=false` |
//! | `interim_results` | true | ask for interim results (partial transcripts) |
//! | `punctuate` | true | `punctuate` query parameter |
//! | `smart_format` | false | `smart_format` query parameter |
//! | `keep_alive_ms` | 3000 | idle time before a `KeepAlive`, 50–9000 |
//! | `timeout_ms` | 10000 | deadline of a connection attempt and of each answer, 100–600000 |

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::ws_link::{self, Ending, Frame, Link};
use crate::config::{RetryConfig, Secret, check_range, parse_section};
use crate::error::{Error, Result};
use crate::net::{self, WebSocket};
use crate::provider::stt::{SpeechStream, SttProvider, SttSink, SttTurn};
use crate::provider::{BoxFuture, ProviderSetup};

/// The registry name.
pub const NAME: &str = "deepgram";
/// The keys `stt_config` may have.
const KEYS: [&str; 10] = [
    "api_key",
    "base_url",
    "model",
    "language",
    "endpointing_ms",
    "interim_results",
    "punctuate",
    "smart_format",
    "keep_alive_ms",
    "timeout_ms",
];
/// Audio goes out in pieces of at most this many milliseconds (Deepgram advises 20–100 ms per
/// message): speech that arrives in a burst (a host pushing a file faster than real time, audio
/// resent after a reconnection) is still streamed as a live microphone would.
const PIECE_MS: u32 = 100;

/// Settings of the `deepgram` provider, parsed from `stt_config` (see the module docs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeepgramConfig {
    /// The API key; `None` falls back to `DEEPGRAM_API_KEY`.
    pub api_key: Option<Secret>,
    /// Service root, `ws://` or `wss://`, without a query.
    pub base_url: String,
    /// Deepgram model.
    pub model: String,
    /// Language tag.
    pub language: String,
    /// Endpointing silence in ms; 0 turns endpointing off.
    pub endpointing_ms: u32,
    /// Whether to ask for interim results.
    pub interim_results: bool,
    /// Whether to ask for punctuation.
    pub punctuate: bool,
    /// Whether to ask for smart formatting.
    pub smart_format: bool,
    /// Idle time before a `KeepAlive`, in ms.
    pub keep_alive_ms: u32,
    /// Deadline of a connection attempt and of each expected answer, in ms.
    pub timeout_ms: u32,
}

impl Default for DeepgramConfig {
    fn default() -> Self {
        DeepgramConfig {
            api_key: None,
            base_url: "wss://api.deepgram.com".to_owned(),
            model: "nova-3".to_owned(),
            language: "en".to_owned(),
            endpointing_ms: 300,
            interim_results: true,
            punctuate: true,
            smart_format: false,
            keep_alive_ms: 3000,
            timeout_ms: net::DEFAULT_TIMEOUT_MS,
        }
    }
}

impl DeepgramConfig {
    /// Parses `stt_config` strictly; errors are `VB_ERR_INVALID_CONFIG` naming the field.
    pub fn from_json(config: &serde_json::Value) -> Result<Self> {
        let parsed: DeepgramConfig = parse_section("stt_config", config, &KEYS)?;
        net::check_ws_url("stt_config.base_url", &parsed.base_url)?;
        net::check_token("stt_config.model", &parsed.model)?;
        net::check_token("stt_config.language", &parsed.language)?;
        check_range(
            "stt_config.endpointing_ms",
            parsed.endpointing_ms.into(),
            0,
            10_000,
        )?;
        check_range(
            "stt_config.keep_alive_ms",
            parsed.keep_alive_ms.into(),
            50,
            9000,
        )?;
        check_range(
            "stt_config.timeout_ms",
            parsed.timeout_ms.into(),
            100,
            600_000,
        )?;
        Ok(parsed)
    }
}

/// The registry factory: validates `stt_config` and finds the key.
pub fn create(setup: &ProviderSetup) -> Result<Arc<dyn SttProvider>> {
    Ok(Arc::new(DeepgramStt::new(setup)?))
}

/// The Deepgram streaming STT client. Cheap to share: each turn opens its own connection.
pub struct DeepgramStt {
    shared: Arc<Shared>,
}

/// What every turn of one provider uses.
struct Shared {
    config: DeepgramConfig,
    key: Secret,
    retry: RetryConfig,
}

impl DeepgramStt {
    /// Validates the config and resolves the API key (`VB_ERR_INVALID_CONFIG` when neither
    /// `stt_config.api_key` nor `DEEPGRAM_API_KEY` is set).
    pub fn new(setup: &ProviderSetup) -> Result<Self> {
        let config = DeepgramConfig::from_json(setup.config)?;
        let key = net::api_key(
            "stt_config.api_key",
            config.api_key.as_ref(),
            "DEEPGRAM_API_KEY",
        )?;
        Ok(DeepgramStt {
            shared: Arc::new(Shared {
                config,
                key,
                retry: setup.retry,
            }),
        })
    }

    /// The listen URL for audio at `sample_rate`.
    pub fn url(&self, sample_rate: u32) -> String {
        self.shared.url(sample_rate)
    }
}

impl Shared {
    fn url(&self, sample_rate: u32) -> String {
        let c = &self.config;
        let endpointing = match c.endpointing_ms {
            0 => "false".to_owned(),
            ms => ms.to_string(),
        };
        format!(
            "{}/v1/listen?model={}&language={}&encoding=linear16&sample_rate={sample_rate}\
             &channels=1&interim_results={}&endpointing={endpointing}&punctuate={}\
             &smart_format={}",
            c.base_url.trim_end_matches('/'),
            c.model,
            c.language,
            c.interim_results,
            c.punctuate,
            c.smart_format
        )
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms.into())
    }

    /// `error` with the key blanked out of its message, should a server have echoed it.
    fn scrub(&self, error: Error) -> Error {
        Error::new(error.status(), net::scrub(error.message(), &self.key))
    }
}

impl SttProvider for DeepgramStt {
    fn name(&self) -> &str {
        NAME
    }

    fn transcribe(&self, turn: SttTurn) -> BoxFuture<'static, Result<()>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            if turn.sample_rate == 0 {
                return Err(Error::invalid_argument("deepgram: sample rate 0"));
            }
            let run = TurnRun {
                url: shared.url(turn.sample_rate),
                rate: turn.sample_rate,
                audio_rx: turn.audio,
                fresh: Vec::new(),
                audio_open: true,
                audio: Vec::new(),
                finals: Vec::new(),
                covered: 0,
                last_partial: String::new(),
                sink: turn.results,
                shared: shared.clone(),
            };
            run.run().await.map_err(|e| shared.scrub(e))
        })
    }
}

/// One turn being transcribed, across the connections it may need.
struct TurnRun {
    shared: Arc<Shared>,
    url: String,
    rate: u32,
    audio_rx: SpeechStream,
    /// Audio read from `audio_rx` and not sent yet.
    fresh: Vec<i16>,
    /// Whether more of the turn's audio may come.
    audio_open: bool,
    /// All of the turn's audio so far.
    audio: Vec<i16>,
    /// Final segments, in order.
    finals: Vec<String>,
    /// Samples of `audio` covered by final results.
    covered: usize,
    last_partial: String,
    sink: SttSink,
}

impl TurnRun {
    async fn run(mut self) -> Result<()> {
        let auth = format!("Token {}", self.shared.key.expose());
        let mut reconnections = 0;
        loop {
            let socket = net::connect_websocket(
                NAME,
                &self.url,
                &[("Authorization", &auth)],
                self.shared.timeout(),
                &self.shared.retry,
            )
            .await?;
            match self.stream(socket).await? {
                Ending::Done => break,
                Ending::Lost(e) => {
                    ws_link::before_reconnecting(&self.shared.retry, &mut reconnections, e).await?;
                }
            }
        }
        self.sink.final_transcript(self.finals.join(" "));
        Ok(())
    }

    /// Streams the turn over one connection: first the audio not yet covered by final results,
    /// then new audio as it comes, then the closing messages; reads results meanwhile.
    async fn stream(&mut self, socket: WebSocket) -> Result<Ending> {
        let (mut link, mut incoming) = Link::new(NAME, &self.url, self.shared.timeout(), socket);
        let base = self.covered;
        let piece = (self.rate * PIECE_MS / 1000).max(1) as usize;
        for chunk in self.audio[base..].chunks(piece) {
            if let Err(e) = link.send(Message::binary(pcm_bytes(chunk))).await? {
                return Ok(Ending::Lost(e));
            }
        }
        let keep_alive = Duration::from_millis(self.shared.config.keep_alive_ms.into());
        let timeout = link.timeout();
        let mut idle_until = Instant::now() + keep_alive;
        // Once the closing messages are out: when the server must have answered by.
        let mut answer_by: Option<Instant> = None;
        if !self.audio_open {
            if let Err(e) = send_closing(&mut link).await? {
                return Ok(Ending::Lost(e));
            }
            answer_by = Some(Instant::now() + timeout);
        }
        loop {
            tokio::select! {
                more = self.audio_rx.recv_into(&mut self.fresh), if self.audio_open => {
                    let sent = if more {
                        self.audio.extend_from_slice(&self.fresh);
                        let pcm = std::mem::take(&mut self.fresh);
                        let mut sent = Ok(());
                        for chunk in pcm.chunks(piece) {
                            sent = link.send(Message::binary(pcm_bytes(chunk))).await?;
                            if sent.is_err() {
                                break;
                            }
                        }
                        sent
                    } else {
                        self.audio_open = false;
                        answer_by = Some(Instant::now() + timeout);
                        send_closing(&mut link).await?
                    };
                    if let Err(e) = sent {
                        return Ok(Ending::Lost(e));
                    }
                    idle_until = Instant::now() + keep_alive;
                }
                () = tokio::time::sleep_until(idle_until), if self.audio_open => {
                    if let Err(e) = link.send(Message::text(r#"{"type":"KeepAlive"}"#)).await? {
                        return Ok(Ending::Lost(e));
                    }
                    idle_until = Instant::now() + keep_alive;
                }
                () = ws_link::sleep_until(answer_by) => {
                    return Err(link.no_answer("the turn's audio ended"));
                }
                frame = incoming.next() => match link.frame(frame, !self.audio_open)? {
                    Frame::Text(text) => {
                        self.on_text(&text, base)?;
                        if answer_by.is_some() {
                            answer_by = Some(Instant::now() + timeout);
                        }
                    }
                    Frame::Ended(Ending::Done) => break,
                    Frame::Ended(lost) => return Ok(lost),
                    Frame::Nothing => {}
                },
            }
        }
        // The server closed the stream: answer its Close frame, off the turn's path.
        link.close(incoming);
        Ok(Ending::Done)
    }

    /// A JSON message from the server.
    fn on_text(&mut self, text: &str, base: usize) -> Result<()> {
        let malformed = |what: &str, e: serde_json::Error| {
            Error::provider(NAME, format!("malformed {what} from the server: {e}"))
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| malformed("message", e))?;
        match value.get("type").and_then(serde_json::Value::as_str) {
            Some("Results") => {
                let results: Results =
                    serde_json::from_value(value).map_err(|e| malformed("Results message", e))?;
                self.on_results(&results, base);
                Ok(())
            }
            Some("Error") => {
                let error: ErrorMessage =
                    serde_json::from_value(value).map_err(|e| malformed("Error message", e))?;
                Err(Error::provider(
                    NAME,
                    format!(
                        "the server reported an error: {} ({})",
                        error.description.or(error.message).unwrap_or_default(),
                        error.variant.unwrap_or_default()
                    ),
                ))
            }
            // Metadata, UtteranceEnd, SpeechStarted and types added later carry nothing the
            // turn needs.
            Some(_) => Ok(()),
            None => Err(Error::provider(
                NAME,
                "malformed message from the server: no \"type\"",
            )),
        }
    }

    fn on_results(&mut self, results: &Results, base: usize) {
        let transcript = results
            .channel
            .alternatives
            .first()
            .map(|a| a.transcript.trim())
            .unwrap_or_default();
        if results.is_final {
            if !transcript.is_empty() {
                self.finals.push(transcript.to_owned());
            }
            let end = (results.start + results.duration).max(0.0) * f64::from(self.rate);
            // Saturating: a result far past the audio (the server's numbers) covers all of it.
            self.covered = base
                .saturating_add(end.round() as usize)
                .clamp(self.covered, self.audio.len());
        }
        if !self.shared.config.interim_results {
            return;
        }
        let mut hypothesis = self.finals.join(" ");
        if !results.is_final && !transcript.is_empty() {
            if !hypothesis.is_empty() {
                hypothesis.push(' ');
            }
            hypothesis.push_str(transcript);
        }
        if !hypothesis.is_empty() && hypothesis != self.last_partial {
            self.sink.partial(hypothesis.clone());
            self.last_partial = hypothesis;
        }
    }
}

/// Sends `Finalize` then `CloseStream` (errors as [`Link::send`]'s).
async fn send_closing(link: &mut Link) -> Result<Result<(), Error>> {
    for control in [r#"{"type":"Finalize"}"#, r#"{"type":"CloseStream"}"#] {
        if let Err(e) = link.send(Message::text(control)).await? {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

/// Linear16: little-endian 16-bit samples.
fn pcm_bytes(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// A `Results` message; fields the schema requires are required here too.
#[derive(Debug, Deserialize)]
struct Results {
    #[serde(rename = "channel_index")]
    _channel_index: Vec<f64>,
    duration: f64,
    start: f64,
    #[serde(default)]
    is_final: bool,
    channel: ResultsChannel,
    #[serde(rename = "metadata")]
    _metadata: IgnoredAny,
}

#[derive(Debug, Deserialize)]
struct ResultsChannel {
    alternatives: Vec<Alternative>,
}

#[derive(Debug, Deserialize)]
struct Alternative {
    transcript: String,
}

/// An `Error` message.
#[derive(Debug, Deserialize)]
struct ErrorMessage {
    description: Option<String>,
    message: Option<String>,
    variant: Option<String>,
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup(config: &serde_json::Value) -> Result<DeepgramStt> {
        DeepgramStt::new(&ProviderSetup::new(config))
    }

    #[test]
    fn the_url_carries_the_documented_query_parameters() {
        let stt = setup(&json!({"api_key": "k", "base_url": "ws://127.0.0.1:9/"})).unwrap();
        assert_eq!(
            stt.url(16000),
            "ws://127.0.0.1:9/v1/listen?model=nova-3&language=en&encoding=linear16\
             &sample_rate=16000&channels=1&interim_results=true&endpointing=300&punctuate=true\
             &smart_format=false"
        );
        let stt =
            setup(&json!({"api_key": "k", "endpointing_ms": 0, "interim_results": false})).unwrap();
        let url = stt.url(8000);
        assert!(
            url.starts_with("wss://api.deepgram.com/v1/listen?"),
            "{url}"
        );
        assert!(url.contains("&endpointing=false&"), "{url}");
        assert!(url.contains("&interim_results=false&"), "{url}");
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            (
                json!({"api_key": "k", "foo": 1}),
                "stt_config.foo: unknown key",
            ),
            (
                json!({"api_key": "k", "base_url": "https://x"}),
                "stt_config.base_url: 'https://x' is not a ws:// or wss:// URL",
            ),
            (
                json!({"api_key": "k", "base_url": "wss://x/?token=abc"}),
                "stt_config.base_url: 'wss://x/' is not",
            ),
            (
                json!({"api_key": "k", "model": "nova 3"}),
                "stt_config.model: 'nova 3' must be",
            ),
            (
                json!({"api_key": "k", "keep_alive_ms": 10}),
                "stt_config.keep_alive_ms: 10 is below the minimum 50",
            ),
            (
                json!({"api_key": "k", "timeout_ms": 0}),
                "stt_config.timeout_ms: 0 is below the minimum 100",
            ),
            (
                json!({"api_key": "k", "interim_results": "yes"}),
                "stt_config.interim_results: invalid type",
            ),
        ];
        crate::config::assert_config_errors(&cases, setup);
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let config = DeepgramConfig::from_json(&json!({"api_key": "dg-very-secret"})).unwrap();
        assert!(!format!("{config:?}").contains("dg-very-secret"));
    }

    #[test]
    fn a_result_far_past_the_audio_covers_all_of_it() {
        // Found while writing the fuzz target deepgram (and confirmed with it): the end of a
        // final result, in samples, was added to the samples covered before the connection
        // without a bound, so `"start": 1e300` overflowed (a panic with overflow checks, a
        // coverage that wrapped around without them).
        let results = json!({
            "type": "Results", "channel_index": [0, 1], "duration": 1.0, "start": 1e300,
            "is_final": true, "channel": {"alternatives": [{"transcript": " far "}]},
            "metadata": {},
        })
        .to_string();
        let outcome = fuzz::server_messages(&[&results], 16000, 32000, 8000, true);
        assert!(outcome.answers.iter().all(Result::is_ok));
        assert_eq!(outcome.covered, 32000);
        assert_eq!(
            (outcome.finals, outcome.partials),
            (vec!["far".into()], vec!["far".into()])
        );
    }

    #[test]
    fn linear16_is_little_endian() {
        assert_eq!(pcm_bytes(&[1, -2, 0x1234]), [1, 0, 0xfe, 0xff, 0x34, 0x12]);
    }
}
