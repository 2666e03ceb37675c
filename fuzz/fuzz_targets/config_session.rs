//! Session configuration JSON, as `vb_session_create` gets it.
//!
//! Checks: no panic; every refusal is `VB_ERR_INVALID_CONFIG`; a configuration that parsed
//! validates again, serializes without its secrets (`auth_token`, `connection_token`), and what it
//! serializes to (what the session store keeps) parses back to the same configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::{SessionConfig, VbStatus};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let config = match SessionConfig::from_json(json) {
        Ok(config) => config,
        Err(e) => {
            assert_eq!(
                e.status(),
                VbStatus::VB_ERR_INVALID_CONFIG,
                "{}",
                e.message()
            );
            return;
        }
    };
    config.validate().expect("a parsed configuration validates");
    let stored = serde_json::to_string(&config).expect("a configuration serializes");
    let value: serde_json::Value = serde_json::from_str(&stored).expect("JSON");
    assert!(value.get("auth_token").is_none(), "stored: {stored}");
    assert!(value.get("connection_token").is_none(), "stored: {stored}");
    let back = SessionConfig::from_json(&stored)
        .unwrap_or_else(|e| panic!("the stored form {stored} does not parse: {}", e.message()));
    let stored_again = serde_json::to_string(&back).expect("a configuration serializes");
    assert_eq!(
        stored, stored_again,
        "the stored form changed on a round trip"
    );
});
