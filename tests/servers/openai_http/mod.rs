//! A local OpenAI-protocol HTTP server for the tests: a small HTTP/1.1 server (keep-alive,
//! `Content-Length` or chunked request bodies) that speaks OpenAI's audio API as its API
//! reference documents it (read in the generated types of the official `openai-python` SDK:
//! `types/audio/transcription_create_params.py`, `transcription.py`,
//! `transcription_text_delta_event.py`, `transcription_text_done_event.py`,
//! `speech_create_params.py`; the error object as `_client.py` reads it):
//!
//! - `POST /v1/audio/transcriptions`, `multipart/form-data` (`file`, `model`, `language`,
//!   `prompt`, `response_format` `json` or `text`, `temperature`, `stream`): the file (WAV) is
//!   transcribed by voicebackend's `whisper` provider and answered as `{"text": …}`, or, with
//!   `stream=true` and a `gpt-4o*` model, as server-sent `transcript.text.delta` events (one per
//!   word) and `transcript.text.done`.
//! - `POST /v1/audio/speech`, JSON (`model`, `input`, `voice`, `response_format` `pcm` or `wav`,
//!   `speed`, `instructions`, `stream_format` `audio`): the input is spoken by voicebackend's
//!   `espeak` provider at 24 kHz and streamed as a chunked body of 16-bit little-endian PCM in
//!   pieces of an odd number of bytes, so that samples straddle pieces.
//! - Every request needs `Authorization: Bearer <key>`; a wrong or missing key is a 401 with
//!   OpenAI's messages. Invalid requests get a 400 with OpenAI's error object
//!   (`{"error": {"message", "type", "param", "code"}}`), unknown paths a 404.
//!
//! What this server leaves out of the real API (the clients under test do not use it): formats
//! other than WAV in, and `pcm`/`wav` out; `verbose_json`, `srt`, `vtt`; `sse` speech streams.
//! Tests inject faults ([`Fault`]) and read what was asked ([`OpenAiHttpServer::requests`]).
//!
//! The server in modules: [`http`] reads requests and writes answers (HTTP/1.1, multipart),
//! [`routing`] checks the key, routes and applies the injected faults, [`transcriptions`] and
//! [`speech`] are the two endpoints.

mod http;
mod routing;
mod speech;
mod transcriptions;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::openai_engines::{Fault, Faults, whisper};
use super::ws_server::ServerThread;
use http::{Next, read_request};
use routing::handle;

/// Bytes per piece of a streamed speech body (odd on purpose).
pub const SPEECH_PIECE: usize = 4801;

/// An uploaded file, as the server decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedWav {
    /// The part's `filename`.
    pub file_name: String,
    /// The part's `Content-Type`.
    pub content_type: String,
    /// The WAV header's rate.
    pub sample_rate: u32,
    /// The WAV header's channel count.
    pub channels: u16,
    /// The WAV header's sample size.
    pub bits_per_sample: u16,
    /// Samples per channel.
    pub samples: usize,
}

/// One request the server received and what it answered.
#[derive(Debug, Clone)]
pub struct HttpRequestRecord {
    /// The request path, e.g. `/v1/audio/speech`.
    pub path: String,
    /// Whether it carried the right key.
    pub authorized: bool,
    /// The text fields of a multipart body.
    pub fields: BTreeMap<String, String>,
    /// The file of a multipart body.
    pub file: Option<UploadedWav>,
    /// A JSON body.
    pub json: Option<Value>,
    /// The answer's status; 0 when it was stalled.
    pub status: u16,
    /// The transcript answered, or the text spoken.
    pub text: String,
    /// Bytes of audio in the answer (the whole synthesis, also when the answer was cut).
    pub audio_bytes: usize,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
}

struct Shared {
    api_key: String,
    faults: Faults,
    requests: Mutex<Vec<HttpRequestRecord>>,
    /// Requests received so far, and those held by [`Fault::Stall`] (never recorded): a request
    /// is recorded once its answer is written, so a client can hold the answer a moment before
    /// the record exists.
    arrived: AtomicUsize,
    stalled: AtomicUsize,
}

/// The local OpenAI-protocol HTTP server; stops when dropped.
pub struct OpenAiHttpServer {
    shared: Arc<Shared>,
    thread: ServerThread,
}

impl OpenAiHttpServer {
    /// Starts a server on 127.0.0.1 that accepts `api_key`, once Whisper is loaded.
    pub fn start(api_key: &str) -> OpenAiHttpServer {
        whisper();
        let shared = Arc::new(Shared {
            api_key: api_key.to_owned(),
            faults: Faults::default(),
            requests: Mutex::new(Vec::new()),
            arrived: AtomicUsize::new(0),
            stalled: AtomicUsize::new(0),
        });
        let state = shared.clone();
        let thread = ServerThread::start("openai-http", move |stream| {
            serve_connection(state.clone(), stream)
        });
        OpenAiHttpServer { shared, thread }
    }

    /// `http://127.0.0.1:<port>`: the `base_url` to give the client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.thread.addr())
    }

    /// The next `times` requests get `fault`.
    pub fn fail_next(&self, fault: Fault, times: usize) {
        self.shared.faults.fail_next(fault, times);
    }

    /// Every request gets `fault` until [`OpenAiHttpServer::clear_faults`].
    pub fn fail_all(&self, fault: Fault) {
        self.shared.faults.fail_all(fault);
    }

    /// Normal answers from now on.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Every request so far, in order, once each one that is not stalled has been answered.
    pub fn requests(&self) -> Vec<HttpRequestRecord> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let requests = self.shared.requests.lock().unwrap().clone();
            let settled = requests.len() + self.shared.stalled.load(Ordering::SeqCst);
            if settled >= self.shared.arrived.load(Ordering::SeqCst) || Instant::now() > deadline {
                return requests;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Requests held by [`Fault::Stall`] so far (they are never answered, nor recorded).
    pub fn stalled(&self) -> usize {
        self.shared.stalled.load(Ordering::SeqCst)
    }

    /// The requests so far to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<HttpRequestRecord> {
        let all = self.requests();
        all.into_iter().filter(|r| r.path == path).collect()
    }
}

/// Serves one client connection until it closes (or the server stops, which drops the task).
async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let mut stream = BufReader::new(stream);
    loop {
        let Ok(Some(request)) = read_request(&mut stream).await else {
            return;
        };
        let next = handle(&shared, &mut stream, request).await;
        if matches!(next, Ok(Next::Close) | Err(_)) {
            return;
        }
    }
}
