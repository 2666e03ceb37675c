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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::openai_engines::{
    Fault, Faults, OPENAI_RATE, error_body, le_bytes, redacted_key, speak, transcribe, whisper,
};
use super::ws_server::ServerThread;

/// The voices OpenAI documents for `/v1/audio/speech`.
pub const SPEECH_VOICES: [&str; 13] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
    "marin", "cedar",
];
/// The transcription models this server accepts.
pub const TRANSCRIPTION_MODELS: [&str; 4] = [
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-transcribe",
];
/// The speech models this server accepts.
pub const SPEECH_MODELS: [&str; 3] = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"];
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

    /// The requests so far to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<HttpRequestRecord> {
        let all = self.requests();
        all.into_iter().filter(|r| r.path == path).collect()
    }
}

/// A parsed HTTP request.
struct HttpRequest {
    method: String,
    path: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a handler left the connection.
enum Next {
    KeepAlive,
    Close,
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

/// Reads one request; `None` at a clean end of the connection.
async fn read_request(stream: &mut BufReader<TcpStream>) -> std::io::Result<Option<HttpRequest>> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let (Some(method), Some(path)) = (words.next(), words.next()) else {
        return Err(std::io::Error::other(format!("bad request line {line:?}")));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let mut request = HttpRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let size_text = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                loop {
                    line.clear();
                    stream.read_line(&mut line).await?;
                    if line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = request.body.len();
            request.body.resize(start + size, 0);
            stream.read_exact(&mut request.body[start..]).await?;
            let mut crlf = [0u8; 2];
            stream.read_exact(&mut crlf).await?;
        }
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| std::io::Error::other("bad Content-Length"))?;
        request.body.resize(length, 0);
        stream.read_exact(&mut request.body).await?;
    }
    Ok(Some(request))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes a whole answer with `Content-Length`.
async fn respond(
    stream: &mut BufReader<TcpStream>,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<Next> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        reason(status),
        body.len()
    );
    let stream = stream.get_mut();
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    Ok(Next::KeepAlive)
}

async fn respond_json(
    stream: &mut BufReader<TcpStream>,
    status: u16,
    body: &Value,
) -> std::io::Result<Next> {
    respond(
        stream,
        status,
        "application/json",
        body.to_string().as_bytes(),
    )
    .await
}

/// Starts a chunked answer.
async fn start_chunked(
    stream: &mut BufReader<TcpStream>,
    content_type: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.get_mut().write_all(head.as_bytes()).await
}

/// Writes one piece of a chunked answer; an empty piece ends it.
async fn write_chunk(stream: &mut BufReader<TcpStream>, piece: &[u8]) -> std::io::Result<()> {
    let stream = stream.get_mut();
    stream
        .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
        .await?;
    stream.write_all(piece).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

/// A 400 with OpenAI's `invalid_request_error`.
fn invalid(message: &str, param: Option<&str>) -> (u16, Value) {
    (
        400,
        error_body(message, "invalid_request_error", param, None),
    )
}

async fn handle(
    shared: &Shared,
    stream: &mut BufReader<TcpStream>,
    request: HttpRequest,
) -> std::io::Result<Next> {
    shared.arrived.fetch_add(1, Ordering::SeqCst);
    let mut record = HttpRequestRecord {
        path: request.path.clone(),
        authorized: false,
        fields: BTreeMap::new(),
        file: None,
        json: None,
        status: 0,
        text: String::new(),
        audio_bytes: 0,
        fault: None,
    };
    let outcome = answer(shared, stream, &request, &mut record).await;
    shared.requests.lock().unwrap().push(record);
    outcome
}

async fn answer(
    shared: &Shared,
    stream: &mut BufReader<TcpStream>,
    request: &HttpRequest,
    record: &mut HttpRequestRecord,
) -> std::io::Result<Next> {
    // The key first, as OpenAI does.
    let auth = request.header("authorization");
    let refused = match auth.and_then(|a| a.strip_prefix("Bearer ")) {
        None => Some(error_body(
            "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or \
             as the password field (with blank username) if you're accessing the API from your \
             browser and are prompted for a username. You can obtain an API key from \
             https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        )),
        Some(key) if key != shared.api_key => Some(error_body(
            &format!(
                "Incorrect API key provided: {}. You can find your API key at \
                 https://platform.openai.com/account/api-keys.",
                redacted_key(key)
            ),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )),
        Some(_) => None,
    };
    if let Some(body) = refused {
        record.status = 401;
        return respond_json(stream, 401, &body).await;
    }
    record.authorized = true;
    let (status, body) = match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/v1/audio/transcriptions") => match parse_transcription(request, record) {
            Ok(form) => return transcription(shared, stream, form, record).await,
            Err(error) => error,
        },
        ("POST", "/v1/audio/speech") => match parse_speech(request, record) {
            Ok(speech) => return speech_answer(shared, stream, speech, record).await,
            Err(error) => error,
        },
        (_, "/v1/audio/transcriptions" | "/v1/audio/speech") => (
            405,
            error_body(
                &format!(
                    "Invalid method for URL ({} {})",
                    request.method, request.path
                ),
                "invalid_request_error",
                None,
                None,
            ),
        ),
        _ => (
            404,
            error_body(
                &format!("Invalid URL ({} {})", request.method, request.path),
                "invalid_request_error",
                None,
                None,
            ),
        ),
    };
    record.status = status;
    respond_json(stream, status, &body).await
}

/// Applies an injected fault that needs no real answer; `None` to go on answering.
async fn early_fault(
    shared: &Shared,
    stream: &mut BufReader<TcpStream>,
    record: &mut HttpRequestRecord,
) -> Option<std::io::Result<Next>> {
    let fault = shared.faults.take()?;
    record.fault = Some(fault.clone());
    match fault {
        Fault::Stall => {
            shared.stalled.fetch_add(1, Ordering::SeqCst);
            Some(std::future::pending().await) // ended by the server's stop
        }
        Fault::Status {
            status,
            kind,
            code,
            message,
        } => {
            record.status = status;
            let body = error_body(message, kind, None, code);
            Some(respond_json(stream, status, &body).await)
        }
        Fault::Malformed | Fault::DropMidStream => None,
    }
}

struct TranscriptionForm {
    pcm: Vec<i16>,
    rate: u32,
    response_format: String,
    stream: bool,
}

/// Parses and checks a transcription request like the API does.
fn parse_transcription(
    request: &HttpRequest,
    record: &mut HttpRequestRecord,
) -> Result<TranscriptionForm, (u16, Value)> {
    let content_type = request.header("content-type").unwrap_or_default();
    let boundary = content_type
        .strip_prefix("multipart/form-data")
        .and_then(|rest| {
            rest.split(';')
                .find_map(|p| p.trim().strip_prefix("boundary="))
        })
        .map(|b| b.trim_matches('"').to_owned())
        .ok_or_else(|| {
            invalid(
                &format!(
                    "Invalid Content-Type header ({content_type}), expected multipart/form-data."
                ),
                None,
            )
        })?;
    let parts = parse_multipart(&request.body, &boundary)
        .ok_or_else(|| invalid("Could not parse multipart form", None))?;
    let mut file = None;
    for part in parts {
        match (part.name.as_str(), part.file_name) {
            ("file", Some(file_name)) => file = Some((file_name, part.content_type, part.data)),
            (
                name @ ("model" | "language" | "prompt" | "response_format" | "temperature"
                | "stream"),
                None,
            ) => {
                let value = String::from_utf8(part.data)
                    .map_err(|_| invalid(&format!("Invalid value for '{name}'."), Some(name)))?;
                record.fields.insert(name.to_owned(), value);
            }
            (name, _) => {
                return Err(invalid(
                    &format!("Unrecognized request argument supplied: {name}"),
                    None,
                ));
            }
        }
    }
    let Some((file_name, file_type, data)) = file else {
        return Err(invalid(
            "1 validation error for Request\nbody -> file\n  field required",
            Some("file"),
        ));
    };
    let Some(model) = record.fields.get("model").cloned() else {
        return Err(invalid("you must provide a model parameter", Some("model")));
    };
    if !TRANSCRIPTION_MODELS.contains(&model.as_str()) {
        return Err((
            404,
            error_body(
                &format!("The model `{model}` does not exist or you do not have access to it."),
                "invalid_request_error",
                None,
                Some("model_not_found"),
            ),
        ));
    }
    if let Some(language) = record.fields.get("language") {
        if language.len() != 2 || !language.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(invalid(
                &format!(
                    "Invalid language '{language}'. Language parameter must be specified in ISO-639-1 format."
                ),
                Some("language"),
            ));
        }
    }
    let response_format = record
        .fields
        .get("response_format")
        .cloned()
        .unwrap_or_else(|| "json".to_owned());
    if !["json", "text"].contains(&response_format.as_str()) {
        return Err(invalid(
            &format!(
                "This local server answers response_format json or text, not '{response_format}'."
            ),
            Some("response_format"),
        ));
    }
    let stream = match record.fields.get("stream").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(invalid(
                &format!("Invalid value for 'stream': '{other}' is not a boolean."),
                Some("stream"),
            ));
        }
    };
    let unsupported = || {
        invalid(
            "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', \
             'mpga', 'oga', 'ogg', 'wav', 'webm']",
            None,
        )
    };
    let reader = hound::WavReader::new(std::io::Cursor::new(data)).map_err(|_| unsupported())?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(unsupported());
    }
    let interleaved: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|_| unsupported())?;
    let channels = usize::from(spec.channels.max(1));
    let pcm: Vec<i16> = interleaved
        .chunks(channels)
        .map(|frame| (frame.iter().map(|&s| i32::from(s)).sum::<i32>() / frame.len() as i32) as i16)
        .collect();
    record.file = Some(UploadedWav {
        file_name,
        content_type: file_type,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        bits_per_sample: spec.bits_per_sample,
        samples: pcm.len(),
    });
    Ok(TranscriptionForm {
        pcm,
        rate: spec.sample_rate,
        stream: stream && model.starts_with("gpt-4o"),
        response_format,
    })
}

async fn transcription(
    shared: &Shared,
    stream: &mut BufReader<TcpStream>,
    form: TranscriptionForm,
    record: &mut HttpRequestRecord,
) -> std::io::Result<Next> {
    if let Some(done) = early_fault(shared, stream, record).await {
        return done;
    }
    let text = transcribe(&form.pcm, form.rate).await;
    record.text = text.clone();
    record.status = 200;
    match record.fault {
        Some(Fault::Malformed) => {
            return respond_json(stream, 200, &json!({"result": text})).await;
        }
        Some(Fault::DropMidStream) => {
            let body = json!({"text": text}).to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let stream = stream.get_mut();
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body.as_bytes()[..body.len() / 2]).await?;
            stream.flush().await?;
            return Ok(Next::Close);
        }
        _ => {}
    }
    if form.stream {
        start_chunked(stream, "text/event-stream").await?;
        for word in text.split_inclusive(' ') {
            let event = json!({"type": "transcript.text.delta", "delta": word});
            write_chunk(stream, format!("data: {event}\n\n").as_bytes()).await?;
        }
        let done = json!({"type": "transcript.text.done", "text": text});
        write_chunk(stream, format!("data: {done}\n\n").as_bytes()).await?;
        write_chunk(stream, b"").await?;
        return Ok(Next::KeepAlive);
    }
    if form.response_format == "text" {
        return respond(stream, 200, "text/plain; charset=utf-8", text.as_bytes()).await;
    }
    respond_json(stream, 200, &json!({"text": text})).await
}

struct SpeechForm {
    input: String,
    speed: f64,
    wav: bool,
}

/// Parses and checks a speech request like the API does.
fn parse_speech(
    request: &HttpRequest,
    record: &mut HttpRequestRecord,
) -> Result<SpeechForm, (u16, Value)> {
    let body: Value = serde_json::from_slice(&request.body).map_err(|e| {
        invalid(
            &format!("We could not parse the JSON body of your request. ({e})"),
            None,
        )
    })?;
    record.json = Some(body.clone());
    let Some(object) = body.as_object() else {
        return Err(invalid("The request body must be a JSON object.", None));
    };
    const FIELDS: [&str; 7] = [
        "model",
        "input",
        "voice",
        "response_format",
        "speed",
        "instructions",
        "stream_format",
    ];
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            &format!("Unrecognized request argument supplied: {unknown}"),
            None,
        ));
    }
    let text = |name: &str| -> Result<Option<&str>, (u16, Value)> {
        match object.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(invalid(
                &format!("Invalid type for '{name}': expected a string, but got {other} instead."),
                Some(name),
            )),
        }
    };
    let missing = |name: &str| {
        invalid(
            &format!("Missing required parameter: '{name}'."),
            Some(name),
        )
    };
    let model = text("model")?.ok_or_else(|| missing("model"))?;
    let input = text("input")?.ok_or_else(|| missing("input"))?;
    let voice = text("voice")?.ok_or_else(|| missing("voice"))?;
    if !SPEECH_MODELS.contains(&model) {
        return Err((
            404,
            error_body(
                &format!("The model `{model}` does not exist or you do not have access to it."),
                "invalid_request_error",
                None,
                Some("model_not_found"),
            ),
        ));
    }
    if input.chars().count() > 4096 {
        return Err(invalid(
            "Input is too long: the maximum length is 4096 characters.",
            Some("input"),
        ));
    }
    if !SPEECH_VOICES.contains(&voice) {
        return Err(invalid(
            &format!(
                "Invalid value: '{voice}'. Supported values are: {}.",
                SPEECH_VOICES.map(|v| format!("'{v}'")).join(", ")
            ),
            Some("voice"),
        ));
    }
    let format = text("response_format")?.unwrap_or("mp3");
    if !["pcm", "wav"].contains(&format) {
        return Err(invalid(
            &format!("This local server produces response_format pcm or wav, not '{format}'."),
            Some("response_format"),
        ));
    }
    if text("stream_format")?.is_some_and(|f| f != "audio") {
        return Err(invalid(
            "This local server streams stream_format 'audio' only.",
            Some("stream_format"),
        ));
    }
    text("instructions")?;
    let speed = match object.get("speed") {
        None => 1.0,
        Some(v) => match v.as_f64() {
            Some(s) if (0.25..=4.0).contains(&s) => s,
            _ => {
                return Err(invalid(
                    &format!("Invalid 'speed': {v}. Expected a number from 0.25 to 4.0."),
                    Some("speed"),
                ));
            }
        },
    };
    Ok(SpeechForm {
        input: input.to_owned(),
        speed,
        wav: format == "wav",
    })
}

async fn speech_answer(
    shared: &Shared,
    stream: &mut BufReader<TcpStream>,
    form: SpeechForm,
    record: &mut HttpRequestRecord,
) -> std::io::Result<Next> {
    if let Some(done) = early_fault(shared, stream, record).await {
        return done;
    }
    record.text = form.input.clone();
    record.status = 200;
    if record.fault == Some(Fault::Malformed) {
        return respond_json(stream, 200, &json!({"audio": form.input})).await;
    }
    let pcm = speak(&form.input, (175.0 * form.speed).round() as u32).await;
    let mut body = le_bytes(&pcm);
    record.audio_bytes = body.len();
    if form.wav {
        body.splice(0..0, wav_header(body.len()));
    }
    let content_type = if form.wav { "audio/wav" } else { "audio/pcm" };
    start_chunked(stream, content_type).await?;
    let pieces: Vec<&[u8]> = body.chunks(SPEECH_PIECE).collect();
    let drop_at = (record.fault == Some(Fault::DropMidStream)).then_some(pieces.len() / 2);
    for (i, piece) in pieces.iter().enumerate() {
        if drop_at == Some(i) {
            return Ok(Next::Close); // no terminating piece: the body is cut short
        }
        write_chunk(stream, piece).await?;
    }
    write_chunk(stream, b"").await?;
    Ok(Next::KeepAlive)
}

/// A 44-byte WAV header for `data_len` bytes of 24 kHz 16-bit mono PCM.
fn wav_header(data_len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(44);
    let data_len = data_len as u32;
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&OPENAI_RATE.to_le_bytes());
    h.extend_from_slice(&(OPENAI_RATE * 2).to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// One part of a multipart body.
struct Part {
    name: String,
    file_name: Option<String>,
    content_type: String,
    data: Vec<u8>,
}

/// Splits a `multipart/form-data` body (RFC 7578); `None` when it is not well formed.
fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let find = |haystack: &[u8], from: usize, needle: &[u8]| {
        haystack[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut pos = find(body, 0, delimiter.as_bytes())? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Some(parts); // the closing delimiter
        }
        pos += 2; // CRLF after the delimiter
        let headers_end = find(body, pos, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&body[pos..headers_end]).ok()?;
        let data_start = headers_end + 4;
        let next = find(body, data_start, format!("\r\n{delimiter}").as_bytes())?;
        let mut part = Part {
            name: String::new(),
            file_name: None,
            content_type: "text/plain".to_owned(),
            data: body[data_start..next].to_vec(),
        };
        for header in headers.split("\r\n") {
            let (name, value) = header.split_once(':')?;
            match name.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for param in value.split(';').skip(1) {
                        let (key, v) = param.trim().split_once('=')?;
                        let v = v.trim_matches('"').to_owned();
                        match key {
                            "name" => part.name = v,
                            "filename" => part.file_name = Some(v),
                            _ => {}
                        }
                    }
                }
                "content-type" => part.content_type = value.trim().to_owned(),
                _ => {}
            }
        }
        if part.name.is_empty() {
            return None;
        }
        parts.push(part);
        pos = next + 2 + delimiter.len();
    }
}
