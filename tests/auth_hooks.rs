//! Who may open a session, through the Rust API: the built-in HS256 JWT hook on real LiveKit
//! access tokens (minted by LiveKit's own Rust SDK; expiry, signature, algorithm, form, identity
//! and grants checked, nothing secret in any message) and host auth hooks. Rate limits and the
//! order of admission are in `tests/admission.rs`.
#![cfg(feature = "test-providers")]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::admission::{NO_RATE_LIMIT, RecordingHook, backend, create, refusal, session_config};
use common::*;
use hmac::{Hmac, Mac};
use livekit_api::access_token::{AccessToken, VideoGrants};
use serde_json::{Value, json};
use sha2::Sha256;
use voicebackend::backend::auth::{AuthHook, AuthResult, JWT_LEEWAY_SECS, JwtHs256Hook};
use voicebackend::config::Secret;
use voicebackend::{Backend, Error, Result, SessionConfig, VbStatus};

const SECRET: &str = "lk-test-secret-3f9a1c77d2b84e05";
const API_KEY: &str = "APIvoicebackendtest";

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A LiveKit access token (minted by LiveKit's own Rust SDK) for `identity` with `grants`.
fn livekit_token(identity: &str, grants: VideoGrants) -> String {
    AccessToken::with_api_key(API_KEY, SECRET)
        .with_identity(identity)
        .with_name("Test User")
        .with_grants(grants)
        .to_jwt()
        .expect("minting a LiveKit token")
}

fn room_join(room: &str) -> VideoGrants {
    VideoGrants {
        room_join: true,
        room: room.to_owned(),
        ..VideoGrants::default()
    }
}

fn alice_token() -> String {
    livekit_token("alice", room_join("support"))
}

/// The built-in hook with the test secret, its clock `offset_secs` away from now.
fn jwt_hook_at(offset_secs: i64) -> JwtHs256Hook {
    JwtHs256Hook::with_clock(
        &Secret::new(SECRET),
        Arc::new(move || unix_now().saturating_add_signed(offset_secs)),
    )
}

/// A JWT with `header` and `payload` (JSON), signed HS256 with `key`: for tokens LiveKit's
/// SDK would never make.
fn hand_made_jwt(header: &Value, payload: &Value, key: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

fn valid_claims(identity: &str) -> Value {
    let now = unix_now();
    json!({"iss": API_KEY, "sub": identity, "nbf": now, "exp": now + 600,
           "video": {"roomJoin": true, "room": "support"}})
}

/// The refusal of `authenticate` then `authorize`, as one result.
fn admit_with(hook: &JwtHs256Hook, token: &str) -> Result<AuthResult> {
    let user = hook.authenticate(token, &json!({}))?;
    match hook.authorize(&user, "session.create")? {
        true => Ok(user),
        false => Err(Error::new(VbStatus::VB_ERR_UNAUTHORIZED, "refused")),
    }
}

/// Asserts an `VB_ERR_UNAUTHORIZED` refusal whose message contains `why` and neither the
/// token nor the secret.
fn assert_refused<T: std::fmt::Debug>(result: Result<T>, why: &str, token: &str) {
    let (status, message) = refusal(result);
    assert_eq!(status, VbStatus::VB_ERR_UNAUTHORIZED, "{message}");
    assert!(message.contains(why), "'{why}' not in: {message}");
    assert_no_secret(&message, token);
}

fn assert_no_secret(message: &str, token: &str) {
    assert!(!message.contains(SECRET), "the secret leaked: {message}");
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(
            !message.contains(part),
            "a part of the token leaked: {message}"
        );
    }
}

/// `extra` plus the built-in JWT hook with the test secret.
fn jwt_backend(required: bool, extra: &str) -> Backend {
    let b = backend(&format!(
        r#""auth":{{"jwt_hs256_secret":"{SECRET}","required":{required}}},{extra}"#
    ));
    b.start().unwrap();
    b
}

// ---------------------------------------------------------------------------------------------
// The built-in JWT hook.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_livekit_access_token_admits_a_session_as_its_identity() {
    let backend = jwt_backend(true, NO_RATE_LIMIT);
    let session = create(&backend, "", Some(&alice_token())).expect("a valid token");
    assert_eq!(session.config().user_id, "alice");
    // The same user may name herself.
    let again = create(&backend, "alice", Some(&alice_token())).expect("matching user_id");
    assert_eq!(again.config().user_id, "alice");
    assert_eq!(backend.active_sessions(), 2);
    session.start().expect("an admitted session starts");
}

#[test]
fn the_verified_claims_are_handed_to_the_host() {
    let user = admit_with(&jwt_hook_at(0), &alice_token()).unwrap();
    assert_eq!(user.user_id, "alice");
    assert_eq!(user.claims["iss"], API_KEY);
    assert_eq!(user.claims["name"], "Test User");
    assert_eq!(user.claims["video"]["room"], "support");
}

#[test]
fn an_expired_token_is_refused_after_the_leeway() {
    let token = AccessToken::with_api_key(API_KEY, SECRET)
        .with_identity("alice")
        .with_grants(room_join("support"))
        .with_ttl(Duration::from_secs(600))
        .to_jwt()
        .unwrap();
    // Within the documented leeway after exp: still valid.
    let within = 600 + JWT_LEEWAY_SECS as i64 - 5;
    assert!(admit_with(&jwt_hook_at(within), &token).is_ok());
    let after = 600 + JWT_LEEWAY_SECS as i64 + 5;
    assert_refused(admit_with(&jwt_hook_at(after), &token), "expired", &token);
}

#[test]
fn a_token_before_its_nbf_is_refused_as_not_yet_valid() {
    let token = alice_token(); // nbf: now
    let early = -(JWT_LEEWAY_SECS as i64) - 120;
    assert_refused(
        admit_with(&jwt_hook_at(early), &token),
        "not valid yet",
        &token,
    );
    assert!(admit_with(&jwt_hook_at(-(JWT_LEEWAY_SECS as i64) + 5), &token).is_ok());
}

#[test]
fn a_tampered_token_fails_its_signature() {
    let token = alice_token();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("mallory");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_refused(
        admit_with(&jwt_hook_at(0), &forged),
        "bad signature",
        &forged,
    );
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_refused(
        admit_with(&jwt_hook_at(0), &flipped),
        "bad signature",
        &flipped,
    );
}

#[test]
fn a_token_signed_with_another_key_is_refused() {
    let token = AccessToken::with_api_key(API_KEY, "some-other-projects-secret")
        .with_identity("alice")
        .with_grants(room_join("support"))
        .to_jwt()
        .unwrap();
    assert_refused(admit_with(&jwt_hook_at(0), &token), "bad signature", &token);
}

#[test]
fn unsigned_and_other_algorithm_tokens_are_refused() {
    let claims = valid_claims("alice");
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert_refused(admit_with(&jwt_hook_at(0), &none), "alg \"none\"", &none);
    // Correctly HMAC-signed with the right key, but claiming another algorithm.
    for alg in ["HS512", "RS256", "ES256"] {
        let token = hand_made_jwt(&json!({"alg": alg, "typ": "JWT"}), &claims, SECRET);
        assert_refused(admit_with(&jwt_hook_at(0), &token), alg, &token);
    }
    let no_alg = hand_made_jwt(&json!({"typ": "JWT"}), &claims, SECRET);
    assert_refused(
        admit_with(&jwt_hook_at(0), &no_alg),
        "names no alg",
        &no_alg,
    );
    // The same claims with HS256 pass: the algorithm alone was the reason.
    let good = hand_made_jwt(&json!({"alg": "HS256", "typ": "JWT"}), &claims, SECRET);
    assert!(admit_with(&jwt_hook_at(0), &good).is_ok());
}

#[test]
fn malformed_tokens_are_refused_with_the_reason() {
    let hook = jwt_hook_at(0);
    for (token, why) in [
        ("", "three base64url parts"),
        ("only.two", "three base64url parts"),
        ("a.b.c.d", "three base64url parts"),
        ("!!!.e30.c2ln", "header is not base64url"),
        ("bm90IGpzb24.e30.c2ln", "header is not a JSON object"),
    ] {
        assert_refused(admit_with(&hook, token), why, token);
    }
    let long = "x".repeat(9000);
    assert_refused(admit_with(&hook, &long), "more than the 8192", &long);
    let no_exp = hand_made_jwt(
        &json!({"alg": "HS256"}),
        &json!({"sub": "alice", "video": {"roomJoin": true}}),
        SECRET,
    );
    assert_refused(admit_with(&hook, &no_exp), "no exp", &no_exp);
    let text_exp = hand_made_jwt(
        &json!({"alg": "HS256"}),
        &json!({"sub": "alice", "exp": "tomorrow"}),
        SECRET,
    );
    assert_refused(
        admit_with(&hook, &text_exp),
        "exp claim is not a number",
        &text_exp,
    );
}

#[test]
fn a_token_without_an_identity_is_refused() {
    let token = AccessToken::with_api_key(API_KEY, SECRET)
        .with_grants(VideoGrants {
            room_list: true,
            ..VideoGrants::default()
        })
        .to_jwt()
        .unwrap();
    assert_refused(admit_with(&jwt_hook_at(0), &token), "no identity", &token);
}

#[test]
fn session_create_needs_room_join_and_publish_and_subscribe() {
    let hook = jwt_hook_at(0);
    let no_join = livekit_token(
        "alice",
        VideoGrants {
            room_list: true,
            ..VideoGrants::default()
        },
    );
    assert_refused(admit_with(&hook, &no_join), "roomJoin", &no_join);
    let listen_only = livekit_token(
        "alice",
        VideoGrants {
            can_publish: Some(false),
            ..room_join("support")
        },
    );
    assert_refused(admit_with(&hook, &listen_only), "canPublish", &listen_only);
    let deaf = livekit_token(
        "alice",
        VideoGrants {
            can_subscribe: Some(false),
            ..room_join("support")
        },
    );
    assert_refused(admit_with(&hook, &deaf), "canSubscribe", &deaf);
    let user = hook.authenticate(&alice_token(), &json!({})).unwrap();
    assert!(hook.authorize(&user, "session.resume").unwrap());
    assert!(!hook.authorize(&user, "backend.admin").unwrap());
}

#[test]
fn a_user_id_that_is_not_the_tokens_identity_is_refused() {
    let backend = jwt_backend(false, NO_RATE_LIMIT);
    let token = alice_token();
    let (status, message) = refusal(create(&backend, "bob", Some(&token)));
    assert_eq!(status, VbStatus::VB_ERR_UNAUTHORIZED);
    assert!(
        message.contains("'bob'") && message.contains("'alice'"),
        "{message}"
    );
    assert_no_secret(&message, &token);
    assert_eq!(backend.active_sessions(), 0);
}

#[test]
fn auth_required_refuses_a_session_without_a_token() {
    let backend = jwt_backend(true, NO_RATE_LIMIT);
    let (status, message) = refusal(create(&backend, "alice", None));
    assert_eq!(status, VbStatus::VB_ERR_UNAUTHORIZED);
    assert!(message.contains("no auth_token"), "{message}");
    let (status, _) = refusal(create(&backend, "alice", Some("")));
    assert_eq!(status, VbStatus::VB_ERR_UNAUTHORIZED);
    assert_eq!(backend.active_sessions(), 0);
    // Without `required`, a session without a token is admitted as the user it names.
    let open = jwt_backend(false, NO_RATE_LIMIT);
    let session = create(&open, "guest", None).unwrap();
    assert_eq!(session.config().user_id, "guest");
}

#[test]
fn auth_required_without_any_hook_fails_at_start() {
    let b = backend(r#""auth":{"required":true}"#);
    let (status, message) = refusal(b.start());
    assert_eq!(status, VbStatus::VB_ERR_INVALID_CONFIG);
    assert!(message.starts_with("auth.required"), "{message}");
    // A host hook is enough.
    let b = backend(r#""auth":{"required":true}"#);
    b.set_auth_hook(Arc::new(RecordingHook::default())).unwrap();
    b.start().unwrap();
}

#[test]
fn the_session_token_never_prints() {
    let token = alice_token();
    let config = SessionConfig::from_json(&format!(r#"{{"auth_token":"{token}"}}"#)).unwrap();
    assert_eq!(config.auth_token.as_ref().unwrap().expose(), token);
    assert_no_secret(&format!("{config:?}"), &token);
    assert_no_secret(&format!("{:?}", jwt_hook_at(0)), &token);
}

// ---------------------------------------------------------------------------------------------
// Custom auth hooks.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_host_hook_authenticates_then_authorizes_session_create() {
    let b = backend(NO_RATE_LIMIT);
    let hook = Arc::new(RecordingHook::default());
    b.set_auth_hook(hook.clone()).unwrap();
    b.start().unwrap();
    let config = SessionConfig {
        metadata: json!({"app": "kiosk"}),
        ..session_config("", Some("token-for-carol"))
    };
    let session = b.create_session(config, Some(echo_agent()), None).unwrap();
    assert_eq!(session.config().user_id, "carol");
    assert_eq!(
        *hook.calls.lock().unwrap(),
        ["authenticate \"kiosk\"", "authorize carol session.create"]
    );
    let (status, message) = refusal(create(&b, "", Some("token-for-eve")));
    assert_eq!(status, VbStatus::VB_ERR_UNAUTHORIZED);
    assert!(
        message.contains("'eve'") && message.contains("session.create"),
        "{message}"
    );
}

#[test]
fn a_hook_error_other_than_unauthorized_is_passed_on() {
    struct Unreachable;
    impl AuthHook for Unreachable {
        fn authenticate(&self, _: &str, _: &Value) -> Result<AuthResult> {
            Err(Error::new(
                VbStatus::VB_ERR_CONNECTION_FAILED,
                "auth server unreachable",
            ))
        }
        fn authorize(&self, _: &AuthResult, _: &str) -> Result<bool> {
            Ok(true)
        }
    }
    let b = backend(NO_RATE_LIMIT);
    b.set_auth_hook(Arc::new(Unreachable)).unwrap();
    b.start().unwrap();
    let (status, message) = refusal(create(&b, "", Some("anything")));
    assert_eq!(status, VbStatus::VB_ERR_CONNECTION_FAILED);
    assert_eq!(message, "auth server unreachable");
}
