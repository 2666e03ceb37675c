//! HS256 access tokens through the built-in auth hook (`auth.jwt_hs256_secret`): verification,
//! authentication and authorization, on a clock the input sets.
//!
//! Input: 8 bytes of the clock (seconds, little-endian), a mode byte, then either the token as it
//! came (mode bit 0 clear) or a header and a payload JSON separated by a newline, which the target
//! encodes and signs (with the hook's key, or with another key when mode bit 1 is set) so that
//! the checks after the signature are reached too.
//!
//! Checks: no panic; every refusal is `VB_ERR_UNAUTHORIZED` and never shows the key (beyond the
//! user's own identity, which a refusal names and a token signed with the key may spell out); a
//! token signed with another key is never accepted; an accepted token names a user and has not
//! expired.
#![no_main]

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use voicebackend::VbStatus;
use voicebackend::backend::auth::{
    AuthHook, JWT_LEEWAY_SECS, JwtHs256Hook, SESSION_CREATE, SESSION_RESUME,
};
use voicebackend::config::Secret;

const KEY: &str = "fuzz-hs256-signing-key-7f3a9c";
const OTHER_KEY: &str = "another-signing-key-0000";

fn sign(header: &[u8], payload: &[u8], key: &str) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let now = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let mode = data[8];
    let rest = &data[9..];
    let forged = mode & 1 == 1 && mode & 2 == 2;
    let token = if mode & 1 == 0 {
        match std::str::from_utf8(rest) {
            Ok(token) => token.to_owned(),
            Err(_) => return,
        }
    } else {
        let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let (header, payload) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
        sign(header, payload, if forged { OTHER_KEY } else { KEY })
    };
    let hook = JwtHs256Hook::with_clock(&Secret::new(KEY), Arc::new(move || now));
    let metadata = serde_json::json!({});
    match hook.authenticate(&token, &metadata) {
        Err(e) => {
            assert_eq!(e.status(), VbStatus::VB_ERR_UNAUTHORIZED, "{}", e.message());
            assert!(!e.message().contains(KEY), "the key in: {}", e.message());
        }
        Ok(user) => {
            assert!(!forged, "a token signed with another key was accepted");
            assert!(!user.user_id.is_empty(), "a user without an id");
            let exp = &user.claims["exp"];
            let exp = exp.as_u64().or_else(|| exp.as_f64().map(|f| f as u64));
            let exp = exp.expect("an accepted token has an exp");
            assert!(
                now <= exp.saturating_add(JWT_LEEWAY_SECS),
                "expired at {exp}, now {now}"
            );
            for operation in [SESSION_CREATE, SESSION_RESUME, "session.delete"] {
                match hook.authorize(&user, operation) {
                    Ok(allowed) => assert!(
                        !allowed || operation != "session.delete",
                        "an unknown operation was allowed"
                    ),
                    Err(e) => {
                        assert_eq!(e.status(), VbStatus::VB_ERR_UNAUTHORIZED);
                        // A refusal names the user, as the token (signed with the key) says.
                        let message = e.message().replace(&user.user_id, "");
                        assert!(!message.contains(KEY), "the key in: {}", e.message());
                    }
                }
            }
        }
    }
});
