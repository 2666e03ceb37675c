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
//! accepted). Failures follow [`crate::net`]'s rules: a refused key (401/403) is
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

mod chat;
mod sse;
mod stt;
mod tts;
#[cfg(feature = "fuzzing")]
pub(crate) use stt::fuzz;

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{RetryConfig, Secret, check_range};
use crate::error::{Error, Result, VbStatus};
use crate::net::{DEFAULT_TIMEOUT_MS, api_key, redact_url, scrub};
use crate::provider::ProviderSetup;
use crate::provider::stt::SttProvider;
use crate::provider::tts::TtsProvider;

/// The registry name of both providers.
pub const NAME: &str = "openai";
/// The environment variable a key is taken from when the config has none.
pub const KEY_ENV: &str = "OPENAI_API_KEY";
/// The default `base_url` (HTTP) of the OpenAI API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";
/// The rate of the `pcm` speech format.
pub const SPEECH_RATE: u32 = 24_000;

pub use chat::{ChatClient, ChatRound, ToolCall};
pub use stt::OpenAiStt;
pub use tts::OpenAiTts;

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
        Self::with_key(section, key, base_url, timeout_ms, path, retry)
    }

    /// [`Endpoint::new`] with the key already found; an empty key sends no `Authorization`
    /// (self-hosted servers such as llama.cpp's need none).
    fn with_key(
        section: &str,
        key: Secret,
        base_url: Option<&str>,
        timeout_ms: Option<u32>,
        path: &str,
        retry: RetryConfig,
    ) -> Result<Endpoint> {
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
        let mut request = build(self.client.post(self.url.clone()));
        if !self.key.expose().is_empty() {
            request = request.bearer_auth(self.key.expose());
        }
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
        // Whatever the server sent may quote the key (the code too): it is blanked out of the
        // whole message.
        if matches!(status.as_u16(), 401 | 403) {
            return Error::new(
                VbStatus::VB_ERR_UNAUTHORIZED,
                scrub(
                    &format!(
                        "{NAME}: {} refused the API key (HTTP {status}{code_note})",
                        self.shown
                    ),
                    &self.key,
                ),
            );
        }
        let message = match parsed.and_then(|b| b.error.message) {
            Some(message) => message,
            None => {
                // The start of the body, cut after the key is blanked out (a cut key would
                // not be found).
                let body = scrub(&String::from_utf8_lossy(body), &self.key);
                let end = (0..=body.len().min(300))
                    .rev()
                    .find(|&i| body.is_char_boundary(i))
                    .unwrap_or(0);
                body[..end].to_owned()
            }
        };
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
            scrub(
                &format!(
                    "{NAME}: {} answered HTTP {status}{code_note}: {message}",
                    self.shown
                ),
                &self.key,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderSetup;
    use serde_json::{Value, json};

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
}
