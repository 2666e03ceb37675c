//! A local ElevenLabs-protocol server: it speaks ElevenLabs' stream-input WebSocket
//! (`/v1/text-to-speech/{voice_id}/stream-input`) as ElevenLabs documents it, and synthesizes
//! with voicebackend's embedded eSpeak NG, so the audio is real speech.
//!
//! Where the message formats come from:
//! - the endpoint's AsyncAPI reference,
//!   <https://elevenlabs.io/docs/api-reference/text-to-speech/v-1-text-to-speech-voice-id-stream-input>:
//!   query parameters (`model_id`, `output_format`, `inactivity_timeout` default 20, …), the
//!   `xi-api-key` header (or the key in the first message), `InitializeConnection` (text must
//!   be a single space; `voice_settings`, `generation_config.chunk_length_schedule` default
//!   [120, 160, 250, 290], each 50–500), `SendText` (`flush`, `try_trigger_generation`; voice
//!   settings "must either be not provided or not changed"), `CloseConnection` (`""`), and the
//!   answers `AudioOutput` (`audio`, `alignment`, `normalizedAlignment` with `chars`,
//!   `charStartTimesMs`, `charDurationsMs`) and `FinalOutput` (`isFinal`);
//! - error closes: 1008 (policy violation) with a reason; the inactivity text is the one quoted
//!   by ElevenLabs in `elevenlabs/elevenlabs-docs` issue 426, the voice-settings text the one in
//!   `pipecat-ai/pipecat` issue 4541; an invalid message is answered with
//!   `{"message", "error": "invalid_input_message", "code": 1008}` as quoted in
//!   `elevenlabs/elevenlabs-python` issue 167, then closed with 1008. A wrong `xi-api-key`
//!   header is refused at the handshake with 401 and ElevenLabs' REST error body
//!   (`{"detail": {"status": "invalid_api_key", "message": …}}`).
//!
//! Text is buffered and generated following the chunk length schedule, on `flush` and at the end
//! of input, as the service describes; each generation is synthesized by eSpeak NG, resampled to
//! the requested `pcm_*` rate and sent in 200 ms audio messages. The alignment of a generation
//! (its characters) comes with its last audio message; eSpeak NG's per-character timing is not
//! available through the provider, so the character times are spread evenly over the
//! generation. Only the `pcm_*` output formats are produced (mp3, opus, μ-law would need
//! encoders this test server does not have); others are refused in-band like any invalid value.
//!
//! Fault modes ([`ElevenLabsFault`]) let tests exercise the client's error paths; every
//! connection is recorded ([`ElevenLabsConnection`]), including whether the client closed it
//! mid-reply (barge-in).
#![allow(dead_code)]

mod protocol;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use voicebackend::dsp::resample::StreamResampler;
use voicebackend::provider::embedded::espeak::EspeakTts;
use voicebackend::provider::{TtsProvider, TtsRequest};

use super::ws_server::{self, Records, ServerThread};
use protocol::{
    ClientMessage, GenerationConfig, Params, check_handshake, check_voice_settings, voice_in,
};

/// The voice the server knows (ElevenLabs' documentation example voice); it speaks as eSpeak
/// NG's `en-us`.
pub const VOICE_ID: &str = "21m00Tcm4TlvDq8ikWAM";
/// `chunk_length_schedule` when the client sends none.
const DEFAULT_SCHEDULE: [u32; 4] = [120, 160, 250, 290];
/// Fewest buffered characters `try_trigger_generation` generates.
const TRIGGER_MIN_CHARS: usize = 50;
const INACTIVITY: &str = "Have not received a new text input within the timeout of {} seconds. \
    Streaming input terminated. Please make sure to either feed the input in the timely manner, \
    or to send the end of input text (empty string \"\") when done.";

/// What a test wants the server to do wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElevenLabsFault {
    /// Behave.
    None,
    /// Answer the first text of each connection with an audio message whose `audio` is not a
    /// string.
    Malformed,
    /// Drop the first connection without a Close frame after it has sent this many
    /// generations; later connections behave.
    DropOnce {
        /// Generations sent before the drop.
        after_generations: usize,
    },
    /// Read everything, answer nothing, never close.
    Stall,
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ElevenLabsServerOptions {
    /// The one key it accepts.
    pub api_key: String,
    /// What it does wrong.
    pub fault: ElevenLabsFault,
}

impl Default for ElevenLabsServerOptions {
    fn default() -> Self {
        ElevenLabsServerOptions {
            api_key: "local-elevenlabs-key".to_owned(),
            fault: ElevenLabsFault::None,
        }
    }
}

/// What one connection saw.
#[derive(Debug, Clone, Default)]
pub struct ElevenLabsConnection {
    /// The voice in the path.
    pub voice_id: String,
    /// The query parameters.
    pub query: BTreeMap<String, String>,
    /// The HTTP status of a refused handshake.
    pub refused: Option<u16>,
    /// Client messages as received (a key in the first message is blanked).
    pub messages: Vec<Value>,
    /// The reply text received (every `SendText`), in order.
    pub text: String,
    /// `SendText` messages with `flush: true`.
    pub flushes: usize,
    /// The texts generated, in order.
    pub generations: Vec<String>,
    /// Rate of the audio sent.
    pub sample_rate: u32,
    /// Audio samples sent.
    pub audio_samples: usize,
    /// The end of input arrived.
    pub end_of_input: bool,
    /// `isFinal` was sent.
    pub final_sent: bool,
    /// The client went away before it had taken the whole reply: it closed or dropped the
    /// connection while the reply was being produced, or dropped it after `isFinal` without
    /// completing the closing handshake, i.e. with audio still unread (barge-in).
    pub closed_mid_reply: bool,
    /// The connection was dropped by [`ElevenLabsFault::DropOnce`].
    pub dropped: bool,
    /// An error close the server sent: code and reason.
    pub error_close: Option<(u16, String)>,
    /// The server is done with the connection (everything above is final).
    pub ended: bool,
}

/// A running local ElevenLabs-protocol server; stops when dropped.
pub struct ElevenLabsServer {
    thread: ServerThread,
    records: Arc<Records<ElevenLabsConnection>>,
}

struct Shared {
    options: ElevenLabsServerOptions,
    records: Arc<Records<ElevenLabsConnection>>,
    dropped_once: AtomicBool,
    tts: EspeakTts,
}

impl ElevenLabsServer {
    /// Starts a server on 127.0.0.1 on a thread of its own.
    pub fn start(options: ElevenLabsServerOptions) -> ElevenLabsServer {
        let records = Records::new();
        let tts = EspeakTts::new(&json!({"voice": "en-us"}))
            .unwrap_or_else(|e| panic!("the local ElevenLabs server needs eSpeak NG: {e}"));
        let shared = Arc::new(Shared {
            options,
            records: records.clone(),
            dropped_once: AtomicBool::new(false),
            tts,
        });
        let thread = ServerThread::start("elevenlabs-server", move |stream| {
            serve(stream, shared.clone())
        });
        ElevenLabsServer { thread, records }
    }

    /// `ws://127.0.0.1:<port>`: the client's `base_url`.
    pub fn base_url(&self) -> String {
        self.thread.base_url()
    }

    /// Every connection so far.
    pub fn connections(&self) -> Vec<ElevenLabsConnection> {
        self.records.snapshot()
    }

    /// Waits until `done` holds for the connections (panics after a long patience).
    pub fn wait_for(
        &self,
        done: impl FnMut(&[ElevenLabsConnection]) -> bool,
    ) -> Vec<ElevenLabsConnection> {
        self.records.wait_for(done)
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let key = shared.options.api_key.clone();
    let (info, socket) = ws_server::accept(stream, |info| check_handshake(info, &key)).await;
    let voice_id = voice_in(&info.path).unwrap_or_default().to_owned();
    let records = shared.records.clone();
    let index = records.push(ElevenLabsConnection {
        voice_id: voice_id.clone(),
        query: info.query.iter().cloned().collect(),
        refused: info.refused,
        ..ElevenLabsConnection::default()
    });
    if let Some(socket) = socket {
        let reply = Reply {
            shared,
            index,
            socket,
            header_key: info.header("xi-api-key").is_some(),
            schedule: DEFAULT_SCHEDULE.to_vec(),
            voice_settings: None,
            generation_config: None,
            buffer: String::new(),
            generations: 0,
            sample_rate: 0,
            malformed_sent: false,
        };
        reply.run(&info.query, &voice_id).await;
    }
    records.update(index, |c| c.ended = true);
}

/// One stream-input connection.
struct Reply {
    shared: Arc<Shared>,
    index: usize,
    socket: WebSocketStream<TcpStream>,
    header_key: bool,
    schedule: Vec<u32>,
    voice_settings: Option<Value>,
    generation_config: Option<Value>,
    buffer: String,
    generations: usize,
    sample_rate: u32,
    malformed_sent: bool,
}

/// Why a reply stops.
enum Stop {
    /// Done or refused; the socket is closed.
    Closed,
    /// The client went away.
    ClientLeft,
    /// [`ElevenLabsFault::DropOnce`].
    Drop,
}

impl Reply {
    fn record(&self, change: impl FnOnce(&mut ElevenLabsConnection)) {
        self.shared.records.update(self.index, change);
    }

    /// Serves the connection: checks the query and the voice, then converses.
    async fn run(mut self, query: &[(String, String)], voice_id: &str) {
        let params = match Params::parse(query) {
            Ok(params) => params,
            Err(why) => {
                self.refuse("invalid_request", &why).await;
                return;
            }
        };
        if voice_id != VOICE_ID {
            let why = format!("A voice with the voice_id {voice_id} was not found.");
            self.refuse("voice_not_found", &why).await;
            return;
        }
        self.sample_rate = params.sample_rate;
        self.record(|c| c.sample_rate = params.sample_rate);
        match self.converse(params.inactivity_s).await {
            Stop::Closed => {}
            Stop::ClientLeft => self.record(|c| c.closed_mid_reply = true),
            Stop::Drop => {
                self.record(|c| c.dropped = true);
                ws_server::drop_connection(self.socket).await;
            }
        }
    }

    async fn converse(&mut self, inactivity_s: u64) -> Stop {
        let inactivity = Duration::from_secs(inactivity_s);
        let mut first = true;
        loop {
            let message = match tokio::time::timeout(inactivity, self.socket.next()).await {
                Err(_) => {
                    let why = INACTIVITY.replace("{}", &inactivity_s.to_string());
                    return self.close(CloseCode::Policy, &why).await;
                }
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Stop::ClientLeft,
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(Message::Binary(_)))) => {
                    return self
                        .invalid("binary messages are not part of the protocol")
                        .await;
                }
                Ok(Some(Ok(_))) => continue,
            };
            let mut value: Value = match serde_json::from_str(&message) {
                Ok(value) => value,
                Err(_) => return self.invalid("not JSON").await,
            };
            if let Some(object) = value.as_object_mut() {
                for key in ["xi-api-key", "authorization"] {
                    if let Some(v) = object.get_mut(key) {
                        *v = json!("***");
                    }
                }
            }
            let recorded = value.clone();
            self.record(|c| c.messages.push(recorded));
            let parsed: ClientMessage = match serde_json::from_str(&message) {
                Ok(parsed) => parsed,
                Err(_) => return self.invalid("does not follow the schema").await,
            };
            if self.shared.options.fault == ElevenLabsFault::Stall {
                continue;
            }
            let step = if first {
                first = false;
                self.initialize(parsed).await
            } else {
                self.on_text(parsed).await
            };
            if let Some(stop) = step {
                return stop;
            }
        }
    }

    /// `InitializeConnection`.
    async fn initialize(&mut self, message: ClientMessage) -> Option<Stop> {
        if message.text != " " {
            return Some(
                self.invalid("the first message's text must be a single space")
                    .await,
            );
        }
        if !self.header_key {
            let key = &self.shared.options.api_key;
            let bearer = message
                .authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "));
            if message.xi_api_key.as_deref() != Some(key) && bearer != Some(key) {
                return Some(self.refuse("invalid_api_key", "Invalid API key").await);
            }
        }
        if let Some(settings) = &message.voice_settings {
            if let Err(why) = check_voice_settings(settings) {
                return Some(self.invalid(&why).await);
            }
        }
        if let Some(config) = &message.generation_config {
            match serde_json::from_value::<GenerationConfig>(config.clone()) {
                Ok(GenerationConfig {
                    chunk_length_schedule: Some(schedule),
                }) if !schedule.is_empty() && schedule.iter().all(|n| (50..=500).contains(n)) => {
                    self.schedule = schedule;
                }
                Ok(GenerationConfig {
                    chunk_length_schedule: None,
                }) => {}
                _ => {
                    return Some(
                        self.invalid("chunk_length_schedule items must be 50 to 500")
                            .await,
                    );
                }
            }
        }
        self.voice_settings = message.voice_settings;
        self.generation_config = message.generation_config;
        None
    }

    /// `SendText` or `CloseConnection`.
    async fn on_text(&mut self, message: ClientMessage) -> Option<Stop> {
        let changed = |given: &Option<Value>, first: &Option<Value>| {
            given.as_ref().is_some_and(|g| Some(g) != first.as_ref())
        };
        if changed(&message.voice_settings, &self.voice_settings) {
            let why = "voice_settings field must be provided in the first message and then \
                       either be not provided or not change.";
            return Some(self.close(CloseCode::Policy, why).await);
        }
        if changed(&message.generator_config, &self.generation_config) {
            let why = "generator_config field must be provided in the first message and then \
                       either be not provided or not change.";
            return Some(self.close(CloseCode::Policy, why).await);
        }
        if message.text.is_empty() {
            self.record(|c| c.end_of_input = true);
            let rest = std::mem::take(&mut self.buffer);
            if let Some(stop) = self.generate(rest).await {
                return Some(stop);
            }
            if self.send(json!({"isFinal": true})).await.is_err() {
                return Some(Stop::ClientLeft);
            }
            self.record(|c| c.final_sent = true);
            return Some(self.close(CloseCode::Normal, "").await);
        }
        let text = message.text.clone();
        let flush = message.flush;
        self.record(|c| {
            c.text.push_str(&text);
            c.flushes += usize::from(flush);
        });
        self.buffer.push_str(&message.text);
        if self.shared.options.fault == ElevenLabsFault::Malformed && !self.malformed_sent {
            self.malformed_sent = true;
            if self
                .send(json!({"audio": 12345, "isFinal": false}))
                .await
                .is_err()
            {
                return Some(Stop::ClientLeft);
            }
        }
        let chars = self.buffer.chars().count();
        if message.flush || (message.try_trigger_generation && chars >= TRIGGER_MIN_CHARS) {
            let all = std::mem::take(&mut self.buffer);
            return self.generate(all).await;
        }
        loop {
            let due = self.schedule[self.generations.min(self.schedule.len() - 1)] as usize;
            if self.buffer.chars().count() < due {
                return None;
            }
            // Up to the last whitespace, so that no word is cut.
            let cut = self
                .buffer
                .char_indices()
                .rev()
                .find(|(_, c)| c.is_whitespace())
                .map_or(self.buffer.len(), |(i, c)| i + c.len_utf8());
            let text: String = self.buffer.drain(..cut).collect();
            if let Some(stop) = self.generate(text).await {
                return Some(stop);
            }
        }
    }

    /// Synthesizes `text` and sends its audio, the alignment with the last message.
    async fn generate(&mut self, text: String) -> Option<Stop> {
        if text.trim().is_empty() {
            return None;
        }
        let pcm = self.synthesize(&text).await;
        self.generations += 1;
        let generated = text.clone();
        self.record(|c| c.generations.push(generated));
        let piece = (self.sample_rate / 5) as usize;
        let chunks: Vec<&[i16]> = pcm.chunks(piece.max(1)).collect();
        let duration_ms = pcm.len() as u64 * 1000 / u64::from(self.sample_rate);
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let n = chars.len() as u64;
        let alignment = json!({
            "chars": chars,
            "charStartTimesMs": (0..n).map(|i| duration_ms * i / n).collect::<Vec<_>>(),
            "charDurationsMs": vec![duration_ms / n; chars.len()],
        });
        for (i, chunk) in chunks.iter().enumerate() {
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            let last = i + 1 == chunks.len();
            let aligned = if last { alignment.clone() } else { Value::Null };
            let message = json!({
                "audio": base64::engine::general_purpose::STANDARD.encode(bytes),
                "isFinal": false,
                "normalizedAlignment": aligned,
                "alignment": aligned,
            });
            if self.send(message).await.is_err() {
                return Some(Stop::ClientLeft);
            }
            let samples = chunk.len();
            self.record(|c| c.audio_samples += samples);
        }
        if let ElevenLabsFault::DropOnce { after_generations } = self.shared.options.fault {
            if self.generations >= after_generations
                && !self.shared.dropped_once.swap(true, Ordering::AcqRel)
            {
                return Some(Stop::Drop);
            }
        }
        None
    }

    /// eSpeak NG's speech for `text` at the requested rate.
    async fn synthesize(&self, text: &str) -> Vec<i16> {
        let (text_tx, text_rx) = mpsc::unbounded_channel();
        let _ = text_tx.send(text.to_owned());
        drop(text_tx);
        let (audio_tx, mut audio_rx) = mpsc::channel(16);
        let synthesis = self.shared.tts.synthesize(TtsRequest {
            text: text_rx,
            audio: audio_tx,
        });
        let collect = async {
            let mut pcm = Vec::new();
            while let Some(chunk) = audio_rx.recv().await {
                pcm.extend(chunk);
            }
            pcm
        };
        let (result, pcm) = tokio::join!(synthesis, collect);
        result.expect("eSpeak NG synthesis");
        let from = self.shared.tts.sample_rate();
        if from == self.sample_rate {
            return pcm;
        }
        let mut resampler = StreamResampler::new(from, self.sample_rate);
        let mut out = resampler.push(&pcm);
        out.extend(resampler.finish());
        out
    }

    async fn send(&mut self, message: Value) -> Result<(), ()> {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|_| ())
    }

    /// The in-band answer to an invalid message, then a 1008 close.
    async fn invalid(&mut self, why: &str) -> Stop {
        let message = format!(
            "Could not parse input message, make sure it is a json and follows the schema \
             outlined in protocol. ({why})"
        );
        self.refuse("invalid_input_message", &message).await
    }

    /// An error message, then a 1008 close.
    async fn refuse(&mut self, error: &str, message: &str) -> Stop {
        let _ = self
            .send(json!({"message": message, "error": error, "code": 1008}))
            .await;
        self.close(CloseCode::Policy, message).await
    }

    async fn close(&mut self, code: CloseCode, reason: &str) -> Stop {
        // A close reason must fit a control frame (123 bytes).
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let frame = CloseFrame {
            code,
            reason: reason[..end].into(),
        };
        let _ = self.socket.close(Some(frame)).await;
        if code != CloseCode::Normal {
            let reason = reason.to_owned();
            self.record(|c| c.error_close = Some((code.into(), reason)));
        }
        // Wait for the client's Close frame: a client that drops the connection instead never
        // took the end of the reply (it was cut off, e.g. by barge-in, while audio was still
        // unread).
        let acknowledged = tokio::time::timeout(ws_server::PATIENCE, async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Close(_))) => return true,
                    Some(Ok(_)) => {}
                    _ => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        if code == CloseCode::Normal && !acknowledged {
            self.record(|c| c.closed_mid_reply = true);
        }
        Stop::Closed
    }
}
