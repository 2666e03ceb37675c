//! ElevenLabs stream-input server messages through one reply's handling.
//!
//! Input: the reply text sent so far on the first line, then the server's messages, one per line.
//!
//! Checks: no panic; refusals are `VB_ERR_PROVIDER` naming elevenlabs; alignment never counts more
//! characters spoken than were sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::VbStatus;
use voicebackend::fuzzing::elevenlabs::server_messages;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let sent = lines.next().unwrap_or_default();
    let messages: Vec<&str> = lines.collect();
    let outcome = server_messages(sent, &messages);
    for answer in &outcome.answers {
        match answer {
            Err(e) => {
                assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
                assert!(e.message().starts_with("elevenlabs: "), "{}", e.message());
            }
            Ok(flow) => assert_ne!(*flow, "abandoned", "the audio is still read"),
        }
    }
    assert_eq!(outcome.sent, sent.chars().count());
    assert!(
        outcome.spoken <= outcome.sent,
        "{} of {}",
        outcome.spoken,
        outcome.sent
    );
});
