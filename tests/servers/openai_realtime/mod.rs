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
//!
//! The server in modules: [`handshake`] admits connections, [`conversation`] is one connection's
//! session (client events, the input audio buffer and its VAD, items, responses), [`schema`]
//! checks `session.update` like the API, [`response`] streams one spoken response.

mod conversation;
mod handshake;
mod response;
mod schema;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use super::openai_engines::{Fault, Faults, whisper};
use super::ws_server::ServerThread;
use conversation::Connection;

struct Shared {
    api_key: String,
    faults: Faults,
    events: Mutex<Vec<Value>>,
    connections: AtomicUsize,
    refused: AtomicUsize,
    /// The HTTP status of each handshake refused with one, in order.
    refusals: Mutex<Vec<u16>>,
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
            refusals: Mutex::new(Vec::new()),
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

    /// The HTTP status of each handshake refused so far, in order.
    pub fn refusals(&self) -> Vec<u16> {
        self.shared.refusals.lock().unwrap().clone()
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

async fn serve_connection(shared: Arc<Shared>, tcp: TcpStream) {
    let mut model = String::new();
    // The error type is tungstenite's handshake callback's.
    #[allow(clippy::result_large_err)]
    let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        model = handshake::check(request, &shared.api_key).inspect_err(|refusal| {
            let status = refusal.status().as_u16();
            shared.refusals.lock().unwrap().push(status);
        })?;
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
