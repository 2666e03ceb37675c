//! How the realtime thread tells its session's I/O side that it left news in the rings (speech
//! frames, turn events, room in the reply ring, dropped audio), so that the I/O side sleeps until
//! there is something to do instead of polling.

/// Wakes the I/O side of a session. Called by the realtime thread at most once per pass of its
/// loop, after the news is in the rings.
///
/// Realtime-safe contract: an implementation must not allocate, lock or block (see
/// `pipeline::bell` for the one the engine uses).
pub trait IoWake: Send + Sync {
    /// There is news for the I/O side.
    fn wake_io(&self);
}

/// For code that polls the rings itself (benchmarks, tests of the loop alone).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoWake;

impl IoWake for NoWake {
    fn wake_io(&self) {}
}
