//! The host transport: audio enters through `process_audio` and leaves through `read_audio`.
//! Both calls are realtime-safe: wait-free ring copies, no allocation, no lock.

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

use crate::error::{Error, Result, VbStatus};
use crate::rt::core::HostEnds;
use crate::rt::shared::{EngineCounters, RtShared, SpscCell, realtime_section};

/// The host's two audio endpoints of one session.
pub struct HostAudio {
    input: SpscCell<rtrb::Producer<i16>>,
    output: SpscCell<OutputReader>,
    input_frame: usize,
    shared: Arc<RtShared>,
    counters: Arc<EngineCounters>,
}

struct OutputReader {
    ring: rtrb::Consumer<i16>,
    read_total: u64,
}

/// What one `push` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Samples taken into the input ring.
    pub accepted: usize,
    /// Samples that did not fit and were dropped (counted and reported).
    pub dropped: usize,
}

impl HostAudio {
    /// Wraps the host ends of a session's rings.
    pub fn new(
        ends: HostEnds,
        input_frame: usize,
        shared: Arc<RtShared>,
        counters: Arc<EngineCounters>,
    ) -> Self {
        HostAudio {
            input: SpscCell::new(ends.input),
            output: SpscCell::new(OutputReader {
                ring: ends.output,
                read_total: 0,
            }),
            input_frame,
            shared,
            counters,
        }
    }

    /// Copies `pcm` into the input ring and wakes the realtime thread when a frame is complete.
    /// Samples that do not fit are dropped, counted in health and reported as an event.
    pub fn push(&self, pcm: &[i16]) -> Result<PushOutcome> {
        realtime_section(|| {
            self.input
                .with(|ring| {
                    // Stamped before the samples become visible, so the realtime thread never
                    // sees new samples with the previous push's time (a false deadline miss).
                    let now = self.shared.now_us();
                    self.shared.last_push_us.store(now, Ordering::Relaxed);
                    let accepted = pcm.len().min(ring.slots());
                    if accepted > 0 {
                        if let Ok(chunk) = ring.write_chunk_uninit(accepted) {
                            chunk.fill_from_iter(pcm[..accepted].iter().copied());
                        }
                    }
                    let dropped = pcm.len() - accepted;
                    if dropped > 0 {
                        self.shared
                            .input_dropped_unreported
                            .fetch_add(dropped as u64, Ordering::Relaxed);
                        let frames = dropped.div_ceil(self.input_frame.max(1)) as u64;
                        self.counters
                            .frames_dropped
                            .fetch_add(frames, Ordering::Relaxed);
                    }
                    let buffered = ring.buffer().capacity() - ring.slots();
                    // Pairs with the fence in the realtime thread before it parks.
                    fence(Ordering::SeqCst);
                    if buffered >= self.input_frame {
                        self.shared.wake();
                    }
                    PushOutcome { accepted, dropped }
                })
                .ok_or_else(concurrent_call)
        })
    }

    /// Samples `push` would take right now (free space of the input ring). Realtime-safe.
    pub fn writable(&self) -> usize {
        self.input.with(|ring| ring.slots()).unwrap_or(0)
    }

    /// Whether every pushed sample has been processed by the realtime thread.
    pub fn all_heard(&self) -> bool {
        self.input
            .with(|ring| ring.slots() == ring.buffer().capacity())
            .unwrap_or(false)
    }

    /// Copies up to `out.len()` samples of reply audio into `out`; returns how many. Audio that a
    /// barge-in flushed is skipped, never returned.
    pub fn read(&self, out: &mut [i16]) -> Result<usize> {
        realtime_section(|| {
            self.output
                .with(|reader| {
                    let flush_at = self.shared.out_flush_at.load(Ordering::Acquire);
                    if reader.read_total < flush_at {
                        let skip =
                            ((flush_at - reader.read_total) as usize).min(reader.ring.slots());
                        if let Ok(chunk) = reader.ring.read_chunk(skip) {
                            chunk.commit_all();
                        }
                        reader.read_total += skip as u64;
                    }
                    let n = out.len().min(reader.ring.slots());
                    if let Ok(chunk) = reader.ring.read_chunk(n) {
                        let (a, b) = chunk.as_slices();
                        out[..a.len()].copy_from_slice(a);
                        out[a.len()..n].copy_from_slice(b);
                        chunk.commit_all();
                    }
                    reader.read_total += n as u64;
                    n
                })
                .ok_or_else(concurrent_call)
        })
    }
}

fn concurrent_call() -> Error {
    Error::new(
        VbStatus::VB_ERR_INVALID_STATE,
        "another thread is inside the same audio call of this session (one producer and one consumer at a time)",
    )
}
