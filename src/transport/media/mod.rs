//! The media edge every network transport shares: Opus encoding and decoding ([`opus`]), the
//! jitter buffer that turns packets arriving at network pace into audio at speaking pace
//! ([`jitter`]), the WebRTC peer connection ([`peer`]: str0m and its UDP socket) and the 20 ms
//! media clock between them and a session ([`pump`]) for WebRTC (the LiveKit participant, direct
//! browser calls); G.711 μ-law and A-law ([`g711`]) for phone calls.

pub mod g711;
pub mod jitter;
pub mod opus;
pub mod peer;
pub mod pump;
