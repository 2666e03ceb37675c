//! Deepgram listen-stream server messages through one turn's result handling.
//!
//! Input: a flags byte (bit 0: interim results, bit 1: 8 kHz instead of 16 kHz), the turn's audio
//! length and the samples covered when the connection opened (u32 little-endian each, the length
//! capped at 2^20), then the messages, one per line.
//!
//! Checks: no panic; refusals are `VB_ERR_PROVIDER` naming deepgram; the audio covered by final
//! results only grows and never passes the turn's audio; final segments are trimmed and not
//! empty; no partial without interim results.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::VbStatus;
use voicebackend::fuzzing::deepgram::server_messages;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let interim = data[0] & 1 == 1;
    let rate = if data[0] & 2 == 2 { 8000 } else { 16000 };
    let audio_len =
        u32::from_le_bytes(data[1..5].try_into().expect("4 bytes")) as usize % (1 << 20);
    let base = u32::from_le_bytes(data[5..9].try_into().expect("4 bytes")) as usize;
    let Ok(text) = std::str::from_utf8(&data[9..]) else {
        return;
    };
    let messages: Vec<&str> = text.split('\n').collect();
    let outcome = server_messages(&messages, rate, audio_len, base, interim);
    for answer in &outcome.answers {
        if let Err(e) = answer {
            assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
            assert!(e.message().starts_with("deepgram: "), "{}", e.message());
        }
    }
    assert!(outcome.covered >= base.min(audio_len), "coverage went back");
    assert!(
        outcome.covered <= audio_len,
        "covered {} of {audio_len}",
        outcome.covered
    );
    for segment in &outcome.finals {
        assert!(
            !segment.is_empty() && segment.trim() == segment,
            "{segment:?}"
        );
    }
    assert!(interim || outcome.partials.is_empty());
});
