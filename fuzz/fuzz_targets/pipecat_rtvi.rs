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
            let value: serde_json::Value = serde_json::from_str(json).expect("parsed as RTVI");
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
