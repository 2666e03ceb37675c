//! The `livekit` backend's `provider_config`, and the access tokens minted from it.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `url` | `LIVEKIT_URL` | the server: `ws://`, `wss://`, `http://` or `https://` (http becomes ws) |
//! | `api_key` | `LIVEKIT_API_KEY` | the key tokens are signed for |
//! | `api_secret` | `LIVEKIT_API_SECRET` | the secret they are signed with; never printed or stored |
//! | `agent_identity` | `voicebackend-agent` | the agent participant's identity in every room |
//! | `opus_complexity` | 5 | 0–10: CPU spent encoding the agent's voice (0.1 ms per frame at 5) |
//! | `timeout_ms` | 10000 | 100–600000: each connection attempt, and the wait for the room to answer |
//! | `worker` | absent | present: register as an agent worker and take dispatched jobs ([`WorkerSettings`]) |
//!
//! Connections are retried under the backend's `retry` rules. A session's `connection_url`
//! replaces `url`.

use std::collections::HashMap;
use std::time::Duration;

use livekit_api::access_token::{AccessToken, VideoGrants};
use serde::Deserialize;

use crate::config::{BackendConfig, RetryConfig, Secret, check_range, parse_section};
use crate::error::{Error, Result};
use crate::net::{self, DEFAULT_TIMEOUT_MS, redact_url};

/// The registry name, and how messages about LiveKit start.
pub const NAME: &str = "livekit";
/// The agent's identity when `agent_identity` is not set.
pub const DEFAULT_IDENTITY: &str = "voicebackend-agent";
/// How long a minted token is valid: longer than any reconnection takes.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);
/// The participant attribute LiveKit's frontends read the agent's state from.
pub const AGENT_STATE: &str = "lk.agent.state";

const KEYS: [&str; 7] = [
    "url",
    "api_key",
    "api_secret",
    "agent_identity",
    "opus_complexity",
    "timeout_ms",
    "worker",
];
const WORKER_KEYS: [&str; 3] = ["agent_name", "max_jobs", "load_threshold"];

/// `provider_config.worker`: the backend registers with the server as an agent worker and takes
/// the jobs it dispatches (see [`super::worker`]).
///
/// | key | default | meaning |
/// |---|---|---|
/// | `agent_name` | `""` | empty: every new room; a name: only explicit dispatches to that name |
/// | `max_jobs` | 0 | jobs at once at most (0: limited by load and `max_concurrent_sessions` only) |
/// | `load_threshold` | 0.75 | 0.05–1: at this measured load the worker reports itself full |
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// The agent name dispatches name.
    pub agent_name: String,
    /// Jobs at once at most (0: no limit of its own).
    pub max_jobs: u32,
    /// The load (0–1) from which the worker takes no more jobs.
    pub load_threshold: f32,
}

#[derive(Default, Deserialize)]
struct RawWorker {
    agent_name: Option<String>,
    max_jobs: Option<u32>,
    load_threshold: Option<f64>,
}

#[derive(Default, Deserialize)]
struct Raw {
    url: Option<String>,
    api_key: Option<Secret>,
    api_secret: Option<Secret>,
    agent_identity: Option<String>,
    opus_complexity: Option<u8>,
    timeout_ms: Option<u32>,
    worker: Option<serde_json::Value>,
}

/// The validated settings.
#[derive(Clone)]
pub struct Settings {
    /// The server's WebSocket base URL (`ws://` or `wss://`, no path).
    pub url: String,
    /// API key.
    pub api_key: Secret,
    /// API secret.
    pub api_secret: Secret,
    /// The agent participant's identity.
    pub identity: String,
    /// Opus encoder complexity, 0–10.
    pub opus_complexity: u8,
    /// Each connection attempt, and the wait for the server's answer to a join.
    pub timeout: Duration,
    /// How connections are retried.
    pub retry: RetryConfig,
    /// Worker mode, when configured.
    pub worker: Option<WorkerSettings>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &redact_url(&self.url))
            .field("api_key", &self.api_key)
            .field("api_secret", &self.api_secret)
            .field("identity", &self.identity)
            .field("opus_complexity", &self.opus_complexity)
            .field("worker", &self.worker)
            .finish()
    }
}

impl Settings {
    /// Reads and checks `provider_config` (with the environment's fallbacks).
    pub fn from_backend_config(config: &BackendConfig) -> Result<Settings> {
        let raw: Raw = parse_section("provider_config", &config.provider_config, &KEYS)?;
        let url = match raw.url {
            Some(url) => url,
            None => match std::env::var("LIVEKIT_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => {
                    return Err(Error::invalid_config(
                        "provider_config.url: missing (set it or the LIVEKIT_URL environment variable)",
                    ));
                }
            },
        };
        let url = websocket_base("provider_config.url", &url)?;
        let api_key = net::api_key(
            "provider_config.api_key",
            raw.api_key.as_ref(),
            "LIVEKIT_API_KEY",
        )?;
        let api_secret = net::api_key(
            "provider_config.api_secret",
            raw.api_secret.as_ref(),
            "LIVEKIT_API_SECRET",
        )?;
        let identity = raw
            .agent_identity
            .unwrap_or_else(|| DEFAULT_IDENTITY.to_owned());
        check_name("provider_config.agent_identity", &identity)?;
        let opus_complexity = raw.opus_complexity.unwrap_or(5);
        check_range(
            "provider_config.opus_complexity",
            opus_complexity.into(),
            0,
            10,
        )?;
        let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        check_range(
            "provider_config.timeout_ms",
            timeout_ms.into(),
            100,
            600_000,
        )?;
        Ok(Settings {
            url,
            api_key,
            api_secret,
            identity,
            opus_complexity,
            timeout: Duration::from_millis(timeout_ms.into()),
            retry: config.retry,
            worker: raw.worker.as_ref().map(worker_settings).transpose()?,
        })
    }

    /// The token a worker registers with: an `agent` video grant and nothing else (it cannot
    /// join rooms; jobs come with their own tokens).
    pub fn worker_token(&self) -> Result<Secret> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            sub: &'a str,
            nbf: u64,
            exp: u64,
            video: AgentGrant,
        }
        #[derive(serde::Serialize)]
        struct AgentGrant {
            agent: bool,
        }
        // livekit-api's VideoGrants has no `agent` field: the claims are written here.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: self.api_key.expose(),
            sub: &self.identity,
            nbf: now.saturating_sub(10),
            exp: now + TOKEN_TTL.as_secs(),
            video: AgentGrant { agent: true },
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.api_secret.expose().as_bytes()),
        )
        .map(Secret::new)
        .map_err(|e| Error::invalid_config(format!("{NAME}: could not sign a token: {e}")))
    }

    /// A token for the agent to join `room`: publish, subscribe, publish data, set its own
    /// attributes; participant kind `agent`, starting in state `initializing`.
    pub fn agent_token(&self, room: &str) -> Result<Secret> {
        let grants = VideoGrants {
            room_join: true,
            room: room.to_owned(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            can_update_own_metadata: Some(true),
            ..VideoGrants::default()
        };
        AccessToken::with_api_key(self.api_key.expose(), self.api_secret.expose())
            .with_identity(&self.identity)
            .with_name("voicebackend agent")
            .with_kind("agent")
            .with_attributes(HashMap::from([(
                AGENT_STATE.to_owned(),
                "initializing".to_owned(),
            )]))
            .with_grants(grants)
            .with_ttl(TOKEN_TTL)
            .to_jwt()
            .map(Secret::new)
            .map_err(|e| Error::invalid_config(format!("{NAME}: could not sign a token: {e}")))
    }
}

fn worker_settings(raw: &serde_json::Value) -> Result<WorkerSettings> {
    let raw: RawWorker = parse_section("provider_config.worker", raw, &WORKER_KEYS)?;
    let agent_name = raw.agent_name.unwrap_or_default();
    if !agent_name.is_empty() {
        check_name("provider_config.worker.agent_name", &agent_name)?;
    }
    let load_threshold = raw.load_threshold.unwrap_or(0.75);
    if !(0.05..=1.0).contains(&load_threshold) {
        return Err(Error::invalid_config(format!(
            "provider_config.worker.load_threshold: {load_threshold} is not between 0.05 and 1"
        )));
    }
    Ok(WorkerSettings {
        agent_name,
        max_jobs: raw.max_jobs.unwrap_or(0),
        load_threshold: load_threshold as f32,
    })
}

/// The WebSocket base of a LiveKit URL: `ws`/`wss` as given, `http`/`https` mapped to them; no
/// query, no trailing slash.
pub fn websocket_base(field: &str, url: &str) -> Result<String> {
    let url = url.trim_end_matches('/');
    let mapped = if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_owned()
    };
    net::check_ws_url(field, &mapped).map_err(|_| {
        Error::invalid_config(format!(
            "{field}: '{}' is not a ws://, wss://, http:// or https:// URL without a query",
            redact_url(url)
        ))
    })?;
    Ok(mapped)
}

/// `VB_ERR_INVALID_CONFIG` unless `value` is a room or identity LiveKit takes: 1–128 visible
/// characters without spaces.
pub fn check_name(field: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.chars().all(|c| !c.is_control() && !c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_config(format!(
            "{field}: '{value}' must be 1 to 128 characters without spaces"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VbStatus;

    fn settings(provider_config: &str) -> Result<Settings> {
        let json = format!(r#"{{"provider":"livekit","provider_config":{provider_config}}}"#);
        Settings::from_backend_config(&BackendConfig::from_json(&json)?)
    }

    #[test]
    fn the_seeds_keys_configure_it_and_http_urls_become_websocket_urls() {
        let s = settings(
            r#"{"url":"http://127.0.0.1:7880/","api_key":"devkey","api_secret":"secret","opus_complexity":3}"#,
        )
        .unwrap();
        assert_eq!(s.url, "ws://127.0.0.1:7880");
        assert_eq!(
            (s.identity.as_str(), s.opus_complexity),
            (DEFAULT_IDENTITY, 3)
        );
        assert!(!format!("{s:?}").contains("secret\""), "{s:?}");
        let token = s.agent_token("room-1").unwrap();
        let claims = livekit_api::access_token::Claims::from_unverified(token.expose()).unwrap();
        assert_eq!(claims.video.room, "room-1");
        assert!(claims.video.room_join && claims.video.can_update_own_metadata());
        assert_eq!(claims.kind, "agent");
        assert_eq!(claims.attributes[AGENT_STATE], "initializing");
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        for (config, message) in [
            (
                r#"{"url":"ftp://x","api_key":"k","api_secret":"s"}"#,
                "provider_config.url: 'ftp://x' is not a ws://, wss://, http:// or https:// URL without a query",
            ),
            (
                r#"{"url":"ws://x","api_key":"k","api_secret":"s","opus_complexity":11}"#,
                "provider_config.opus_complexity: 11 is above the maximum 10",
            ),
            (
                r#"{"url":"ws://x","api_key":"k","api_secret":"s","agent_identity":"a b"}"#,
                "provider_config.agent_identity: 'a b' must be 1 to 128 characters without spaces",
            ),
            (
                r#"{"url":"ws://x","api_key":"k","api_secret":"s","room":"r"}"#,
                "provider_config.room: unknown key (it takes url, api_key, api_secret, agent_identity, opus_complexity, timeout_ms, worker)",
            ),
            (
                r#"{"url":"ws://x","api_key":"k","api_secret":"s","worker":{"load_threshold":2}}"#,
                "provider_config.worker.load_threshold: 2 is not between 0.05 and 1",
            ),
            (
                r#"{"url":"ws://x","api_key":"k","api_secret":"s","worker":{"jobs":2}}"#,
                "provider_config.worker.jobs: unknown key (it takes agent_name, max_jobs, load_threshold)",
            ),
        ] {
            let e = settings(config).expect_err(config);
            assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
            assert_eq!(e.message(), message);
        }
    }
}
