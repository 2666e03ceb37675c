//! The text frames a telephony provider sends one call (Twilio Media Streams or Telnyx media
//! streaming JSON: `connected`, `start`, `media` with base64 G.711, `dtmf`, `mark`, `stop`,
//! Telnyx `error`), through the parser and what a call does with them while its session starts.
//!
//! Input: the first byte picks the vendor (bit 0: Telnyx), the rest is frames separated by
//! newlines (at most 32).
//!
//! Checks: no panic; every refusal is `VB_ERR_PROVIDER` naming the phone transport and the
//! vendor, and quotes at most an excerpt of what was sent (a provider's frame never floods the
//! host's logs); a frame the parser accepts is never refused by the call as malformed JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::VbStatus;
use voicebackend::fuzzing::phone::call_frames;
use voicebackend::transport::phone::protocol::Dialect;

/// Longer than any message of the transport: its own words plus an 80-character excerpt and a
/// JSON parser's complaint.
const MAX_MESSAGE: usize = 400;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let dialect = if first & 1 == 1 {
        Dialect::Telnyx
    } else {
        Dialect::Twilio
    };
    let frames: Vec<&str> = text.split('\n').take(32).collect();
    let prefix = format!("phone: {}: ", dialect.name());
    for (frame, (parsed, answer)) in frames.iter().zip(call_frames(dialect, &frames)) {
        for e in [parsed.as_ref().err(), answer.as_ref().err()].into_iter().flatten() {
            assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
            assert!(e.message().starts_with(&prefix), "{}", e.message());
            assert!(
                e.message().chars().count() <= MAX_MESSAGE,
                "a refusal of {} characters: {}",
                e.message().chars().count(),
                e.message()
            );
        }
        if parsed.is_ok() {
            if let Err(e) = &answer {
                assert!(
                    !e.message().contains("is not the JSON"),
                    "parsed, then refused as not JSON: {frame:?}: {}",
                    e.message()
                );
            }
        }
    }
});
