//! A LiveKit agent-worker server message (protobuf `ServerMessage`): registration, availability
//! requests, job assignments and terminations; for an assignment, the session the worker opens
//! for the job.
//!
//! Checks: no panic; a message that does not decode is `VB_ERR_PROVIDER`; a job's session either
//! validates or is refused as `VB_ERR_INVALID_CONFIG`, and one that validates is stored without
//! its token and read back from the store as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::fuzzing::livekit::worker_message;
use voicebackend::{SessionConfig, VbStatus};

fuzz_target!(|data: &[u8]| {
    let (_, session) = match worker_message(data) {
        Ok(Some(decoded)) => decoded,
        Ok(None) => return,
        Err(e) => {
            assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
            return;
        }
    };
    let Some((config, info)) = session else {
        return;
    };
    assert_eq!(info["source"], "livekit-dispatch");
    assert!(config.connection_token.is_some());
    if let Err(e) = config.validate() {
        assert_eq!(
            e.status(),
            VbStatus::VB_ERR_INVALID_CONFIG,
            "{}",
            e.message()
        );
        return;
    }
    let stored = serde_json::to_string(&config).expect("a configuration serializes");
    let value: serde_json::Value = serde_json::from_str(&stored).expect("JSON");
    assert!(value.get("connection_token").is_none(), "stored: {stored}");
    let back = SessionConfig::from_json(&stored)
        .unwrap_or_else(|e| panic!("the stored form {stored} does not parse: {}", e.message()));
    assert_eq!(back.conversation_id, config.conversation_id);
    assert_eq!(back.room, config.room);
    assert_eq!(back.user_id, config.user_id);
});
