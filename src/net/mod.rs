//! What every network client of the engine shares (the providers, the Pipecat and LiveKit
//! clients, the telemetry exporter): API keys, URLs shown without secrets, retries with jittered
//! backoff, and WebSocket connections with a deadline. Everything here runs on the backend's I/O
//! runtime, never on the realtime thread.
//!
//! Error statuses follow one rule so that retries and hosts can tell failures apart: a refused
//! key is `VB_ERR_UNAUTHORIZED` (never retried), a service that cannot be reached is
//! `VB_ERR_CONNECTION_FAILED`, one that does not answer in time is `VB_ERR_TIMEOUT` (both
//! retried), any other answer is `VB_ERR_PROVIDER`. Messages name the provider and the URL
//! without its query string; keys never appear in them.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::config::{RetryConfig, Secret};
use crate::error::{Error, Result, VbStatus};

/// Default deadline of one network operation (connecting, waiting for an answer), in ms.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;

/// A client WebSocket connection (plain or TLS).
pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The API key from the provider's config, else from the vendor's usual environment variable.
/// Neither: `VB_ERR_INVALID_CONFIG` saying where a key can come from.
pub fn api_key(field: &str, configured: Option<&Secret>, env_var: &str) -> Result<Secret> {
    if let Some(key) = configured.filter(|k| !k.expose().is_empty()) {
        return Ok(key.clone());
    }
    match std::env::var(env_var) {
        Ok(key) if !key.is_empty() => Ok(Secret::new(key)),
        _ => Err(Error::invalid_config(format!(
            "{field}: missing (set it or the {env_var} environment variable)"
        ))),
    }
}

/// `url` without its query string and user info, for messages (keys sometimes travel there).
pub fn redact_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = without_query.split_once("://") else {
        return without_query.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}{path}")
}

/// `text` with every occurrence of `secret` replaced by `***`: for text that came from a
/// server (error descriptions, close reasons), which could echo what it was sent.
pub fn scrub(text: &str, secret: &Secret) -> String {
    match secret.expose() {
        "" => text.to_owned(),
        key => text.replace(key, "***"),
    }
}

/// `VB_ERR_INVALID_CONFIG` unless `url` is a `ws://` or `wss://` URL without a query.
pub fn check_ws_url(field: &str, url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"));
    match rest {
        Some(host) if !host.is_empty() && !url.contains(['?', '#']) => Ok(()),
        _ => Err(Error::invalid_config(format!(
            "{field}: '{}' is not a ws:// or wss:// URL without a query",
            redact_url(url)
        ))),
    }
}

/// `VB_ERR_INVALID_CONFIG` unless `value` is a non-empty run of letters, digits, `-`, `_`, `.`
/// (what model names and language tags are; it needs no escaping in a query string).
pub fn check_token(field: &str, value: &str) -> Result<()> {
    let valid = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_config(format!(
            "{field}: '{value}' must be letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Whether a failure may go away on its own (connection failures and timeouts).
pub fn is_transient(error: &Error) -> bool {
    matches!(
        error.status(),
        VbStatus::VB_ERR_CONNECTION_FAILED | VbStatus::VB_ERR_TIMEOUT
    )
}

/// Wait before retry number `retry_number` (1 = the first retry): the initial backoff doubled per
/// retry, capped at the maximum, then jittered uniformly into its upper half so that clients
/// that failed together do not retry together.
pub fn backoff(retry: &RetryConfig, retry_number: u32) -> Duration {
    let doublings = retry_number.saturating_sub(1).min(30);
    let ceiling = u64::from(retry.initial_backoff_ms)
        .saturating_mul(1 << doublings)
        .min(u64::from(retry.max_backoff_ms));
    let jitter = RandomState::new().hash_one(retry_number) % (ceiling / 2 + 1);
    Duration::from_millis(ceiling - jitter)
}

/// Runs `attempt` until it succeeds, fails for good (a non-transient error) or has been tried
/// `retry.max_attempts` times, waiting [`backoff`] between attempts. The last error is returned
/// with the number of attempts added to its message.
pub async fn with_retry<T, F, Fut>(retry: &RetryConfig, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if is_transient(&e) && tries < retry.max_attempts => {
                let wait = backoff(retry, tries);
                tracing::warn!(
                    attempt = tries,
                    max_attempts = retry.max_attempts,
                    retry_in_ms = wait.as_millis() as u64,
                    "{}; retrying",
                    e.message()
                );
                tokio::time::sleep(wait).await;
            }
            Err(e) if tries > 1 => {
                return Err(Error::new(
                    e.status(),
                    format!("{} (after {tries} attempts)", e.message()),
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens a WebSocket to `url` with extra request `headers`; each attempt must complete within
/// `timeout` and transient failures are retried per `retry`.
pub async fn connect_websocket(
    provider: &str,
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
    retry: &RetryConfig,
) -> Result<WebSocket> {
    with_retry(retry, || connect_once(provider, url, headers, timeout)).await
}

async fn connect_once(
    provider: &str,
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<WebSocket> {
    let shown = redact_url(url);
    let mut request = url.into_client_request().map_err(|e| {
        Error::invalid_config(format!("{provider}: '{shown}' is not a WebSocket URL: {e}"))
    })?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|_| {
            Error::invalid_config(format!("{provider}: the {name} header has invalid bytes"))
        })?;
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| Error::internal(format!("{provider}: header name: {e}")))?;
        request.headers_mut().insert(name, value);
    }
    // Nagle's algorithm would hold small messages back behind unacknowledged ones (tens of ms):
    // every socket here carries realtime traffic.
    let connecting =
        tokio_tungstenite::connect_async_with_config(request, Some(client_socket_config()), true);
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(Error::new(
            VbStatus::VB_ERR_TIMEOUT,
            format!(
                "{provider}: no WebSocket handshake from {shown} within {} ms",
                timeout.as_millis()
            ),
        )),
        Ok(Ok((socket, _response))) => {
            tracing::debug!(provider, url = %shown, "WebSocket connected");
            Ok(socket)
        }
        Ok(Err(e)) => Err(handshake_error(provider, &shown, e)),
    }
}

/// A provider connection's socket: a 16 KiB read buffer instead of tungstenite's 128 KiB. The
/// buffer is the size of each read from the socket, not a limit on messages (a vendor's audio
/// message of any size still arrives whole); tungstenite zeroes it on every read (a fifth of a
/// server's CPU at 100 phone calls, measured in `transport::phone`), and with a connection per
/// turn the `--faults` soak allocated one 128 KiB buffer per turn — glibc's threshold for
/// giving a block its own mapping — which kept more of its heap resident.
fn client_socket_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default().read_buffer_size(16 * 1024)
}

/// Classifies a failed WebSocket handshake (see the module docs).
fn handshake_error(provider: &str, shown_url: &str, error: tungstenite::Error) -> Error {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let code = if matches!(status.as_u16(), 401 | 403) {
                VbStatus::VB_ERR_UNAUTHORIZED
            } else if status.is_server_error() || status.as_u16() == 429 {
                VbStatus::VB_ERR_CONNECTION_FAILED
            } else {
                VbStatus::VB_ERR_PROVIDER
            };
            // The server's reason, when it gave a short one in words (LiveKit does: "room not
            // found", "invalid token"); never more than a line of it.
            let reason = response
                .body()
                .as_deref()
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(|t| t.trim().lines().next().unwrap_or_default().to_owned())
                .filter(|t| !t.is_empty() && t.len() <= 200)
                .map(|t| format!(": {t}"))
                .unwrap_or_default();
            Error::new(
                code,
                format!("{provider}: {shown_url} refused the WebSocket with HTTP {status}{reason}"),
            )
        }
        other => Error::new(
            VbStatus::VB_ERR_CONNECTION_FAILED,
            format!("{provider}: cannot connect to {shown_url}: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const FAST: RetryConfig = RetryConfig {
        max_attempts: 4,
        initial_backoff_ms: 1,
        max_backoff_ms: 4,
    };

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let retry = RetryConfig {
            max_attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        };
        for (n, ceiling) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
            for _ in 0..20 {
                let ms = backoff(&retry, n).as_millis() as u64;
                assert!((ceiling / 2..=ceiling).contains(&ms), "retry {n}: {ms} ms");
            }
        }
    }

    #[test]
    fn urls_lose_their_query_and_credentials_in_messages() {
        assert_eq!(
            redact_url("wss://api.example.com/v1/listen?token=abc&x=1"),
            "wss://api.example.com/v1/listen"
        );
        assert_eq!(
            redact_url("ws://user:secret@127.0.0.1:9/x"),
            "ws://127.0.0.1:9/x"
        );
        assert_eq!(redact_url("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }

    #[test]
    fn secrets_are_scrubbed_from_server_text() {
        let key = Secret::new("sk-123");
        assert_eq!(scrub("bad key sk-123 (sk-123)", &key), "bad key *** (***)");
        assert_eq!(scrub("nothing here", &Secret::new("")), "nothing here");
    }

    #[test]
    fn keys_come_from_config_first_then_the_environment() {
        let configured = Secret::new("from-config");
        let key = api_key(
            "stt_config.api_key",
            Some(&configured),
            "VB_TEST_NO_SUCH_VAR",
        );
        assert_eq!(key.unwrap().expose(), "from-config");
        let e = api_key("stt_config.api_key", None, "VB_TEST_NO_SUCH_VAR").unwrap_err();
        assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
        assert_eq!(
            e.message(),
            "stt_config.api_key: missing (set it or the VB_TEST_NO_SUCH_VAR environment variable)"
        );
    }

    fn run<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn transient_failures_are_retried_until_the_limit() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = run(with_retry(&FAST, || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(Error::new(VbStatus::VB_ERR_CONNECTION_FAILED, "down")) }
        }));
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        let e = result.unwrap_err();
        assert_eq!(e.status(), VbStatus::VB_ERR_CONNECTION_FAILED);
        assert_eq!(e.message(), "down (after 4 attempts)");
    }

    #[test]
    fn a_transient_failure_then_success_succeeds() {
        let calls = AtomicU32::new(0);
        let result = run(with_retry(&FAST, || {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if n < 2 {
                    Err(Error::new(VbStatus::VB_ERR_TIMEOUT, "slow"))
                } else {
                    Ok(n)
                }
            }
        }));
        assert_eq!(result.unwrap(), 2);
    }

    #[test]
    fn a_refused_key_is_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = run(with_retry(&FAST, || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(Error::new(VbStatus::VB_ERR_UNAUTHORIZED, "bad key")) }
        }));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(result.unwrap_err().message(), "bad key");
    }

    #[test]
    fn an_unreachable_server_is_a_connection_failure_naming_the_url() {
        // Bind then drop a listener so the port is closed on loopback.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("ws://127.0.0.1:{port}/v1/listen?token=k");
        let e = run(connect_websocket(
            "deepgram",
            &url,
            &[],
            Duration::from_secs(2),
            &FAST,
        ))
        .unwrap_err();
        assert_eq!(e.status(), VbStatus::VB_ERR_CONNECTION_FAILED);
        assert!(e.message().starts_with(&format!(
            "deepgram: cannot connect to ws://127.0.0.1:{port}/v1/listen"
        )));
        assert!(
            e.message().ends_with("(after 4 attempts)"),
            "{}",
            e.message()
        );
        assert!(!e.message().contains("token=k"));
    }
}
