//! A local OpenAI-protocol Realtime server for the tests: a WebSocket server that speaks the GA
//! Realtime API as OpenAI's API reference documents it (read in the generated types of the
//! official `openai-python` SDK, `types/realtime/*.py`: the client events `session.update`,
//! `input_audio_buffer.append`/`commit`/`clear`, `response.create`, `response.cancel`,
//! `conversation.item.truncate`, and the server events `session.created`/`updated`,
//! `input_audio_buffer.speech_started`/`speech_stopped`/`committed`/`cleared`,
//! `conversation.item.added`, `conversation.item.input_audio_transcription.completed`,
//! `response.created`, `response.output_item.added`, `response.content_part.added`,
//! `response.output_audio.delta`/`done`, `response.output_audio_transcript.delta`/`done`,
//! `response.content_part.done`, `response.output_item.done`, `response.done`,
//! `conversation.item.truncated` and `error`).
//!
//! - The handshake is `GET /v1/realtime?model=…` with `Authorization: Bearer <key>`; a wrong
//!   key is refused with HTTP 401 and OpenAI's error object. A beta client (`OpenAI-Beta`
//!   header) is refused with 400: this server speaks GA only.
//! - Client events are checked like the API checks them (unknown parameters, the event type,
//!   the audio format, the voice, base64 audio, an empty commit, a second response, a cancel
//!   with nothing to cancel, a truncation past the audio) and answered with `error` events.
//! - Committed audio is transcribed by voicebackend's `whisper` provider; the "model" answers
//!   "You said: <transcript>." (or "I did not hear anything.") spoken by voicebackend's `espeak`
//!   provider at 24 kHz, streamed as 100 ms audio deltas at real-time pace (or as fast as
//!   possible, [`OpenAiRealtimeServer::set_realtime_pace`]) with the transcript word by word.
//! - `server_vad` turn detection is an energy detector with the documented parameters
//!   (`threshold`, `prefix_padding_ms`, `silence_duration_ms`, `create_response`,
//!   `interrupt_response`); `semantic_vad` and formats other than `audio/pcm` are not served.
//!
//! Faults ([`Fault`]) apply per response: `Malformed` sends one unreadable message before it,
//! `DropMidStream` drops the connection halfway through its audio (the next connection is
//! served normally), `Stall` never answers `response.create`, `Status` refuses it with an
//! `error` event carrying the client's `event_id`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::openai_engines::{
    Fault, Faults, OPENAI_RATE, error_body, le_bytes, redacted_key, speak, transcribe, whisper,
};
use super::ws_server::ServerThread;

/// The voices OpenAI documents for Realtime sessions.
pub const REALTIME_VOICES: [&str; 10] = [
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];
/// Samples per audio delta: 100 ms.
pub const DELTA_SAMPLES: usize = OPENAI_RATE as usize / 10;

struct Shared {
    api_key: String,
    faults: Faults,
    events: Mutex<Vec<Value>>,
    connections: AtomicUsize,
    refused: AtomicUsize,
    realtime_pace: AtomicBool,
}

/// The local OpenAI-protocol Realtime server; stops when dropped.
pub struct OpenAiRealtimeServer {
    shared: Arc<Shared>,
    thread: ServerThread,
}

impl OpenAiRealtimeServer {
    /// Starts a server on 127.0.0.1 that accepts `api_key`, once Whisper is loaded.
    pub fn start(api_key: &str) -> OpenAiRealtimeServer {
        whisper();
        let shared = Arc::new(Shared {
            api_key: api_key.to_owned(),
            faults: Faults::default(),
            events: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            realtime_pace: AtomicBool::new(true),
        });
        let state = shared.clone();
        let thread = ServerThread::start("openai-realtime", move |stream| {
            serve_connection(state.clone(), stream)
        });
        OpenAiRealtimeServer { shared, thread }
    }

    /// `ws://127.0.0.1:<port>`: the `base_url` to give the client.
    pub fn base_url(&self) -> String {
        format!("ws://{}", self.thread.addr())
    }

    /// The next `times` responses get `fault`.
    pub fn fail_next(&self, fault: Fault, times: usize) {
        self.shared.faults.fail_next(fault, times);
    }

    /// Every response gets `fault` until [`OpenAiRealtimeServer::clear_faults`].
    pub fn fail_all(&self, fault: Fault) {
        self.shared.faults.fail_all(fault);
    }

    /// Normal responses from now on.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Stream response audio at real-time pace (default) or as fast as possible.
    pub fn set_realtime_pace(&self, on: bool) {
        self.shared.realtime_pace.store(on, Ordering::Relaxed);
    }

    /// Every client event received so far, on every connection, in order (unreadable messages
    /// as JSON strings).
    pub fn client_events(&self) -> Vec<Value> {
        self.shared.events.lock().unwrap().clone()
    }

    /// The client events of type `kind` received so far.
    pub fn client_events_of(&self, kind: &str) -> Vec<Value> {
        let events = self.shared.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e["type"] == kind)
            .cloned()
            .collect()
    }

    /// WebSocket connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Handshakes refused so far (wrong key, wrong path, beta client).
    pub fn refused_handshakes(&self) -> usize {
        self.shared.refused.load(Ordering::Relaxed)
    }
}

/// What the connection's loop writes to the socket.
enum Out {
    Event(Value),
    /// A message that is not JSON (the `Malformed` fault).
    Raw(String),
    /// Drop the connection without a close frame (the `DropMidStream` fault).
    Drop,
}

/// What the connection's loop reads next.
enum Wake {
    Client(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Out(Option<Out>),
}

fn refuse(status: StatusCode, body: Value) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body.to_string()));
    *response.status_mut() = status;
    response
}

async fn serve_connection(shared: Arc<Shared>, tcp: TcpStream) {
    let mut model = String::new();
    // The error type is tungstenite's handshake callback's.
    #[allow(clippy::result_large_err)]
    let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let uri = request.uri();
        if uri.path() != "/v1/realtime" {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                error_body(
                    &format!("Invalid URL (GET {})", uri.path()),
                    "invalid_request_error",
                    None,
                    None,
                ),
            ));
        }
        let key = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match key {
            Some(key) if key == shared.api_key => {}
            Some(key) => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    error_body(
                        &format!(
                            "Incorrect API key provided: {}. You can find your API key at \
                             https://platform.openai.com/account/api-keys.",
                            redacted_key(key)
                        ),
                        "invalid_request_error",
                        None,
                        Some("invalid_api_key"),
                    ),
                ));
            }
            None => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    error_body(
                        "Missing bearer or basic authentication in header",
                        "invalid_request_error",
                        None,
                        None,
                    ),
                ));
            }
        }
        if request.headers().contains_key("openai-beta") {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                error_body(
                    "This local server speaks the GA Realtime API; the beta is not served.",
                    "invalid_request_error",
                    None,
                    None,
                ),
            ));
        }
        model = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|p| p.strip_prefix("model="))
            .unwrap_or_default()
            .to_owned();
        if model.is_empty() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                error_body(
                    "Missing required parameter: 'model'.",
                    "invalid_request_error",
                    Some("model"),
                    Some("missing_required_parameter"),
                ),
            ));
        }
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await else {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        return;
    };
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let mut conn = Connection::new(shared.clone(), out_tx, model);
    let session = conn.session.clone();
    conn.emit("session.created", json!({"session": session}));
    loop {
        let wake = tokio::select! {
            message = ws.next() => Wake::Client(message),
            out = out_rx.recv() => Wake::Out(out),
        };
        match wake {
            Wake::Client(Some(Ok(Message::Text(text)))) => conn.on_client_message(text.as_str()),
            Wake::Client(Some(Ok(Message::Binary(_)))) => {
                shared
                    .events
                    .lock()
                    .unwrap()
                    .push(json!("<binary message>"));
                conn.error(
                    "invalid_request_error",
                    Some("invalid_value"),
                    "Binary messages are not supported; send JSON events as text.",
                    None,
                    None,
                );
            }
            Wake::Client(Some(Ok(_))) => {}
            Wake::Client(None | Some(Err(_))) => {
                conn.abort_response();
                return;
            }
            Wake::Out(Some(Out::Event(event))) => {
                if ws.send(Message::text(event.to_string())).await.is_err() {
                    return;
                }
            }
            Wake::Out(Some(Out::Raw(text))) => {
                if ws.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
            Wake::Out(Some(Out::Drop) | None) => {
                conn.abort_response();
                return; // dropping the socket: no close frame
            }
        }
    }
}

/// A conversation item.
struct Item {
    id: String,
    /// User items: the transcript once whisper has it.
    transcript: Option<watch::Receiver<Option<String>>>,
    /// Assistant items: samples of audio sent.
    audio_sent: Arc<AtomicU64>,
}

/// The response being streamed.
struct Running {
    id: String,
    item_id: String,
    task: JoinHandle<()>,
    audio_sent: Arc<AtomicU64>,
}

/// The energy detector standing in for the server's VAD.
struct Vad {
    frame: Vec<i16>,
    speaking: bool,
    voiced_ms: u64,
    silent_ms: u64,
    start_ms: u64,
}

/// One connection's session.
struct Connection {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Out>,
    session: Value,
    buffer: Vec<i16>,
    /// Audio written to the buffer since the session began, in samples.
    written: u64,
    vad: Vad,
    items: Vec<Item>,
    response: Option<Running>,
    next_id: u64,
}

impl Connection {
    fn new(shared: Arc<Shared>, out: mpsc::UnboundedSender<Out>, model: String) -> Self {
        let pcm = json!({"type": "audio/pcm", "rate": OPENAI_RATE});
        Connection {
            shared,
            out,
            session: json!({
                "type": "realtime",
                "object": "realtime.session",
                "id": "sess_local",
                "model": model,
                "output_modalities": ["audio"],
                "instructions": "You are a helpful assistant.",
                "tools": [],
                "tool_choice": "auto",
                "max_output_tokens": "inf",
                "tracing": null,
                "truncation": "auto",
                "prompt": null,
                "include": null,
                "audio": {
                    "input": {
                        "format": pcm,
                        "transcription": null,
                        "noise_reduction": null,
                        "turn_detection": {
                            "type": "server_vad",
                            "threshold": 0.5,
                            "prefix_padding_ms": 300,
                            "silence_duration_ms": 200,
                            "idle_timeout_ms": null,
                            "create_response": true,
                            "interrupt_response": true,
                        },
                    },
                    "output": {"format": pcm, "voice": "marin", "speed": 1.0},
                },
            }),
            buffer: Vec::new(),
            written: 0,
            vad: Vad {
                frame: Vec::new(),
                speaking: false,
                voiced_ms: 0,
                silent_ms: 0,
                start_ms: 0,
            },
            items: Vec::new(),
            response: None,
            next_id: 0,
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:04}", self.next_id)
    }

    /// Sends a server event of `kind` with `fields`, numbering it.
    fn emit(&mut self, kind: &str, fields: Value) {
        let mut event = json!({"type": kind, "event_id": self.id("event")});
        if let (Some(event), Value::Object(fields)) = (event.as_object_mut(), fields) {
            event.extend(fields);
        }
        let _ = self.out.send(Out::Event(event));
    }

    fn error(
        &mut self,
        kind: &str,
        code: Option<&str>,
        message: &str,
        param: Option<&str>,
        event_id: Option<&str>,
    ) {
        self.emit(
            "error",
            json!({"error": {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id}}),
        );
    }

    fn invalid(&mut self, code: &str, message: &str, param: Option<&str>, event_id: Option<&str>) {
        self.error(
            "invalid_request_error",
            Some(code),
            message,
            param,
            event_id,
        );
    }

    fn on_client_message(&mut self, text: &str) {
        let Ok(event @ Value::Object(_)) = serde_json::from_str::<Value>(text) else {
            self.shared.events.lock().unwrap().push(json!(text));
            self.invalid(
                "invalid_json",
                "The server could not parse the event: it is not a JSON object.",
                None,
                None,
            );
            return;
        };
        self.shared.events.lock().unwrap().push(event.clone());
        let event_id = event["event_id"].as_str().map(str::to_owned);
        let event_id = event_id.as_deref();
        match event["type"].as_str().unwrap_or_default() {
            "session.update" => self.session_update(&event, event_id),
            "input_audio_buffer.append" => self.append(&event, event_id),
            "input_audio_buffer.commit" => {
                self.commit(event_id);
            }
            "input_audio_buffer.clear" => {
                self.buffer.clear();
                self.emit("input_audio_buffer.cleared", json!({}));
            }
            "response.create" => self.create_response(event_id),
            "response.cancel" => self.cancel(&event, event_id),
            "conversation.item.truncate" => self.truncate(&event, event_id),
            "" => self.invalid(
                "missing_required_parameter",
                "Missing required parameter: 'type'.",
                Some("type"),
                event_id,
            ),
            other => self.invalid(
                "invalid_value",
                &format!("Invalid value: '{other}'. This local server serves session.update, input_audio_buffer.append, input_audio_buffer.commit, input_audio_buffer.clear, response.create, response.cancel and conversation.item.truncate."),
                Some("type"),
                event_id,
            ),
        }
    }

    fn session_update(&mut self, event: &Value, event_id: Option<&str>) {
        let Some(update) = event["session"].as_object() else {
            return self.invalid(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                Some("session"),
                event_id,
            );
        };
        if let Err((code, message, param)) = check_session(update) {
            return self.invalid(code, &message, Some(&param), event_id);
        }
        merge(&mut self.session, &Value::Object(update.clone()));
        let session = self.session.clone();
        self.emit("session.updated", json!({"session": session}));
    }

    fn append(&mut self, event: &Value, event_id: Option<&str>) {
        let audio = event["audio"]
            .as_str()
            .and_then(|a| BASE64.decode(a).ok())
            .filter(|bytes| bytes.len() % 2 == 0);
        let Some(bytes) = audio else {
            return self.invalid(
                "invalid_value",
                "Invalid 'audio'. Expected base64-encoded 16-bit PCM.",
                Some("audio"),
                event_id,
            );
        };
        let samples: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        self.buffer.extend_from_slice(&samples);
        for sample in samples {
            self.written += 1;
            self.vad.frame.push(sample);
            if self.vad.frame.len() == OPENAI_RATE as usize / 50 {
                self.vad_frame();
            }
        }
    }

    /// One 20 ms frame through the server VAD (when it is on).
    fn vad_frame(&mut self) {
        let frame = std::mem::take(&mut self.vad.frame);
        let vad = self.session["audio"]["input"]["turn_detection"].clone();
        if vad.is_null() {
            return;
        }
        let threshold = vad["threshold"].as_f64().unwrap_or(0.5);
        let rms =
            (frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / frame.len() as f64).sqrt();
        let voiced = rms > threshold * 0.05 * 32768.0;
        let now_ms = self.written * 1000 / u64::from(OPENAI_RATE);
        let item_id = format!("item_{:04}", self.next_id + 1);
        if voiced {
            self.vad.voiced_ms += 20;
            self.vad.silent_ms = 0;
            if !self.vad.speaking && self.vad.voiced_ms >= 60 {
                self.vad.speaking = true;
                let prefix = vad["prefix_padding_ms"].as_u64().unwrap_or(300);
                self.vad.start_ms = now_ms.saturating_sub(self.vad.voiced_ms + prefix);
                let start = self.vad.start_ms;
                self.emit(
                    "input_audio_buffer.speech_started",
                    json!({"audio_start_ms": start, "item_id": item_id}),
                );
                if vad["interrupt_response"] != false && self.response.is_some() {
                    self.finish_cancelled("turn_detected");
                }
            }
        } else {
            self.vad.voiced_ms = 0;
            self.vad.silent_ms += 20;
            if self.vad.speaking
                && self.vad.silent_ms >= vad["silence_duration_ms"].as_u64().unwrap_or(200)
            {
                self.vad.speaking = false;
                self.emit(
                    "input_audio_buffer.speech_stopped",
                    json!({"audio_end_ms": now_ms, "item_id": item_id}),
                );
                if self.commit(None) && vad["create_response"] != false {
                    self.create_response(None);
                }
            }
        }
    }

    /// Commits the buffer as a user item and starts transcribing it; `false` when the buffer
    /// holds too little audio.
    fn commit(&mut self, event_id: Option<&str>) -> bool {
        let min = OPENAI_RATE as usize / 10;
        if self.buffer.len() < min {
            let ms = self.buffer.len() as f64 * 1000.0 / f64::from(OPENAI_RATE);
            self.invalid(
                "input_audio_buffer_commit_empty",
                &format!("Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has {ms:.2}ms of audio."),
                None,
                event_id,
            );
            return false;
        }
        let pcm = std::mem::take(&mut self.buffer);
        let previous = self.items.last().map(|i| i.id.clone());
        let item_id = self.id("item");
        self.emit(
            "input_audio_buffer.committed",
            json!({"previous_item_id": previous, "item_id": item_id}),
        );
        self.emit(
            "conversation.item.added",
            json!({"previous_item_id": previous, "item": {
                "id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": null}],
            }}),
        );
        let (transcript_tx, transcript_rx) = watch::channel(None);
        let announce = !self.session["audio"]["input"]["transcription"].is_null();
        let event_id = self.id("event");
        let out = self.out.clone();
        let id = item_id.clone();
        tokio::spawn(async move {
            let text = transcribe(&pcm, OPENAI_RATE).await;
            if announce {
                let seconds = pcm.len() as f64 / f64::from(OPENAI_RATE);
                let _ = out.send(Out::Event(json!({
                    "type": "conversation.item.input_audio_transcription.completed",
                    "event_id": event_id, "item_id": id, "content_index": 0,
                    "transcript": text, "usage": {"type": "duration", "seconds": seconds},
                })));
            }
            let _ = transcript_tx.send(Some(text));
        });
        self.items.push(Item {
            id: item_id,
            transcript: Some(transcript_rx),
            audio_sent: Arc::new(AtomicU64::new(0)),
        });
        true
    }

    fn create_response(&mut self, event_id: Option<&str>) {
        if self
            .response
            .as_ref()
            .is_some_and(|r| !r.task.is_finished())
        {
            return self.invalid(
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress. Wait until the response is finished before creating a new one.",
                None,
                event_id,
            );
        }
        let fault = self.shared.faults.take();
        match fault {
            Some(Fault::Stall) => return, // never answered
            Some(Fault::Status {
                kind,
                code,
                message,
                ..
            }) => return self.error(kind, code, message, None, event_id),
            _ => {}
        }
        let response_id = self.id("resp");
        let item_id = self.id("item");
        let transcript = self.items.iter().rev().find_map(|i| i.transcript.clone());
        let voice = self.session["audio"]["output"]["voice"].clone();
        self.emit(
            "response.created",
            json!({"response": {
                "id": response_id, "object": "realtime.response", "status": "in_progress",
                "status_details": null, "output": [], "output_modalities": ["audio"],
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": OPENAI_RATE}, "voice": voice}},
            }}),
        );
        let audio_sent = Arc::new(AtomicU64::new(0));
        self.items.push(Item {
            id: item_id.clone(),
            transcript: None,
            audio_sent: audio_sent.clone(),
        });
        let stream = ResponseStream {
            out: self.out.clone(),
            response_id: response_id.clone(),
            item_id: item_id.clone(),
            audio_sent: audio_sent.clone(),
            realtime: self.shared.realtime_pace.load(Ordering::Relaxed),
            fault,
            next_event: self.next_id * 1000,
        };
        let task = tokio::spawn(stream.run(transcript));
        self.response = Some(Running {
            id: response_id,
            item_id,
            task,
            audio_sent,
        });
    }

    fn cancel(&mut self, event: &Value, event_id: Option<&str>) {
        let active = self.response.as_ref().filter(|r| !r.task.is_finished());
        let matches = match event["response_id"].as_str() {
            None => active.is_some(),
            Some(id) => active.is_some_and(|r| r.id == id),
        };
        if !matches {
            return self.invalid(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                None,
                event_id,
            );
        }
        self.finish_cancelled("client_cancelled");
    }

    /// Stops the response being streamed and reports it `cancelled` for `reason`.
    fn finish_cancelled(&mut self, reason: &str) {
        let Some(running) = self.response.take() else {
            return;
        };
        if running.task.is_finished() {
            return;
        }
        running.task.abort();
        let heard = running.audio_sent.load(Ordering::Relaxed);
        self.emit(
            "response.done",
            json!({"response": {
                "id": running.id, "object": "realtime.response", "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": reason},
                "output": [{"id": running.item_id, "object": "realtime.item", "type": "message",
                            "role": "assistant", "status": "incomplete",
                            "content": [{"type": "output_audio", "transcript": null}]}],
                "usage": {"output_token_details": {"audio_tokens": heard / 480}},
            }}),
        );
    }

    fn abort_response(&mut self) {
        if let Some(running) = self.response.take() {
            running.task.abort();
        }
    }

    fn truncate(&mut self, event: &Value, event_id: Option<&str>) {
        let item_id = event["item_id"].as_str().unwrap_or_default().to_owned();
        let Some(audio_end_ms) = event["audio_end_ms"].as_u64() else {
            return self.invalid(
                "missing_required_parameter",
                "Missing required parameter: 'audio_end_ms'.",
                Some("audio_end_ms"),
                event_id,
            );
        };
        if event["content_index"] != 0 {
            return self.invalid(
                "invalid_value",
                "Invalid 'content_index': set it to 0.",
                Some("content_index"),
                event_id,
            );
        }
        let Some(item) = self
            .items
            .iter()
            .find(|i| i.id == item_id && i.transcript.is_none())
        else {
            return self.invalid(
                "invalid_value",
                &format!(
                    "Invalid 'item_id': no assistant message item '{item_id}' in the conversation."
                ),
                Some("item_id"),
                event_id,
            );
        };
        let audio_ms = item.audio_sent.load(Ordering::Relaxed) * 1000 / u64::from(OPENAI_RATE);
        if audio_end_ms > audio_ms {
            return self.invalid(
                "invalid_value",
                &format!("Audio content of {audio_ms}ms is already shorter than {audio_end_ms}ms"),
                Some("audio_end_ms"),
                event_id,
            );
        }
        self.emit(
            "conversation.item.truncated",
            json!({"item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms}),
        );
    }
}

/// Checks a `session` object of `session.update` like the API: `(code, message, param)` of the
/// first problem.
fn check_session(session: &Map<String, Value>) -> Result<(), (&'static str, String, String)> {
    let unknown = |path: &str| {
        (
            "unknown_parameter",
            format!("Unknown parameter: '{path}'."),
            path.to_owned(),
        )
    };
    let bad = |path: &str, message: String| ("invalid_value", message, path.to_owned());
    let keys = |object: &Map<String, Value>, path: &str, allowed: &[&str]| match object
        .keys()
        .find(|k| !allowed.contains(&k.as_str()))
    {
        Some(k) => Err(unknown(&format!("{path}.{k}"))),
        None => Ok(()),
    };
    keys(
        session,
        "session",
        &[
            "type",
            "model",
            "output_modalities",
            "instructions",
            "audio",
            "include",
            "max_output_tokens",
            "tool_choice",
            "tools",
            "tracing",
            "truncation",
            "prompt",
        ],
    )?;
    if session.get("type").and_then(Value::as_str) != Some("realtime") {
        return Err((
            "missing_required_parameter",
            "Missing required parameter: 'session.type' (\"realtime\").".to_owned(),
            "session.type".to_owned(),
        ));
    }
    if let Some(modalities) = session.get("output_modalities") {
        if modalities != &json!(["audio"]) && modalities != &json!(["text"]) {
            return Err(bad(
                "session.output_modalities",
                format!(
                    "Invalid 'session.output_modalities': {modalities}. Use [\"audio\"] or [\"text\"]."
                ),
            ));
        }
    }
    let Some(audio) = session.get("audio") else {
        return Ok(());
    };
    let audio = audio
        .as_object()
        .ok_or_else(|| bad("session.audio", "Invalid type for 'session.audio'.".into()))?;
    keys(audio, "session.audio", &["input", "output"])?;
    let format_ok = |format: Option<&Value>, path: &str| match format {
        None => Ok(()),
        Some(f) if f == &json!({"type": "audio/pcm", "rate": OPENAI_RATE}) => Ok(()),
        Some(f) => Err(bad(
            path,
            format!(
                "Invalid '{path}': {f}. This local server serves {{\"type\": \"audio/pcm\", \"rate\": 24000}}."
            ),
        )),
    };
    if let Some(input) = audio.get("input").and_then(Value::as_object) {
        keys(
            input,
            "session.audio.input",
            &[
                "format",
                "transcription",
                "noise_reduction",
                "turn_detection",
            ],
        )?;
        format_ok(input.get("format"), "session.audio.input.format")?;
        if let Some(transcription) = input.get("transcription").filter(|t| !t.is_null()) {
            let t = transcription.as_object().ok_or_else(|| {
                bad(
                    "session.audio.input.transcription",
                    "Invalid type for 'session.audio.input.transcription'.".into(),
                )
            })?;
            keys(
                t,
                "session.audio.input.transcription",
                &["model", "language", "prompt"],
            )?;
        }
        if let Some(detection) = input.get("turn_detection").filter(|t| !t.is_null()) {
            let d = detection.as_object().ok_or_else(|| {
                bad(
                    "session.audio.input.turn_detection",
                    "Invalid type for 'session.audio.input.turn_detection'.".into(),
                )
            })?;
            keys(
                d,
                "session.audio.input.turn_detection",
                &[
                    "type",
                    "threshold",
                    "prefix_padding_ms",
                    "silence_duration_ms",
                    "idle_timeout_ms",
                    "create_response",
                    "interrupt_response",
                ],
            )?;
            if d.get("type").and_then(Value::as_str) != Some("server_vad") {
                return Err(bad(
                    "session.audio.input.turn_detection.type",
                    "This local server serves turn_detection type 'server_vad' (or null).".into(),
                ));
            }
        }
    }
    if let Some(output) = audio.get("output").and_then(Value::as_object) {
        keys(
            output,
            "session.audio.output",
            &["format", "voice", "speed"],
        )?;
        format_ok(output.get("format"), "session.audio.output.format")?;
        if let Some(voice) = output.get("voice") {
            if !voice.as_str().is_some_and(|v| REALTIME_VOICES.contains(&v)) {
                return Err(bad(
                    "session.audio.output.voice",
                    format!(
                        "Invalid value: {voice}. Supported values are: {}.",
                        REALTIME_VOICES.map(|v| format!("'{v}'")).join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Sets every field of `update` in `target`, recursing into objects (`session.update` semantics).
fn merge(target: &mut Value, update: &Value) {
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

/// Streams one response: the reply to the last user item, spoken.
struct ResponseStream {
    out: mpsc::UnboundedSender<Out>,
    response_id: String,
    item_id: String,
    audio_sent: Arc<AtomicU64>,
    realtime: bool,
    fault: Option<Fault>,
    next_event: u64,
}

impl ResponseStream {
    fn emit(&mut self, kind: &str, fields: Value) {
        self.next_event += 1;
        let mut event = json!({"type": kind, "event_id": format!("event_r{}", self.next_event)});
        if let (Some(event), Value::Object(fields)) = (event.as_object_mut(), fields) {
            event.extend(fields);
        }
        let _ = self.out.send(Out::Event(event));
    }

    async fn run(mut self, transcript: Option<watch::Receiver<Option<String>>>) {
        let heard = match transcript {
            Some(mut rx) => rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|t| t.clone())
                .unwrap_or_default(),
            None => String::new(),
        };
        let reply = if heard.is_empty() {
            "I did not hear anything.".to_owned()
        } else {
            format!("You said: {}.", heard.trim_end_matches(['.', '!', '?']))
        };
        if self.fault == Some(Fault::Malformed) {
            let _ = self.out.send(Out::Raw(
                "{\"type\": \"response.output_audio.delta\", \"delta\": ".into(),
            ));
        }
        let (response_id, item_id) = (self.response_id.clone(), self.item_id.clone());
        let ids = json!({"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0});
        let with_ids = |fields: Value| {
            let mut all = ids.clone();
            if let (Some(all), Value::Object(fields)) = (all.as_object_mut(), fields) {
                all.extend(fields);
            }
            all
        };
        self.emit(
            "response.output_item.added",
            json!({"response_id": response_id, "output_index": 0, "item": {
                "id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "in_progress", "content": [],
            }}),
        );
        self.emit(
            "response.content_part.added",
            with_ids(json!({"part": {"type": "audio", "transcript": ""}})),
        );
        let audio = speak(&reply, 175).await;
        let deltas: Vec<&[i16]> = audio.chunks(DELTA_SAMPLES).collect();
        let words: Vec<&str> = reply.split_inclusive(' ').collect();
        let mut words_sent = 0;
        for (i, delta) in deltas.iter().enumerate() {
            if self.fault == Some(Fault::DropMidStream) && i == deltas.len() / 2 {
                let _ = self.out.send(Out::Drop);
                return;
            }
            // The transcript keeps pace with the audio.
            let due = (i + 1) * words.len() / deltas.len();
            while words_sent < due {
                self.emit(
                    "response.output_audio_transcript.delta",
                    with_ids(json!({"delta": words[words_sent]})),
                );
                words_sent += 1;
            }
            self.emit(
                "response.output_audio.delta",
                with_ids(json!({"delta": BASE64.encode(le_bytes(delta))})),
            );
            self.audio_sent
                .fetch_add(delta.len() as u64, Ordering::Relaxed);
            if self.realtime {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        while words_sent < words.len() {
            self.emit(
                "response.output_audio_transcript.delta",
                with_ids(json!({"delta": words[words_sent]})),
            );
            words_sent += 1;
        }
        self.emit("response.output_audio.done", with_ids(json!({})));
        self.emit(
            "response.output_audio_transcript.done",
            with_ids(json!({"transcript": reply})),
        );
        let part = json!({"type": "output_audio", "transcript": reply});
        self.emit(
            "response.content_part.done",
            with_ids(json!({"part": part})),
        );
        let item = json!({
            "id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
            "status": "completed", "content": [part],
        });
        self.emit(
            "response.output_item.done",
            json!({"response_id": response_id, "output_index": 0, "item": item}),
        );
        self.emit(
            "response.done",
            json!({"response": {
                "id": response_id, "object": "realtime.response", "status": "completed",
                "status_details": null, "output": [item], "output_modalities": ["audio"],
            }}),
        );
    }
}
