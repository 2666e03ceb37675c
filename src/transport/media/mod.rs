//! The media edge every WebRTC transport shares (the LiveKit participant, and direct browser
//! calls): Opus encoding and decoding ([`opus`]) and the jitter buffer that turns packets arriving
//! at network pace into audio at speaking pace ([`jitter`]).

pub mod g711;
pub mod jitter;
pub mod opus;
