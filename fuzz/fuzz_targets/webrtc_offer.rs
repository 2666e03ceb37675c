//! What a browser sends the direct WebRTC signalling endpoint: `POST /api/offer` bodies (Pipecat
//! SmallWebRTC's JSON with an SDP offer, a `pc_id` to renegotiate, `restart_pc`) and `PATCH
//! /api/offer` bodies (trickled candidates), through what a call does with them: a new str0m
//! peer connection answering the offer, a renegotiation of the last one, candidates added to it.
//!
//! Input: records, each a u16 little-endian header — the top bit the method (1: PATCH), the low
//! 15 bits the body's length — then the body (at most 8 records).
//!
//! Checks: no panic; a refusal is 400 (what the client sent) or 503 (no socket), with a JSON
//! body saying why and the same status; an answer is an SDP; a candidate or connection error is
//! `VB_ERR_PROVIDER` naming the transport.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::VbStatus;
use voicebackend::fuzzing::webrtc::{Outcome, Request, offer_requests};

fuzz_target!(|data: &[u8]| {
    let mut requests = Vec::new();
    let mut rest = data;
    while let Some((header, tail)) = rest.split_first_chunk::<2>() {
        let header = u16::from_le_bytes(*header);
        let len = usize::from(header & 0x7fff).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        requests.push(if header & 0x8000 != 0 {
            Request::Patch(body)
        } else {
            Request::Offer(body)
        });
        if requests.len() == 8 {
            break;
        }
    }
    for (outcome, drained) in offer_requests(&requests) {
        match outcome {
            Outcome::Refused(refusal) => {
                assert!(matches!(refusal.status, 400 | 503), "{refusal:?}");
                let body: serde_json::Value =
                    serde_json::from_str(&refusal.body()).expect("a refusal's body is JSON");
                assert_eq!(body["status"], refusal.status);
                assert_eq!(body["error"].as_str(), Some(refusal.message.as_str()));
                assert!(!refusal.message.is_empty());
            }
            Outcome::Answered(sdp) => assert!(sdp.starts_with("v=0"), "{sdp}"),
            Outcome::Patched(results) => {
                for e in results.iter().filter_map(|r| r.as_ref().err()) {
                    assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
                    assert!(e.message().starts_with("webrtc: "), "{}", e.message());
                }
            }
        }
        if let Some(e) = drained {
            assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
        }
    }
});
