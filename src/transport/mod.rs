//! Transports: how audio enters and leaves a session, and how a session reaches a remote peer.
//! `host` is the C calls; `pipecat` connects a session to a Pipecat bot over WebSocket (the
//! `pipecat` backend). Other network transports (WebSocket, WebRTC, LiveKit) come later.

pub mod host;
pub mod pipecat;

/// Transport names this build knows.
pub const TRANSPORTS: [&str; 1] = ["host"];
