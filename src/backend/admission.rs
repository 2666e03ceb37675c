//! Admission of a new session: authentication, authorization and rate limiting, in that order,
//! before anything of the session exists. Runs on the thread that creates (or resumes) it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::auth::{AuthHook, AuthResult, JwtHs256Hook, SESSION_RESUME, unauthorized};
use super::limits::{RateLimiter, TokenBuckets};
use crate::config::{BackendConfig, SessionConfig};
use crate::error::{Error, Result};

/// The hooks a backend admits sessions with. Replaced only before the backend starts; each
/// admission clones the `Arc`s under a lock held for nothing else.
pub(crate) struct Admission {
    required: bool,
    hook: Mutex<Option<Arc<dyn AuthHook>>>,
    limiter: Mutex<Arc<dyn RateLimiter>>,
}

impl Admission {
    /// The built-in hooks of `config`: the JWT hook when `auth.jwt_hs256_secret` is set, the
    /// token buckets of `rate_limit`.
    pub(crate) fn new(config: &BackendConfig) -> Admission {
        let hook = config
            .auth
            .jwt_hs256_secret
            .as_ref()
            .map(|secret| Arc::new(JwtHs256Hook::new(secret)) as Arc<dyn AuthHook>);
        Admission {
            required: config.auth.required,
            hook: Mutex::new(hook),
            limiter: Mutex::new(Arc::new(TokenBuckets::new(&config.rate_limit))),
        }
    }

    /// Replaces the auth hook (the built-in one included).
    pub(crate) fn set_hook(&self, hook: Arc<dyn AuthHook>) {
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Replaces the rate limiter (the built-in token buckets included).
    pub(crate) fn set_limiter(&self, limiter: Arc<dyn RateLimiter>) {
        *self.limiter.lock().unwrap_or_else(|p| p.into_inner()) = limiter;
    }

    /// At start: `auth.required` needs a hook to check tokens with.
    pub(crate) fn check_ready(&self) -> Result<()> {
        if self.required && self.current_hook().is_none() {
            return Err(Error::invalid_config(
                "auth.required: true, but no auth hook checks tokens: set auth.jwt_hs256_secret \
                 or install a hook before start",
            ));
        }
        Ok(())
    }

    fn current_hook(&self) -> Option<Arc<dyn AuthHook>> {
        self.hook.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Admits a session for `operation` (`auth::SESSION_CREATE`, `auth::SESSION_RESUME`) and
    /// returns its user id. With a hook and an `auth_token`: authenticate (a `user_id` in the
    /// config must be the token's user), then authorize. Without a token: refused when
    /// `auth.required`, else the config's `user_id` is taken as it is. Then one admission
    /// from the rate limiter, waiting up to `admission_wait_ms`. Errors:
    /// `VB_ERR_UNAUTHORIZED`, `VB_ERR_RATE_LIMITED`, or what a hook returned.
    pub(crate) fn admit(&self, config: &SessionConfig, operation: &str) -> Result<String> {
        let token = config
            .auth_token
            .as_ref()
            .map(|t| t.expose())
            .filter(|t| !t.is_empty());
        let user_id = match (self.current_hook(), token) {
            (Some(hook), Some(token)) => {
                let user = hook.authenticate(token, &config.metadata)?;
                if user.user_id.is_empty() {
                    return Err(unauthorized(
                        "the auth hook accepted the token but named no user",
                    ));
                }
                if !config.user_id.is_empty() && config.user_id != user.user_id {
                    return Err(unauthorized(format!(
                        "user_id '{}' is not the token's user '{}'",
                        config.user_id, user.user_id
                    )));
                }
                if !hook.authorize(&user, operation)? {
                    return Err(unauthorized(format!(
                        "the auth hook does not allow user '{}' to {operation}",
                        user.user_id
                    )));
                }
                user.user_id
            }
            (None, Some(_)) if self.required => {
                return Err(unauthorized("auth.required: no auth hook checks tokens"));
            }
            (_, None) if self.required => {
                return Err(unauthorized("auth.required: the session has no auth_token"));
            }
            _ => config.user_id.clone(),
        };
        self.limit(&user_id, config.admission_wait_ms)?;
        Ok(user_id)
    }

    /// Admits a session resumed from the store: its user was authenticated when it was created
    /// and no token is stored, so the hook is asked only to authorize [`SESSION_RESUME`] for that
    /// user (with no claims); then the rate limiter. Returns the recorded user id.
    pub(crate) fn admit_resumed(&self, config: &SessionConfig) -> Result<String> {
        if let Some(hook) = self.current_hook() {
            let user = AuthResult {
                user_id: config.user_id.clone(),
                claims: serde_json::Value::Null,
            };
            if !hook.authorize(&user, SESSION_RESUME)? {
                return Err(unauthorized(format!(
                    "the auth hook does not allow user '{}' to {SESSION_RESUME}",
                    user.user_id
                )));
            }
        }
        self.limit(&config.user_id, config.admission_wait_ms)?;
        Ok(config.user_id.clone())
    }

    /// A session that arrived by itself (dispatched to this backend by a server that holds the
    /// credentials, e.g. a LiveKit job): no token to check; the rate limiter applies. Returns
    /// the user id.
    pub(crate) fn admit_arrival(&self, config: &SessionConfig) -> Result<String> {
        self.limit(&config.user_id, config.admission_wait_ms)?;
        Ok(config.user_id.clone())
    }

    /// Takes one admission of `user_id` from the rate limiter, waiting up to `wait_ms`.
    fn limit(&self, user_id: &str, wait_ms: u32) -> Result<()> {
        let limiter = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match wait_ms {
            0 => limiter.allow(user_id)?,
            ms => limiter.wait(user_id, Duration::from_millis(ms.into()))?,
        }
        Ok(())
    }
}

/// Logs an admission decision — the admitted user id, or the refusal with its reason (which
/// never quotes the token or a key) — and passes it on. In the caller's span.
pub(crate) fn logged(admitted: Result<String>, resumed: bool) -> Result<String> {
    match admitted {
        Ok(user_id) => {
            tracing::debug!(user_id = %user_id, resumed, "session admitted");
            Ok(user_id)
        }
        Err(e) => {
            tracing::info!(code = e.status().name(), "session refused: {}", e.message());
            Err(e)
        }
    }
}
