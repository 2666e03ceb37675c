//! The media edge every network transport shares: Opus encoding and decoding ([`opus`]) and the
//! jitter buffer that turns packets arriving at network pace into audio at speaking pace
//! ([`jitter`]) for WebRTC (the LiveKit participant, direct browser calls); G.711 μ-law and
//! A-law ([`g711`]) for phone calls.

pub mod g711;
pub mod jitter;
pub mod opus;
