//! Transports: how audio enters and leaves a session. `host` is the C calls; network transports
//! (WebSocket, WebRTC, LiveKit, Pipecat) come later as producers of the same rings.

pub mod host;

/// Transport names this build knows.
pub const TRANSPORTS: [&str; 1] = ["host"];
