//! A local Deepgram-protocol server: it speaks Deepgram's streaming listen WebSocket
//! (`/v1/listen`) as Deepgram documents it, and transcribes the audio it receives with
//! voicebackend's embedded Whisper (tiny.en), so the transcripts are real.
//!
//! Where the message formats come from:
//! - the AsyncAPI reference of the endpoint,
//!   <https://developers.deepgram.com/reference/speech-to-text/listen-streaming>: query
//!   parameters and their values, the `Authorization` header, binary audio, the client messages
//!   `KeepAlive` / `Finalize` / `CloseStream`, and the `Results` and `Metadata` messages with
//!   their required fields;
//! - <https://developers.deepgram.com/docs/finalize> (`from_finalize: true` on the results a
//!   `Finalize` flushes), <https://developers.deepgram.com/docs/close-stream> (final results, then
//!   `Metadata` with `transaction_key: "deprecated"`, then the close),
//!   <https://developers.deepgram.com/docs/audio-keep-alive> (nothing for 10 s closes the stream
//!   with `NET-0001`);
//! - <https://developers.deepgram.com/docs/stt-troubleshooting-websocket-data-and-net-errors>:
//!   a refused handshake is an HTTP error with `dg-error` and `dg-request-id` headers; stream
//!   errors are Close frames with a code and a reason such as `NET-0001` (1011).
//!
//! What it does with a connection: a wrong or missing `Authorization: Token <key>` is refused
//! with 401; invalid query parameters with 400 (this server decodes only `encoding=linear16`,
//! mono, and its model is English-only, so it refuses what it cannot honour rather than
//! pretending). Audio is converted to 16 kHz; webrtc-vad (the engine's detector) finds speech.
//! With `interim_results=true` it sends an interim result for the current segment every
//! `interim_every_ms` of audio; `endpointing` silence after speech finalizes the segment
//! (`is_final` and `speech_final`); `Finalize` finalizes what is left (`from_finalize`);
//! `CloseStream` finalizes the rest, sends `Metadata` and closes with 1000. Segments without
//! speech get an empty transcript, as Deepgram's do. Two fields carry no real data because the
//! embedded decoder does not produce it: `words` is empty and `confidence` is 0.
//!
//! Fault modes ([`DeepgramFault`]) let tests exercise the client's error paths; every connection
//! is recorded ([`DeepgramConnection`]).
#![allow(dead_code)]

mod handshake;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use voicebackend::config::VadConfig;
use voicebackend::dsp::resample::StreamResampler;
use voicebackend::provider::embedded::whisper::{self, WhisperModel};
use voicebackend::rt::vad::VoiceDetector;

use super::ws_server::{self, Records, ServerThread};
use handshake::{Params, check_handshake};

/// The rate the server analyses and transcribes at.
const RATE: u32 = 16_000;
/// VAD frame length.
const FRAME: usize = 320;
/// What a test wants the server to do wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeepgramFault {
    /// Behave.
    None,
    /// Answer the first audio of each connection with a `Results` message missing its
    /// required fields.
    Malformed,
    /// Drop the first connection without a Close frame once it has received this much audio;
    /// later connections behave.
    DropOnce {
        /// Audio received before the drop, in ms.
        after_audio_ms: u32,
    },
    /// Read everything, answer nothing, never close.
    Stall,
    /// Drop every connection open when a period ends (periods counted from the server's
    /// start), without a Close frame: a network that fails every `period_ms`.
    DropEvery {
        /// The period, in ms.
        period_ms: u32,
        /// Shift each connection's periods by an offset of its own (a prime step of its
        /// number), so that drops come one by one across the period instead of all at once.
        spread: bool,
    },
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct DeepgramServerOptions {
    /// The one key it accepts.
    pub api_key: String,
    /// What it does wrong.
    pub fault: DeepgramFault,
    /// Audio between interim results of a segment, in ms.
    pub interim_every_ms: u32,
    /// Closes with 1011 `NET-0001` after this long without a message (Deepgram: 10 s).
    pub idle_timeout_ms: u32,
    /// Transcribes a segment (16 kHz) instead of Whisper: for hundreds of streams at once (the
    /// soak bench), where the words do not matter.
    pub transcriber: Option<fn(&[i16]) -> String>,
}

impl Default for DeepgramServerOptions {
    fn default() -> Self {
        DeepgramServerOptions {
            api_key: "local-deepgram-key".to_owned(),
            fault: DeepgramFault::None,
            interim_every_ms: 500,
            idle_timeout_ms: 10_000,
            transcriber: None,
        }
    }
}

/// What one connection saw.
#[derive(Debug, Clone, Default)]
pub struct DeepgramConnection {
    /// The request path.
    pub path: String,
    /// The query parameters.
    pub query: BTreeMap<String, String>,
    /// The HTTP status of a refused handshake.
    pub refused: Option<u16>,
    /// Audio samples received (at the connection's `sample_rate`).
    pub audio_samples: usize,
    /// Control messages received, by `type`, in order.
    pub controls: Vec<String>,
    /// Every message the server sent (`Results`, `Metadata`, …).
    pub sent: Vec<Value>,
    /// The connection was dropped by [`DeepgramFault::DropOnce`].
    pub dropped: bool,
    /// The stream ended with `CloseStream`, `Metadata` and a 1000 close.
    pub closed_normally: bool,
    /// An error close the server sent: code and reason.
    pub error_close: Option<(u16, String)>,
    /// The client went away before the stream was closed.
    pub client_left: bool,
}

impl DeepgramConnection {
    /// The transcripts of the final results, joined as a client would.
    pub fn final_transcript(&self) -> String {
        self.results(true).join(" ")
    }

    /// Transcripts of the non-empty results, final (`true`) or interim (`false`).
    pub fn results(&self, is_final: bool) -> Vec<String> {
        self.sent
            .iter()
            .filter(|m| m["type"] == "Results" && m["is_final"] == is_final)
            .filter_map(|m| m["channel"]["alternatives"][0]["transcript"].as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A running local Deepgram-protocol server; stops when dropped.
pub struct DeepgramServer {
    thread: ServerThread,
    records: Arc<Records<DeepgramConnection>>,
}

/// What the connections of one server share.
struct Shared {
    options: DeepgramServerOptions,
    records: Arc<Records<DeepgramConnection>>,
    dropped_once: AtomicBool,
    started: std::time::Instant,
}

impl Shared {
    /// The number of connection `index`'s [`DeepgramFault::DropEvery`] period now (0 without
    /// that fault).
    fn period(&self, index: usize) -> u128 {
        match self.options.fault {
            DeepgramFault::DropEvery { period_ms, spread } => {
                let period = u128::from(period_ms.max(1));
                let offset = if spread {
                    index as u128 * 7919 % period
                } else {
                    0
                };
                (self.started.elapsed().as_millis() + offset) / period
            }
            _ => 0,
        }
    }
}

impl DeepgramServer {
    /// Starts a server on 127.0.0.1 on a thread of its own.
    pub fn start(options: DeepgramServerOptions) -> DeepgramServer {
        let records = Records::new();
        let shared = Arc::new(Shared {
            options,
            records: records.clone(),
            dropped_once: AtomicBool::new(false),
            started: std::time::Instant::now(),
        });
        let thread = ServerThread::start("deepgram-server", move |stream| {
            serve(stream, shared.clone())
        });
        DeepgramServer { thread, records }
    }

    /// `ws://127.0.0.1:<port>`: the client's `base_url`.
    pub fn base_url(&self) -> String {
        self.thread.base_url()
    }

    /// Every connection so far.
    pub fn connections(&self) -> Vec<DeepgramConnection> {
        self.records.snapshot()
    }

    /// Waits until `done` holds for the connections (panics after a long patience).
    pub fn wait_for(
        &self,
        done: impl FnMut(&[DeepgramConnection]) -> bool,
    ) -> Vec<DeepgramConnection> {
        self.records.wait_for(done)
    }
}

/// The Whisper model, loaded once per test process.
fn model() -> Arc<WhisperModel> {
    static MODEL: OnceLock<Arc<WhisperModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = whisper::default_model_dir();
            Arc::new(whisper::load_model(&dir).unwrap_or_else(|e| {
                panic!("the local Deepgram server needs Whisper: {}", e.message())
            }))
        })
        .clone()
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let mut params = None;
    let (info, socket) = ws_server::accept(stream, |info| {
        params = Some(check_handshake(info, &shared.options.api_key)?);
        Ok(())
    })
    .await;
    let index = shared.records.push(DeepgramConnection {
        path: info.path.clone(),
        query: info.query.iter().cloned().collect(),
        refused: info.refused,
        ..DeepgramConnection::default()
    });
    let (Some(socket), Some(params)) = (socket, params) else {
        return;
    };
    Stream::new(shared, index, params).run(socket).await;
}

/// One listen stream.
struct Stream {
    shared: Arc<Shared>,
    index: usize,
    params: Params,
    request_id: String,
    model_uuid: String,
    resampler: Option<StreamResampler>,
    odd_byte: Option<u8>,
    digest: Sha256,
    received: usize,
    /// Everything received, at 16 kHz.
    audio: Vec<i16>,
    vad: VoiceDetector,
    vad_done: usize,
    segment_start: usize,
    segment_speech: bool,
    silence_ms: u32,
    last_interim: usize,
    malformed_sent: bool,
    /// The [`DeepgramFault::DropEvery`] period it was opened in.
    period: u128,
}

/// What the stream does after a message.
enum Next {
    Continue,
    Drop,
    Stop,
}

impl Stream {
    fn new(shared: Arc<Shared>, index: usize, params: Params) -> Stream {
        Stream {
            resampler: (params.sample_rate != RATE)
                .then(|| StreamResampler::new(params.sample_rate, RATE)),
            vad: VoiceDetector::new(&VadConfig::default(), RATE, 20),
            request_id: ws_server::uuid(),
            model_uuid: ws_server::uuid(),
            index,
            params,
            odd_byte: None,
            digest: Sha256::new(),
            received: 0,
            audio: Vec::new(),
            vad_done: 0,
            segment_start: 0,
            segment_speech: false,
            silence_ms: 0,
            last_interim: 0,
            malformed_sent: false,
            period: shared.period(index),
            shared,
        }
    }

    fn record(&self, change: impl FnOnce(&mut DeepgramConnection)) {
        self.shared.records.update(self.index, change);
    }

    async fn run(mut self, mut socket: WebSocketStream<TcpStream>) {
        let idle = Duration::from_millis(self.shared.options.idle_timeout_ms.into());
        loop {
            let next = match tokio::time::timeout(idle, socket.next()).await {
                Err(_) => {
                    self.close(&mut socket, CloseCode::Error, "NET-0001").await;
                    return;
                }
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                    self.record(|c| c.client_left = !c.closed_normally);
                    return;
                }
                Ok(Some(Ok(Message::Binary(bytes)))) => self.on_audio(&mut socket, &bytes).await,
                Ok(Some(Ok(Message::Text(text)))) => self.on_control(&mut socket, &text).await,
                Ok(Some(Ok(_))) => Next::Continue,
            };
            match next {
                Next::Continue => {}
                Next::Stop => return,
                Next::Drop => {
                    self.record(|c| c.dropped = true);
                    ws_server::drop_connection(socket).await;
                    return;
                }
            }
        }
    }

    async fn send(&mut self, socket: &mut WebSocketStream<TcpStream>, message: Value) {
        let _ = socket.send(Message::text(message.to_string())).await;
        self.record(|c| c.sent.push(message));
    }

    async fn close(
        &mut self,
        socket: &mut WebSocketStream<TcpStream>,
        code: CloseCode,
        reason: &str,
    ) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = socket.close(Some(frame)).await;
        let reason = reason.to_owned();
        self.record(|c| c.error_close = Some((code.into(), reason)));
    }

    async fn on_audio(&mut self, socket: &mut WebSocketStream<TcpStream>, bytes: &[u8]) -> Next {
        if bytes.is_empty() {
            // The old way of closing a stream, still honoured.
            return self.close_stream(socket).await;
        }
        self.digest.update(bytes);
        let mut joined: Vec<u8> = self.odd_byte.take().into_iter().collect();
        joined.extend_from_slice(bytes);
        if joined.len() % 2 == 1 {
            self.odd_byte = joined.pop();
        }
        let pcm: Vec<i16> = joined
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        self.received += pcm.len();
        let received = self.received;
        self.record(|c| c.audio_samples = received);
        match &mut self.resampler {
            Some(r) => self.audio.extend(r.push(&pcm)),
            None => self.audio.extend_from_slice(&pcm),
        }
        match self.shared.options.fault {
            DeepgramFault::Stall => return Next::Continue,
            DeepgramFault::Malformed if !self.malformed_sent => {
                self.malformed_sent = true;
                let broken = json!({"type": "Results", "channel_index": [0, 1], "is_final": true});
                self.send(socket, broken).await;
                return Next::Continue;
            }
            DeepgramFault::DropEvery { .. } if self.shared.period(self.index) > self.period => {
                return Next::Drop;
            }
            DeepgramFault::DropOnce { after_audio_ms } => {
                let heard_ms = self.received as u64 * 1000 / u64::from(self.params.sample_rate);
                if heard_ms >= u64::from(after_audio_ms)
                    && !self.shared.dropped_once.swap(true, Ordering::AcqRel)
                {
                    return Next::Drop;
                }
            }
            _ => {}
        }
        self.analyse(socket, true).await;
        Next::Continue
    }

    /// Runs the VAD over new audio for endpointing, then sends an interim result when one is
    /// due and `interim` allows.
    async fn analyse(&mut self, socket: &mut WebSocketStream<TcpStream>, interim: bool) {
        while self.vad_done + FRAME <= self.audio.len() {
            let decision = self
                .vad
                .process(&self.audio[self.vad_done..self.vad_done + FRAME], 0.0);
            self.vad_done += FRAME;
            if decision.speaking {
                self.segment_speech = true;
                self.silence_ms = 0;
            } else if self.segment_speech {
                self.silence_ms += 20;
            }
            if let Some(ms) = self.params.endpointing_ms {
                if self.segment_speech && self.silence_ms >= ms.max(20) {
                    self.finalize(socket, self.vad_done, true, false).await;
                }
            }
        }
        let every = (self.shared.options.interim_every_ms * RATE / 1000) as usize;
        if interim
            && self.params.interim_results
            && self.segment_speech
            && self.audio.len() - self.last_interim >= every
        {
            self.last_interim = self.audio.len();
            let transcript = self.transcribe(self.segment_start, self.audio.len()).await;
            if !transcript.is_empty() {
                let results = self.results(
                    self.segment_start,
                    self.audio.len(),
                    &transcript,
                    false,
                    false,
                    false,
                );
                self.send(socket, results).await;
            }
        }
    }

    async fn on_control(&mut self, socket: &mut WebSocketStream<TcpStream>, text: &str) -> Next {
        let kind = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
        let Some(kind) =
            kind.filter(|k| ["KeepAlive", "Finalize", "CloseStream"].contains(&k.as_str()))
        else {
            // Not one of the documented control messages.
            self.close(socket, CloseCode::Policy, "invalid control message")
                .await;
            return Next::Stop;
        };
        let recorded = kind.clone();
        self.record(|c| c.controls.push(recorded));
        if self.shared.options.fault == DeepgramFault::Stall {
            return Next::Continue;
        }
        match kind.as_str() {
            "Finalize" => {
                if self.segment_start < self.audio.len() {
                    self.finalize(socket, self.audio.len(), false, true).await;
                }
                Next::Continue
            }
            "CloseStream" => self.close_stream(socket).await,
            _ => Next::Continue, // KeepAlive: no answer
        }
    }

    /// Final results for the rest, `Metadata`, a 1000 close.
    async fn close_stream(&mut self, socket: &mut WebSocketStream<TcpStream>) -> Next {
        if let Some(r) = &mut self.resampler {
            self.audio.extend(r.finish());
        }
        self.analyse(socket, false).await;
        if self.segment_start < self.audio.len() {
            self.finalize(socket, self.audio.len(), false, false).await;
        }
        let sha256: String = self
            .digest
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let metadata = json!({
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": sha256,
            "created": rfc3339_now(),
            "duration": self.received as f64 / f64::from(self.params.sample_rate),
            "channels": 1,
        });
        self.send(socket, metadata).await;
        let _ = socket
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
        self.record(|c| c.closed_normally = true);
        // Read until the client has seen the close.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = socket.next().await {}
        })
        .await;
        Next::Stop
    }

    /// Sends the final result for the segment ending at `end` and starts the next one there.
    async fn finalize(
        &mut self,
        socket: &mut WebSocketStream<TcpStream>,
        end: usize,
        speech_final: bool,
        from_finalize: bool,
    ) {
        let start = self.segment_start;
        let transcript = if self.segment_speech {
            self.transcribe(start, end).await
        } else {
            String::new()
        };
        let results = self.results(start, end, &transcript, true, speech_final, from_finalize);
        self.send(socket, results).await;
        self.segment_start = end;
        self.segment_speech = false;
        self.silence_ms = 0;
        self.last_interim = end;
    }

    fn results(
        &self,
        start: usize,
        end: usize,
        transcript: &str,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
    ) -> Value {
        json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": (end - start) as f64 / f64::from(RATE),
            "start": start as f64 / f64::from(RATE),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": transcript, "confidence": 0.0, "words": []}]},
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": self.params.model, "version": "whisper-tiny.en", "arch": "whisper"},
                "model_uuid": self.model_uuid,
            },
        })
    }

    /// Whisper's transcript of `audio[start..end]`, formatted per `punctuate`/`smart_format`.
    async fn transcribe(&mut self, start: usize, end: usize) -> String {
        if let Some(transcriber) = self.shared.options.transcriber {
            return transcriber(&self.audio[start..end]);
        }
        let samples: Vec<f32> = self.audio[start..end]
            .iter()
            .map(|&s| f32::from(s) / 32768.0)
            .collect();
        let text = tokio::task::spawn_blocking(move || {
            model()
                .transcribe(&samples, whisper::CONTEXT)
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        let text = text.trim();
        if self.params.punctuate || self.params.smart_format {
            text.to_owned()
        } else {
            text.chars()
                .filter(|c| c.is_alphanumeric() || c.is_whitespace() || *c == '\'')
                .collect::<String>()
                .to_lowercase()
        }
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_millis()
    )
}
