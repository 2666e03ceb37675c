//! What reaches the agent's LiveKit participant from the network: signal messages from the
//! server (protobuf `SignalResponse`s) through what the participant does with them — the room's
//! participants and whom the agent listens to, the SDP of offers and answers (str0m's parser and
//! negotiation), trickled ICE candidates (JSON) — and UDP datagrams from anyone on the peer
//! connections' ports (STUN, DTLS, RTP, RTCP, noise).
//!
//! Input: a byte choosing the user the agent waits for (odd: `user`, even: whoever speaks first),
//! then records: a u16 little-endian header — the low 14 bits a length, bit 15 set for a datagram
//! (bit 14: to the publisher's port) — and that many bytes.
//!
//! Checks: no panic; a signal message that does not decode is `VB_ERR_PROVIDER` naming livekit;
//! anything else refused is a provider error too (the participant reports it and goes on).
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::VbStatus;
use voicebackend::fuzzing::livekit::{Arrival, signal_messages};

fuzz_target!(|data: &[u8]| {
    let Some((&who, mut rest)) = data.split_first() else {
        return;
    };
    let user_id = if who % 2 == 1 { "user" } else { "" };
    let mut arrivals = Vec::new();
    while let Some((header, tail)) = rest.split_first_chunk::<2>() {
        let header = u16::from_le_bytes(*header);
        let len = usize::from(header & 0x3fff).min(tail.len());
        let bytes = &tail[..len];
        arrivals.push(if header & 0x8000 != 0 {
            Arrival::Datagram {
                publisher: header & 0x4000 != 0,
                bytes,
            }
        } else {
            Arrival::Signal(bytes)
        });
        rest = &tail[len..];
        if arrivals.len() == 32 {
            break;
        }
    }
    for answer in signal_messages(&arrivals, user_id) {
        if let Err(e) = answer {
            assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
            assert!(e.message().starts_with("livekit: "), "{}", e.message());
        }
    }
});
