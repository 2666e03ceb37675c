//! One RTVI message from a Pipecat bot (the JSON inside a `MessageFrame`).
//!
//! Checks: no panic; refusals are `VB_ERR_PROVIDER` naming pipecat; what is read is exactly in
//! the message (a transcript or reply text is its `data.text`, from the message type named).
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::VbStatus;
use voicebackend::provider::network::pipecat::rtvi::{self, RtviEvent};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    match rtvi::parse(json) {
        Err(e) => {
            assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
            assert!(e.message().starts_with("pipecat: "), "{}", e.message());
        }
        Ok(event) => {
            // serde_json skips the fields RTVI does not read without checking their escapes, so
            // an accepted message may hold a lone surrogate (`\ud800`) that a `Value` refuses
            // (found by this target). What is read was parsed strictly: compare when both parse.
            let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
                return;
            };
            let text = match &event {
                RtviEvent::UserInput { text, .. }
                | RtviEvent::UserTranscription { text, .. }
                | RtviEvent::BotOutput { text, .. } => Some((text, "text")),
                RtviEvent::ReplyText { source, text } => {
                    assert_eq!(value["type"].as_str(), Some(source.message_type()));
                    Some((text, "text"))
                }
                RtviEvent::Error { message, .. } => Some((message, "error")),
                _ => None,
            };
            if let Some((text, field)) = text {
                assert_eq!(value["data"][field].as_str(), Some(text.as_str()));
            }
        }
    }
});
