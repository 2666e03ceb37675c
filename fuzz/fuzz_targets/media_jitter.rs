//! RTP packets of an incoming Opus stream (WebRTC: a LiveKit participant's microphone) through the
//! jitter buffer and the Opus decoder — late, early, twice, reordered, with any sequence numbers,
//! timestamps, arrival times and payloads — while the pacer pulls 20 ms frames.
//!
//! Input: operations. `0x00`–`0xBF`: a packet — sequence number (u16), RTP timestamp (u32),
//! arrival delay since the previous operation in ms (u16), all little-endian, a payload length
//! byte and the payload. `0xC0`–`0xFF`: a pull.
//!
//! Checks: no panic and no endless loop (libFuzzer's timeout); every pull writes a whole frame or
//! nothing; the target delay stays between one frame and `MAX_TARGET_MS`; the counts add up.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use voicebackend::transport::media::jitter::{JitterBuffer, MAX_TARGET_MS, Pulled};
use voicebackend::transport::media::opus::FRAME_20MS;

fuzz_target!(|data: &[u8]| {
    let mut buffer = JitterBuffer::new().expect("an Opus decoder");
    let mut at = Instant::now();
    let mut rest = data;
    let mut pushed = 0u64;
    let mut out = [0i16; FRAME_20MS];
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        if op >= 0xC0 {
            out.fill(i16::MIN);
            match buffer.pull(&mut out).expect("the decoder works") {
                Pulled::Audio => {}
                Pulled::Nothing => assert!(out.iter().all(|&s| s == i16::MIN), "wrote nothing"),
            }
        } else {
            let Some((header, tail)) = rest.split_first_chunk::<9>() else {
                break;
            };
            let seq = u16::from_le_bytes([header[0], header[1]]);
            let ts = u32::from_le_bytes([header[2], header[3], header[4], header[5]]);
            at += Duration::from_millis(u64::from(u16::from_le_bytes([header[6], header[7]])));
            let len = usize::from(header[8]).min(tail.len());
            let (payload, tail) = tail.split_at(len);
            rest = tail;
            buffer.push(seq, ts, payload, at);
            pushed += 1;
        }
        let stats = buffer.stats();
        assert!((20..=MAX_TARGET_MS).contains(&stats.target_ms), "{stats:?}");
        // Packets not Opus are counted as malformed too, and so are those that later fail to
        // decode: the others are taken, late, duplicates or (buffer full) dropped.
        assert!(
            stats.received + stats.late + stats.duplicates <= pushed,
            "{stats:?}"
        );
        assert!(stats.recovered <= stats.lost, "{stats:?}");
    }
});
