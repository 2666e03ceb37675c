//! `openai`: speech to text and text to speech over OpenAI's HTTP audio API, or over any
//! self-hosted server that speaks it (set `base_url`). Both run on the backend's I/O runtime.
//!
//! Wire formats, as OpenAI's API reference documents them (read in the generated types of the
//! official `openai-python` SDK: `types/audio/transcription_create_params.py`,
//! `transcription.py`, `transcription_text_delta_event.py`, `transcription_text_done_event.py`,
//! `speech_create_params.py`, and the status handling of `_client.py`):
//!
//! - **Transcription**: `POST {base_url}/v1/audio/transcriptions`, `multipart/form-data` with the
//!   fields `file` (here a WAV file, 16-bit mono at the session's internal rate), `model`,
//!   `response_format` (`json`), and optionally `language`, `prompt` and `stream`. The answer is
//!   `{"text": "…"}`; with `stream=true` (honoured by the `gpt-4o-*transcribe` models, ignored by
//!   `whisper-1`) it is a server-sent event stream of `transcript.text.delta` (`delta`) events
//!   ending with `transcript.text.done` (`text`). The answer's `Content-Type` says which came.
//! - **Speech**: `POST {base_url}/v1/audio/speech` with the JSON body `{model, input, voice,
//!   response_format: "pcm", speed?, instructions?}`. The answer is a chunked body of raw PCM:
//!   24 kHz, 16-bit, mono, little-endian.
//! - **Errors**: an HTTP status with `{"error": {"message", "type", "param", "code"}}`.
//!
//! Both authenticate with `Authorization: Bearer <key>`. `base_url` is the server's root
//! (`https://api.openai.com` by default; a trailing `/v1`, as OpenAI's SDKs write it, is
//! accepted). Failures follow [`crate::provider::net`]'s rules: a refused key (401/403) is
//! `VB_ERR_UNAUTHORIZED` and is not retried; 429 (except `insufficient_quota`), 5xx, a connection
//! that cannot be made or breaks mid-answer (`VB_ERR_CONNECTION_FAILED`) and a server that does
//! not answer in time (`VB_ERR_TIMEOUT`, `timeout_ms` for the answer and again for each piece of
//! a streamed body) are retried per the backend's `retry` rules; any other answer is
//! `VB_ERR_PROVIDER` with the server's message. Messages never contain the key.
//!
//! STT: each user turn's audio is collected as the user speaks and posted once the turn ends.
//! TTS: the reply is split into sentences as the agent streams it and each sentence is one
//! request whose PCM is forwarded piece by piece as it arrives; sentences are requested one after
//! another (the reply ring, two seconds by default, hides the next request's latency). A stream
//! that breaks mid-sentence is requested again and resumes after the audio already forwarded.
//! Dropping the synthesize future (barge-in) drops the request, which closes its connection.
//!
//! `stt_config` (strict): `api_key` (else `OPENAI_API_KEY`), `base_url`, `model` (default
//! `whisper-1`), `language` (ISO-639-1, optional), `prompt` (optional), `stream` (default false),
//! `timeout_ms` (100–600000, default 10000).
//!
//! `tts_config` (strict): `api_key` (else `OPENAI_API_KEY`), `base_url`, `model` (default
//! `gpt-4o-mini-tts`), `voice` (default `alloy`), `speed` (0.25–4.0, optional), `instructions`
//! (optional; not for `tts-1`), `timeout_ms` (100–600000, default 10000).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::net::{DEFAULT_TIMEOUT_MS, api_key, redact_url, with_retry};
use super::stt::{SttProvider, SttSink, SttTurn};
use super::tts::{SentenceSplitter, TtsProvider, TtsRequest};
use super::{BoxFuture, ProviderSetup};
use crate::config::{RetryConfig, Secret, check_range, parse_section};
use crate::error::{Error, Result, VbStatus};

/// The registry name of both providers.
pub const NAME: &str = "openai";
/// The environment variable a key is taken from when the config has none.
pub const KEY_ENV: &str = "OPENAI_API_KEY";
/// The default `base_url` (HTTP) of the OpenAI API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";
/// The rate of the `pcm` speech format.
pub const SPEECH_RATE: u32 = 24_000;

const STT_KEYS: [&str; 7] = [
    "api_key",
    "base_url",
    "model",
    "language",
    "prompt",
    "stream",
    "timeout_ms",
];
const TTS_KEYS: [&str; 7] = [
    "api_key",
    "base_url",
    "model",
    "voice",
    "speed",
    "instructions",
    "timeout_ms",
];

/// Settings of the `openai` STT provider (`stt_config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct SttSettings {
    api_key: Option<Secret>,
    base_url: Option<String>,
    model: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
    stream: bool,
    timeout_ms: Option<u32>,
}

/// Settings of the `openai` TTS provider (`tts_config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct TtsSettings {
    api_key: Option<Secret>,
    base_url: Option<String>,
    model: Option<String>,
    voice: Option<String>,
    speed: Option<f64>,
    instructions: Option<String>,
    timeout_ms: Option<u32>,
}

/// The registry factory of the STT provider: validates `stt_config` (a missing key is
/// `VB_ERR_INVALID_CONFIG`).
pub fn create_stt(setup: &ProviderSetup) -> Result<Arc<dyn SttProvider>> {
    Ok(Arc::new(OpenAiStt::new(setup)?))
}

/// The registry factory of the TTS provider: validates `tts_config`.
pub fn create_tts(setup: &ProviderSetup) -> Result<Arc<dyn TtsProvider>> {
    Ok(Arc::new(OpenAiTts::new(setup)?))
}

/// One endpoint of the API with everything a request to it needs: the HTTP client (one per
/// provider, its connections pooled), the key, the deadline and the retry rules. Shared by the
/// STT and TTS providers; runs on the I/O runtime.
struct Endpoint {
    client: Client,
    url: Url,
    /// `url` as shown in messages.
    shown: String,
    key: Secret,
    timeout: Duration,
    retry: RetryConfig,
}

impl Endpoint {
    /// Validates the settings common to both providers and builds the endpoint `path` (below
    /// `/v1/`) of `base_url`.
    fn new(
        section: &str,
        api_key_setting: Option<&Secret>,
        base_url: Option<&str>,
        timeout_ms: Option<u32>,
        path: &str,
        retry: RetryConfig,
    ) -> Result<Endpoint> {
        let key = api_key(&format!("{section}.api_key"), api_key_setting, KEY_ENV)?;
        if !key.expose().bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid_config(format!(
                "{section}.api_key: must be printable ASCII without spaces"
            )));
        }
        let timeout_ms = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        check_range(
            &format!("{section}.timeout_ms"),
            timeout_ms.into(),
            100,
            600_000,
        )?;
        let url = api_url(
            section,
            base_url.unwrap_or(DEFAULT_BASE_URL),
            &["http", "https"],
            path,
        )?;
        let timeout = Duration::from_millis(timeout_ms.into());
        let client = Client::builder()
            .connect_timeout(timeout)
            .build()
            .map_err(|e| Error::internal(format!("{NAME}: cannot set up HTTP: {e}")))?;
        Ok(Endpoint {
            shown: redact_url(url.as_str()),
            client,
            url,
            key,
            timeout,
            retry,
        })
    }

    /// One attempt: sends the request `build` makes and waits for the answer's status. A
    /// success is returned with its body still to read; anything else is an error per the
    /// module docs.
    async fn send(&self, build: impl FnOnce(RequestBuilder) -> RequestBuilder) -> Result<Response> {
        let request = build(self.client.post(self.url.clone())).bearer_auth(self.key.expose());
        let response = self
            .deadline(request.send())
            .await?
            .map_err(|e| self.transport_error(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = self
            .deadline(response.bytes())
            .await?
            .map(|b| b.to_vec())
            .unwrap_or_default();
        Err(self.answer_error(status, &body))
    }

    /// The next piece of `response`'s body (`None` at its end), within the deadline.
    async fn chunk(&self, response: &mut Response) -> Result<Option<Vec<u8>>> {
        let chunk = self.deadline(response.chunk()).await?;
        chunk
            .map(|c| c.map(|bytes| bytes.to_vec()))
            .map_err(|e| self.transport_error(e))
    }

    /// The rest of `response`'s body.
    async fn body(&self, mut response: Response) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk(&mut response).await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Runs `future` with the endpoint's deadline: `VB_ERR_TIMEOUT` when it passes.
    async fn deadline<T>(&self, future: impl Future<Output = T>) -> Result<T> {
        tokio::time::timeout(self.timeout, future)
            .await
            .map_err(|_| {
                Error::new(
                    VbStatus::VB_ERR_TIMEOUT,
                    format!(
                        "{NAME}: no answer from {} within {} ms",
                        self.shown,
                        self.timeout.as_millis()
                    ),
                )
            })
    }

    /// A failed connection or a broken answer: both may go away on retry.
    fn transport_error(&self, error: reqwest::Error) -> Error {
        let status = if error.is_timeout() {
            VbStatus::VB_ERR_TIMEOUT
        } else {
            VbStatus::VB_ERR_CONNECTION_FAILED
        };
        let what = if error.is_connect() {
            "cannot connect to"
        } else {
            "the connection broke with"
        };
        Error::new(
            status,
            format!(
                "{NAME}: {what} {}: {}",
                self.shown,
                causes(&error.without_url())
            ),
        )
    }

    /// The error for a non-success answer (see the module docs); the server's message is kept
    /// except for a refused key, whose message may quote the key.
    fn answer_error(&self, status: StatusCode, body: &[u8]) -> Error {
        #[derive(Deserialize)]
        struct Body {
            error: ErrorObject,
        }
        #[derive(Deserialize)]
        struct ErrorObject {
            message: Option<String>,
            code: Option<Value>,
        }
        let parsed = serde_json::from_slice::<Body>(body).ok();
        let code = parsed.as_ref().and_then(|b| match &b.error.code {
            Some(Value::String(code)) => Some(code.clone()),
            _ => None,
        });
        let code_note = code
            .as_deref()
            .map(|c| format!(", {c}"))
            .unwrap_or_default();
        if matches!(status.as_u16(), 401 | 403) {
            return Error::new(
                VbStatus::VB_ERR_UNAUTHORIZED,
                format!(
                    "{NAME}: {} refused the API key (HTTP {status}{code_note})",
                    self.shown
                ),
            );
        }
        let message = match parsed.and_then(|b| b.error.message) {
            Some(message) => message,
            None => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        };
        let message = message.replace(self.key.expose(), "***");
        let transient = status.is_server_error()
            || (status == StatusCode::TOO_MANY_REQUESTS
                && code.as_deref() != Some("insufficient_quota"));
        let vb_status = if transient {
            VbStatus::VB_ERR_CONNECTION_FAILED
        } else {
            VbStatus::VB_ERR_PROVIDER
        };
        Error::new(
            vb_status,
            format!(
                "{NAME}: {} answered HTTP {status}{code_note}: {message}",
                self.shown
            ),
        )
    }

    /// `VB_ERR_PROVIDER` for an answer that is not what the API documents.
    fn unreadable(&self, what: &str, reason: impl std::fmt::Display) -> Error {
        Error::provider(
            NAME,
            format!("unreadable {what} from {}: {reason}", self.shown),
        )
    }
}

/// `base_url` (with scheme in `schemes`) joined with `/v1/{path}`; errors name `section.base_url`.
pub(crate) fn api_url(section: &str, base_url: &str, schemes: &[&str], path: &str) -> Result<Url> {
    let field = format!("{section}.base_url");
    let shown = redact_url(base_url);
    let mut url = Url::parse(base_url)
        .map_err(|e| Error::invalid_config(format!("{field}: '{shown}' is not a URL: {e}")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(Error::invalid_config(format!(
            "{field}: '{shown}' must start with {}",
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(Error::invalid_config(format!(
            "{field}: '{shown}' must be a plain scheme://host[:port][/prefix] without credentials, query or fragment"
        )));
    }
    let root = url.path().trim_end_matches('/');
    let root = root.strip_suffix("/v1").unwrap_or(root);
    url.set_path(&format!("{root}/v1/{path}"));
    Ok(url)
}

/// An error and its causes, joined: reqwest's own message is generic, the cause says what failed.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Checks an optional free-text setting: present means non-empty.
fn non_empty(field: &str, value: Option<String>) -> Result<Option<String>> {
    match value {
        Some(v) if v.trim().is_empty() => Err(Error::invalid_config(format!(
            "{field}: must not be empty (leave it out for the default)"
        ))),
        other => Ok(other),
    }
}

/// The `openai` speech-to-text provider.
pub struct OpenAiStt {
    inner: Arc<SttInner>,
}

struct SttInner {
    endpoint: Endpoint,
    model: String,
    language: Option<String>,
    prompt: Option<String>,
    stream: bool,
}

impl OpenAiStt {
    /// Validates `stt_config` and prepares the endpoint (no request is made yet).
    pub fn new(setup: &ProviderSetup) -> Result<OpenAiStt> {
        let s: SttSettings = parse_section("stt_config", setup.config, &STT_KEYS)?;
        let endpoint = Endpoint::new(
            "stt_config",
            s.api_key.as_ref(),
            s.base_url.as_deref(),
            s.timeout_ms,
            "audio/transcriptions",
            setup.retry,
        )?;
        let language = non_empty("stt_config.language", s.language)?;
        if let Some(language) = &language {
            if language.len() != 2 || !language.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(Error::invalid_config(format!(
                    "stt_config.language: '{language}' is not an ISO-639-1 code such as \"en\""
                )));
            }
        }
        Ok(OpenAiStt {
            inner: Arc::new(SttInner {
                endpoint,
                model: non_empty("stt_config.model", s.model)?
                    .unwrap_or_else(|| "whisper-1".into()),
                language,
                prompt: non_empty("stt_config.prompt", s.prompt)?,
                stream: s.stream,
            }),
        })
    }

    /// The transcription endpoint, as shown in messages.
    pub fn url(&self) -> &str {
        &self.inner.endpoint.shown
    }
}

impl SttProvider for OpenAiStt {
    fn name(&self) -> &str {
        NAME
    }

    fn transcribe(&self, turn: SttTurn) -> BoxFuture<'static, Result<()>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let SttTurn {
                sample_rate,
                mut audio,
                results,
            } = turn;
            let mut pcm = Vec::new();
            while let Some(chunk) = audio.recv().await {
                pcm.extend_from_slice(&chunk);
            }
            if pcm.is_empty() {
                results.final_transcript("");
                return Ok(());
            }
            let wav = wav_bytes(sample_rate, &pcm)?;
            let text = with_retry(&inner.endpoint.retry, || inner.request(&wav, &results)).await?;
            results.final_transcript(text.trim());
            Ok(())
        })
    }
}

impl SttInner {
    /// One attempt at transcribing `wav`; streamed deltas go to `results` as partials.
    async fn request(&self, wav: &[u8], results: &SttSink) -> Result<String> {
        let e = &self.endpoint;
        let file = reqwest::multipart::Part::bytes(wav.to_vec())
            .file_name("audio.wav")
            .mime_str("audio/wav")
            .map_err(|err| Error::internal(format!("{NAME}: multipart: {err}")))?;
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", self.model.clone())
            .text("response_format", "json");
        if let Some(language) = &self.language {
            form = form.text("language", language.clone());
        }
        if let Some(prompt) = &self.prompt {
            form = form.text("prompt", prompt.clone());
        }
        if self.stream {
            form = form.text("stream", "true");
        }
        let mut response = e.send(|r| r.multipart(form)).await?;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            #[derive(Deserialize)]
            struct Transcription {
                text: String,
            }
            let body = e.body(response).await?;
            let parsed: Transcription =
                serde_json::from_slice(&body).map_err(|err| e.unreadable("transcription", err))?;
            return Ok(parsed.text);
        }
        let mut events = SseReader::default();
        let mut text = String::new();
        while let Some(chunk) = e.chunk(&mut response).await? {
            for data in events.push(&chunk) {
                let event: Value = serde_json::from_str(&data)
                    .map_err(|err| e.unreadable("transcription event", err))?;
                let field = |name: &str| {
                    event[name].as_str().map(str::to_owned).ok_or_else(|| {
                        e.unreadable("transcription event", format!("no '{name}' in {data}"))
                    })
                };
                match event["type"].as_str() {
                    Some("transcript.text.delta") => {
                        text.push_str(&field("delta")?);
                        results.partial(text.trim());
                    }
                    Some("transcript.text.done") => return field("text"),
                    _ => {} // event types this client does not use
                }
            }
        }
        Err(e.unreadable(
            "transcription stream",
            "it ended without transcript.text.done",
        ))
    }
}

/// Splits a server-sent event stream into the `data` of its events (`[DONE]` markers dropped).
#[derive(Default)]
struct SseReader {
    buffer: String,
}

impl SseReader {
    /// Adds bytes of the stream and returns the data of the events they completed.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        if self.buffer.contains('\r') {
            self.buffer = self.buffer.replace("\r\n", "\n");
        }
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let data: Vec<&str> = block
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() && data != ["[DONE]"] {
                events.push(data.join("\n"));
            }
        }
        events
    }
}

/// A WAV file (16-bit mono PCM) holding `pcm` at `rate`.
fn wav_bytes(rate: u32, pcm: &[i16]) -> Result<Vec<u8>> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = Vec::with_capacity(44 + pcm.len() * 2);
    let fail = |e: hound::Error| Error::internal(format!("{NAME}: cannot write WAV: {e}"));
    let mut writer = hound::WavWriter::new(std::io::Cursor::new(&mut bytes), spec).map_err(fail)?;
    let mut samples = writer.get_i16_writer(pcm.len() as u32);
    for &s in pcm {
        samples.write_sample(s);
    }
    samples.flush().map_err(fail)?;
    writer.finalize().map_err(fail)?;
    Ok(bytes)
}

/// The `openai` text-to-speech provider.
pub struct OpenAiTts {
    inner: Arc<TtsInner>,
}

struct TtsInner {
    endpoint: Endpoint,
    /// The request body without `input`.
    body: serde_json::Map<String, Value>,
}

impl OpenAiTts {
    /// Validates `tts_config` and prepares the endpoint (no request is made yet).
    pub fn new(setup: &ProviderSetup) -> Result<OpenAiTts> {
        let s: TtsSettings = parse_section("tts_config", setup.config, &TTS_KEYS)?;
        let endpoint = Endpoint::new(
            "tts_config",
            s.api_key.as_ref(),
            s.base_url.as_deref(),
            s.timeout_ms,
            "audio/speech",
            setup.retry,
        )?;
        let model =
            non_empty("tts_config.model", s.model)?.unwrap_or_else(|| "gpt-4o-mini-tts".into());
        let voice = non_empty("tts_config.voice", s.voice)?.unwrap_or_else(|| "alloy".into());
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!(model));
        body.insert("voice".into(), json!(voice));
        body.insert("response_format".into(), json!("pcm"));
        if let Some(speed) = s.speed {
            if !(0.25..=4.0).contains(&speed) {
                return Err(Error::invalid_config(format!(
                    "tts_config.speed: {speed} is outside 0.25–4.0"
                )));
            }
            body.insert("speed".into(), json!(speed));
        }
        if let Some(instructions) = non_empty("tts_config.instructions", s.instructions)? {
            body.insert("instructions".into(), json!(instructions));
        }
        Ok(OpenAiTts {
            inner: Arc::new(TtsInner { endpoint, body }),
        })
    }

    /// The speech endpoint, as shown in messages.
    pub fn url(&self) -> &str {
        &self.inner.endpoint.shown
    }
}

impl TtsProvider for OpenAiTts {
    fn name(&self) -> &str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        SPEECH_RATE
    }

    fn synthesize(&self, request: TtsRequest) -> BoxFuture<'static, Result<()>> {
        Box::pin(speak_reply(self.inner.clone(), request))
    }
}

/// One reply: a request per sentence, in order, as the sentences complete.
async fn speak_reply(tts: Arc<TtsInner>, mut request: TtsRequest) -> Result<()> {
    let mut splitter = SentenceSplitter::default();
    let mut sentences: VecDeque<String> = VecDeque::new();
    let mut text_open = true;
    loop {
        if let Some(sentence) = sentences.pop_front() {
            if !tts.speak(&sentence, &request.audio).await? {
                return Ok(()); // nobody plays this reply any more
            }
            continue;
        }
        if !text_open {
            return Ok(());
        }
        tokio::select! {
            chunk = request.text.recv() => match chunk {
                Some(chunk) => sentences.extend(splitter.push(&chunk)),
                None => {
                    text_open = false;
                    sentences.extend(splitter.finish());
                }
            },
            () = request.audio.closed() => return Ok(()),
        }
    }
}

impl TtsInner {
    /// Speaks one sentence into `audio`, retrying per the rules; a retry resumes after the audio
    /// already forwarded. `false` when the receiver of the audio is gone.
    async fn speak(&self, sentence: &str, audio: &mpsc::Sender<Vec<i16>>) -> Result<bool> {
        let mut body = self.body.clone();
        body.insert("input".into(), json!(sentence));
        let body = Value::Object(body).to_string();
        // Bytes of this sentence's PCM forwarded so far (always even).
        let forwarded = AtomicUsize::new(0);
        with_retry(&self.endpoint.retry, || {
            self.stream_once(&body, audio, &forwarded)
        })
        .await
    }

    /// One request: forwards the PCM after the first `forwarded` bytes, piece by piece.
    async fn stream_once(
        &self,
        body: &str,
        audio: &mpsc::Sender<Vec<i16>>,
        forwarded: &AtomicUsize,
    ) -> Result<bool> {
        let e = &self.endpoint;
        let mut response = e
            .send(|r| {
                r.header(CONTENT_TYPE, "application/json")
                    .body(body.to_owned())
            })
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if content_type.starts_with("application/json") || content_type.starts_with("text/") {
            return Err(e.unreadable(
                "speech",
                format!("Content-Type {content_type} where PCM audio was expected"),
            ));
        }
        let mut position = 0usize; // bytes of this answer seen so far
        let mut odd_byte: Option<u8> = None;
        while let Some(chunk) = e.chunk(&mut response).await? {
            let skip = forwarded
                .load(Ordering::Relaxed)
                .saturating_sub(position)
                .min(chunk.len());
            position += chunk.len();
            let fresh = &chunk[skip..];
            if fresh.is_empty() {
                continue;
            }
            let mut pcm = Vec::with_capacity(fresh.len() / 2 + 1);
            let mut rest = fresh;
            if let Some(low) = odd_byte.take() {
                pcm.push(i16::from_le_bytes([low, rest[0]]));
                rest = &rest[1..];
            }
            let pairs = rest.chunks_exact(2);
            odd_byte = pairs.remainder().first().copied();
            pcm.extend(pairs.map(|b| i16::from_le_bytes([b[0], b[1]])));
            forwarded.fetch_add(pcm.len() * 2, Ordering::Relaxed);
            if !pcm.is_empty() && audio.send(pcm).await.is_err() {
                return Ok(false);
            }
        }
        // A trailing odd byte is half a sample: not audio, dropped.
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stt(config: Value) -> Result<OpenAiStt> {
        OpenAiStt::new(&ProviderSetup::new(&config))
    }

    fn tts(config: Value) -> Result<OpenAiTts> {
        OpenAiTts::new(&ProviderSetup::new(&config))
    }

    #[test]
    fn endpoints_are_below_v1_of_the_base_url() {
        let s = stt(json!({"api_key": "k"})).unwrap();
        assert_eq!(s.url(), "https://api.openai.com/v1/audio/transcriptions");
        for base in [
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/",
            "http://127.0.0.1:8000/v1",
        ] {
            let t = tts(json!({"api_key": "k", "base_url": base})).unwrap();
            assert_eq!(t.url(), "http://127.0.0.1:8000/v1/audio/speech", "{base}");
        }
        let t = tts(json!({"api_key": "k", "base_url": "https://h/openai/v1/"})).unwrap();
        assert_eq!(t.url(), "https://h/openai/v1/audio/speech");
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            (
                json!({"api_key": "k", "foo": 1}),
                "stt_config.foo: unknown key",
            ),
            (
                json!({"api_key": "k", "base_url": "ftp://h"}),
                "stt_config.base_url: 'ftp://h' must start with http:// or https://",
            ),
            (
                json!({"api_key": "k", "base_url": "nope"}),
                "stt_config.base_url: 'nope' is not a URL",
            ),
            (
                json!({"api_key": "k", "base_url": "http://h?key=1"}),
                "stt_config.base_url: 'http://h' must be a plain",
            ),
            (
                json!({"api_key": "k", "timeout_ms": 5}),
                "stt_config.timeout_ms: 5 is below the minimum 100",
            ),
            (
                json!({"api_key": "k", "language": "english"}),
                "stt_config.language: 'english' is not an ISO-639-1 code",
            ),
            (
                json!({"api_key": "k", "model": ""}),
                "stt_config.model: must not be empty",
            ),
            (
                json!({"api_key": "k", "stream": "yes"}),
                "stt_config.stream: invalid type",
            ),
            (
                json!({"api_key": "bad key"}),
                "stt_config.api_key: must be printable ASCII",
            ),
        ];
        crate::config::assert_config_errors(&cases, |config| stt(config.clone()));
        let e = tts(json!({"api_key": "k", "speed": 5.0})).err().unwrap();
        assert_eq!(e.message(), "tts_config.speed: 5 is outside 0.25–4.0");
        let e = tts(json!({"api_key": "sk-secret", "voice": 1}))
            .err()
            .unwrap();
        assert!(
            e.message().starts_with("tts_config.voice: invalid type"),
            "{}",
            e.message()
        );
        assert!(!e.message().contains("sk-secret"));
    }

    #[test]
    fn answers_map_to_statuses_and_never_show_the_key() {
        let s = stt(json!({"api_key": "sk-test-123", "base_url": "http://127.0.0.1:9"})).unwrap();
        let e = &s.inner.endpoint;
        let error = |status: u16, body: &str| {
            e.answer_error(StatusCode::from_u16(status).unwrap(), body.as_bytes())
        };
        let refused = error(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-test-123.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        );
        assert_eq!(refused.status(), VbStatus::VB_ERR_UNAUTHORIZED);
        assert_eq!(
            refused.message(),
            "openai: http://127.0.0.1:9/v1/audio/transcriptions refused the API key (HTTP 401 Unauthorized, invalid_api_key)"
        );
        let bad = error(
            400,
            r#"{"error":{"message":"Invalid file format; key sk-test-123","type":"invalid_request_error","param":null,"code":null}}"#,
        );
        assert_eq!(bad.status(), VbStatus::VB_ERR_PROVIDER);
        assert!(
            bad.message()
                .ends_with("answered HTTP 400 Bad Request: Invalid file format; key ***"),
            "{}",
            bad.message()
        );
        assert_eq!(error(429, r#"{"error":{"message":"Slow down","type":"requests","code":"rate_limit_exceeded"}}"#).status(), VbStatus::VB_ERR_CONNECTION_FAILED);
        assert_eq!(error(429, r#"{"error":{"message":"Quota","type":"insufficient_quota","code":"insufficient_quota"}}"#).status(), VbStatus::VB_ERR_PROVIDER);
        let down = error(503, "upstream down");
        assert_eq!(down.status(), VbStatus::VB_ERR_CONNECTION_FAILED);
        assert!(
            down.message()
                .ends_with("answered HTTP 503 Service Unavailable: upstream down")
        );
    }

    #[test]
    fn server_sent_events_split_across_pieces() {
        let mut sse = SseReader::default();
        assert!(sse.push(b"data: {\"a\":").is_empty());
        assert_eq!(
            sse.push(b"1}\r\n\r\nevent: x\ndata: 2\n\ndata: [DONE]\n\n"),
            ["{\"a\":1}", "2"]
        );
    }

    #[test]
    fn wav_files_hold_the_samples() {
        let wav = wav_bytes(16000, &[1, -2, 3]).unwrap();
        let reader = hound::WavReader::new(std::io::Cursor::new(wav)).unwrap();
        assert_eq!(reader.spec().sample_rate, 16000);
        assert_eq!(reader.spec().channels, 1);
        let samples: Vec<i16> = reader.into_samples().map(|s| s.unwrap()).collect();
        assert_eq!(samples, [1, -2, 3]);
    }
}
