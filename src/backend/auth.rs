//! Who may open a session: the [`AuthHook`] a host installs, and the built-in [`JwtHs256Hook`]
//! that verifies LiveKit access tokens (HS256 JWTs).
//!
//! Hooks run on the thread that creates (or resumes) a session, before anything of the session
//! exists; never on the realtime thread. A refusal is `VB_ERR_UNAUTHORIZED` with a message that
//! says why and never contains the token or the key.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::Secret;
use crate::error::{Error, Result, VbStatus};

/// The operation authorized when a session is created.
pub const SESSION_CREATE: &str = "session.create";
/// The operation authorized when a recovered session is reopened.
pub const SESSION_RESUME: &str = "session.resume";

/// Clock skew tolerated on `exp` and `nbf`, in seconds: the default leeway of the verifiers
/// LiveKit itself uses (Rust `jsonwebtoken`, Go `go-jose`).
pub const JWT_LEEWAY_SECS: u64 = 60;

/// Longest token accepted, in bytes (a LiveKit token with grants and metadata is well below).
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Who a credential belongs to, as [`AuthHook::authenticate`] established it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthResult {
    /// The authenticated user; becomes the session's `user_id`. Never empty.
    pub user_id: String,
    /// The credential's verified claims when it carries any (the JWT payload for
    /// [`JwtHs256Hook`]), else `Null`. [`AuthHook::authorize`] may read permissions from here.
    pub claims: Value,
}

/// Authentication and authorization of new sessions. Installed with
/// `Backend::set_auth_hook` (or built in from `auth.jwt_hs256_secret`); called on the thread
/// that creates or resumes a session, one call at a time per session but concurrently across
/// sessions.
pub trait AuthHook: Send + Sync {
    /// Verifies `token` (the session's `auth_token`; `metadata` is the session's metadata
    /// object) and names its user. A refusal is `VB_ERR_UNAUTHORIZED` saying why; another
    /// status (e.g. `VB_ERR_CONNECTION_FAILED` from a hook that asks a server) is passed on.
    fn authenticate(&self, token: &str, metadata: &Value) -> Result<AuthResult>;

    /// Whether `user` may perform `operation` ([`SESSION_CREATE`], [`SESSION_RESUME`]).
    /// `Ok(false)` refuses with a generic message; an error refuses with its own.
    fn authorize(&self, user: &AuthResult, operation: &str) -> Result<bool>;
}

/// Seconds since the Unix epoch, as a [`JwtHs256Hook`] reads the time (injectable for tests).
pub type UnixClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// `VB_ERR_UNAUTHORIZED` with `message`.
pub(crate) fn unauthorized(message: impl Into<String>) -> Error {
    Error::new(VbStatus::VB_ERR_UNAUTHORIZED, message)
}

/// The built-in hook: verifies HS256 JWT access tokens as LiveKit issues them
/// (`livekit-api`'s `AccessToken`, `lk token create`, the server SDKs).
///
/// Authentication: the header's `alg` must be `HS256` (`none` and every other algorithm are
/// refused before any other check); the signature is verified by the `jsonwebtoken` crate
/// (HMAC-SHA256 from aws-lc, compared in constant time) over the exact bytes received; `exp` is
/// required and `nbf` honoured, both with [`JWT_LEEWAY_SECS`], on the hook's clock; the
/// identity `sub` is required and becomes the user id. `iss` (the LiveKit API key) is not
/// checked: one backend has one key, and the signature already proves it.
///
/// Authorization of [`SESSION_CREATE`] and [`SESSION_RESUME`]: a conversation with an agent is
/// joining a room, speaking and listening, so the token's `video` grant must have
/// `roomJoin: true` and must not set `canPublish` or `canSubscribe` to `false` (LiveKit's
/// defaults for both are `true`). The grant's `room` is not checked (a session belongs to no
/// room); it is in [`AuthResult::claims`] for hosts that care. A session resumed from the store
/// (no token, no claims) is allowed: its token was verified when it was created. Other
/// operations are refused.
pub struct JwtHs256Hook {
    key: DecodingKey,
    /// HS256 only; time claims are checked on `now`, not by the crate.
    validation: Validation,
    now: UnixClock,
}

impl JwtHs256Hook {
    /// A hook verifying tokens signed with `secret`, on the system clock.
    pub fn new(secret: &Secret) -> Self {
        Self::with_clock(secret, Arc::new(system_unix_now))
    }

    /// A hook verifying tokens signed with `secret`, reading the time from `now`.
    pub fn with_clock(secret: &Secret, now: UnixClock) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        JwtHs256Hook {
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            now,
        }
    }

    /// Verifies `token` (algorithm, signature, `exp`, `nbf`) and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(unauthorized(format!(
                "the token is {} bytes long, more than the {MAX_TOKEN_BYTES} accepted",
                token.len()
            )));
        }
        // The algorithm first, with messages that say which one was refused (the crate would
        // only say "invalid").
        let parts: Vec<&str> = token.split('.').collect();
        let [header, _, _] = parts[..] else {
            return Err(unauthorized(
                "malformed token: a JWT is three base64url parts joined by dots",
            ));
        };
        check_algorithm(&decode_object(header, "header")?)?;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => {
                    unauthorized("bad signature: the token was not signed with this backend's key")
                }
                ErrorKind::InvalidToken => {
                    unauthorized("malformed token: a JWT is three base64url parts joined by dots")
                }
                ErrorKind::Base64(_) => unauthorized("malformed token: a part is not base64url"),
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                    unauthorized("malformed token: the payload is not a JSON object")
                }
                _ => unauthorized("the token was refused by the JWT verifier"),
            })?
            .claims;
        let now = (self.now)();
        let exp = time_claim(&claims, "exp")?
            .ok_or_else(|| unauthorized("the token has no exp (expiry) claim"))?;
        if now > exp.saturating_add(JWT_LEEWAY_SECS) {
            return Err(unauthorized(format!(
                "the token expired {} s ago",
                now - exp
            )));
        }
        let nbf = time_claim(&claims, "nbf")?.unwrap_or(0);
        if now.saturating_add(JWT_LEEWAY_SECS) < nbf {
            return Err(unauthorized(format!(
                "the token is not valid yet (nbf is {} s ahead)",
                nbf - now
            )));
        }
        Ok(claims)
    }
}

impl AuthHook for JwtHs256Hook {
    fn authenticate(&self, token: &str, _metadata: &Value) -> Result<AuthResult> {
        let claims = self.verify(token)?;
        let user_id = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => {
                return Err(unauthorized(
                    "the token has no identity (sub claim): a session needs a user",
                ));
            }
        };
        Ok(AuthResult {
            user_id,
            claims: Value::Object(claims),
        })
    }

    fn authorize(&self, user: &AuthResult, operation: &str) -> Result<bool> {
        if operation != SESSION_CREATE && operation != SESSION_RESUME {
            return Ok(false);
        }
        if operation == SESSION_RESUME && user.claims.is_null() {
            // The host resumes its own recovered session: the user's token was verified when the
            // session was created, and tokens are never stored.
            return Ok(true);
        }
        let video = user.claims.get("video");
        let grant = |name: &str| video.and_then(|v| v.get(name)).and_then(Value::as_bool);
        if grant("roomJoin") != Some(true) {
            return Err(unauthorized(format!(
                "the token of '{}' does not grant roomJoin, which {operation} needs",
                user.user_id
            )));
        }
        for name in ["canPublish", "canSubscribe"] {
            if grant(name) == Some(false) {
                return Err(unauthorized(format!(
                    "the token of '{}' sets {name} to false: a conversation needs it",
                    user.user_id
                )));
            }
        }
        Ok(true)
    }
}

impl std::fmt::Debug for JwtHs256Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtHs256Hook { key: *** }")
    }
}

fn system_unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Decodes one base64url JSON-object part of a token. Messages name the part, never its bytes.
fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| unauthorized(format!("malformed token: the {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| unauthorized(format!("malformed token: the {what} is not a JSON object")))
}

fn check_algorithm(header: &Map<String, Value>) -> Result<()> {
    match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => Ok(()),
        Some(alg) if alg.eq_ignore_ascii_case("none") => Err(unauthorized(
            "unsigned tokens (alg \"none\") are refused: only HS256 is accepted",
        )),
        Some(alg) if alg.len() <= 8 && alg.bytes().all(|b| b.is_ascii_alphanumeric()) => Err(
            unauthorized(format!("alg \"{alg}\" is refused: only HS256 is accepted")),
        ),
        Some(_) => Err(unauthorized(
            "the token's alg is refused: only HS256 is accepted",
        )),
        None => Err(unauthorized(
            "the token's header names no alg: only HS256 is accepted",
        )),
    }
}

/// A NumericDate claim (seconds since the epoch), when present.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| unauthorized(format!("the token's {name} claim is negative"))),
        Some(_) => Err(unauthorized(format!(
            "the token's {name} claim is not a number"
        ))),
    }
}
