//! What the admission tests share (`tests/auth_hooks.rs`, `tests/admission.rs`): a backend on
//! the test providers, sessions created for a user with a token, the refusal of a result, and a
//! host auth hook that records its calls.
#![allow(dead_code)]

use std::sync::Mutex;

use serde_json::Value;
use voicebackend::backend::auth::{AuthHook, AuthResult};
use voicebackend::config::Secret;
use voicebackend::{Backend, Error, Result, Session, SessionConfig, VbStatus};

use super::echo_agent;

/// Built-in rate limits off.
pub const NO_RATE_LIMIT: &str =
    r#""rate_limit":{"sessions_per_second":0,"per_user_sessions_per_minute":0}"#;

/// The status and message of a failed `result`.
pub fn refusal<T: std::fmt::Debug>(result: Result<T>) -> (VbStatus, String) {
    let e = result.unwrap_err();
    (e.status(), e.message().to_owned())
}

/// A backend on the test providers with `extra` in its config, not started.
pub fn backend(extra: &str) -> Backend {
    Backend::from_json(&format!(
        r#"{{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts",{extra}}}"#
    ))
    .expect("backend config")
}

/// A session for `user_id` (may be empty) with `token`.
pub fn session_config(user_id: &str, token: Option<&str>) -> SessionConfig {
    SessionConfig {
        user_id: user_id.to_owned(),
        auth_token: token.map(Secret::new),
        ..SessionConfig::default()
    }
}

/// Creates a session for `user_id` with `token` and the echo agent.
pub fn create(backend: &Backend, user_id: &str, token: Option<&str>) -> Result<Session> {
    backend.create_session(session_config(user_id, token), Some(echo_agent()), None)
}

/// A host hook: accepts tokens "token-for-<user>", refuses to authorize "eve", records every
/// call.
#[derive(Default)]
pub struct RecordingHook {
    pub calls: Mutex<Vec<String>>,
}

impl AuthHook for RecordingHook {
    fn authenticate(&self, token: &str, metadata: &Value) -> Result<AuthResult> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("authenticate {}", metadata["app"]));
        match token.strip_prefix("token-for-") {
            Some(user) => Ok(AuthResult {
                user_id: user.to_owned(),
                claims: Value::Null,
            }),
            None => Err(Error::new(VbStatus::VB_ERR_UNAUTHORIZED, "unknown token")),
        }
    }

    fn authorize(&self, user: &AuthResult, operation: &str) -> Result<bool> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("authorize {} {operation}", user.user_id));
        Ok(user.user_id != "eve")
    }
}
