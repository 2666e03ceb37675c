//! The two ends of a session's audio that a transport holds: the writer of user audio into the
//! input ring and the reader of the agent's audio from the out ring. The host transport wraps
//! them for the C calls ([`super::host`]); network transports own them on the I/O runtime.
//!
//! Both are realtime-safe: wait-free ring copies, no allocation, no lock.

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

use crate::rt::core::EdgeEnds;
use crate::rt::shared::{EngineCounters, RtShared};

/// What one [`EdgeWriter::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Samples taken into the input ring.
    pub accepted: usize,
    /// Samples that did not fit and were dropped (counted and reported).
    pub dropped: usize,
}

/// Writes user audio at the session's input rate into the input ring.
pub struct EdgeWriter {
    ring: rtrb::Producer<i16>,
    input_frame: usize,
    shared: Arc<RtShared>,
    counters: Arc<EngineCounters>,
}

/// Reads the agent's audio at the session's output rate from the out ring, skipping what a
/// barge-in flushed.
pub struct EdgeReader {
    ring: rtrb::Consumer<i16>,
    read_total: u64,
    shared: Arc<RtShared>,
}

/// Splits a session's edge ends into its writer and reader. `input_frame` is one frame at the
/// input rate: the realtime thread is woken once a whole frame waits.
pub fn split(
    ends: EdgeEnds,
    input_frame: usize,
    shared: Arc<RtShared>,
    counters: Arc<EngineCounters>,
) -> (EdgeWriter, EdgeReader) {
    (
        EdgeWriter {
            ring: ends.input,
            input_frame: input_frame.max(1),
            shared: shared.clone(),
            counters,
        },
        EdgeReader {
            ring: ends.output,
            read_total: 0,
            shared,
        },
    )
}

impl EdgeWriter {
    /// Copies `pcm` into the input ring and wakes the realtime thread when a frame is complete.
    /// Samples that do not fit are dropped, counted in health and reported as an event.
    /// Realtime-safe.
    pub fn push(&mut self, pcm: &[i16]) -> PushOutcome {
        // Stamped before the samples become visible, so the realtime thread never sees new
        // samples with the previous push's time (a false deadline miss).
        let now = self.shared.now_us();
        self.shared.last_push_us.store(now, Ordering::Relaxed);
        let accepted = pcm.len().min(self.ring.slots());
        if accepted > 0 {
            if let Ok(chunk) = self.ring.write_chunk_uninit(accepted) {
                chunk.fill_from_iter(pcm[..accepted].iter().copied());
            }
        }
        let dropped = pcm.len() - accepted;
        if dropped > 0 {
            self.shared
                .input_dropped_unreported
                .fetch_add(dropped as u64, Ordering::Relaxed);
            let frames = dropped.div_ceil(self.input_frame) as u64;
            self.counters
                .frames_dropped
                .fetch_add(frames, Ordering::Relaxed);
        }
        // Pairs with the fence in the realtime thread before it parks.
        fence(Ordering::SeqCst);
        if self.buffered() >= self.input_frame || dropped > 0 {
            self.shared.wake();
        }
        PushOutcome { accepted, dropped }
    }

    /// Samples `push` would take right now (free space of the input ring). Realtime-safe.
    pub fn writable(&self) -> usize {
        self.ring.slots()
    }

    /// Samples waiting for the realtime thread. Realtime-safe.
    pub fn buffered(&self) -> usize {
        self.ring.buffer().capacity() - self.ring.slots()
    }
}

impl EdgeReader {
    /// Copies up to `out.len()` samples of the agent's audio into `out`; returns how many. Audio
    /// that a barge-in flushed is skipped, never returned. Realtime-safe.
    pub fn read(&mut self, out: &mut [i16]) -> usize {
        let flush_at = self.shared.out_flush_at.load(Ordering::Acquire);
        if self.read_total < flush_at {
            let skip = ((flush_at - self.read_total) as usize).min(self.ring.slots());
            if let Ok(chunk) = self.ring.read_chunk(skip) {
                chunk.commit_all();
            }
            self.read_total += skip as u64;
        }
        let n = out.len().min(self.ring.slots());
        if let Ok(chunk) = self.ring.read_chunk(n) {
            let (a, b) = chunk.as_slices();
            out[..a.len()].copy_from_slice(a);
            out[a.len()..n].copy_from_slice(b);
            chunk.commit_all();
        }
        self.read_total += n as u64;
        n
    }
}
