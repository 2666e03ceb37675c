//! Transports: how a session's audio reaches the engine and leaves it. A transport holds the
//! edge of the session's rings ([`edge`]) — it produces into the input ring and consumes the out
//! ring, exactly like a host does — and the realtime loop does not know which one feeds it.
//!
//! `host` is the C calls (`process_audio` / `read_audio`).

pub mod edge;
pub mod host;

/// The transport of sessions whose audio comes through the host's calls.
pub const HOST: &str = "host";
