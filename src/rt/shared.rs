//! State shared lock-free between a session's threads: wake-up flags, counters, the session
//! clock, and [`SpscCell`], which hands one ring half to one caller at a time without a lock.

use std::cell::UnsafeCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::Instant;

/// Counters summed over every session of a backend (health). Relaxed atomics only.
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Internal-rate frames the realtime threads processed.
    pub frames_processed: AtomicU64,
    /// Frames lost: input overruns, speech frames that found the STT ring full.
    pub frames_dropped: AtomicU64,
    /// Frames processed more than one frame period after they arrived.
    pub deadline_misses: AtomicU64,
    /// Audio packets network transports (WebRTC, …) and the host's Opus calls received.
    pub media_packets_received: AtomicU64,
    /// Audio packets that never arrived in time, or that a host reported lost (each one's audio
    /// was rebuilt or concealed).
    pub media_packets_lost: AtomicU64,
    /// 20 ms frames filled in by the decoder: concealed, or rebuilt from in-band FEC.
    pub media_frames_concealed: AtomicU64,
}

impl EngineCounters {
    /// Adds what a network transport's receiver saw since it last reported.
    pub fn add_media(&self, received: u64, lost: u64, concealed: u64) {
        self.media_packets_received
            .fetch_add(received, Ordering::Relaxed);
        self.media_packets_lost.fetch_add(lost, Ordering::Relaxed);
        self.media_frames_concealed
            .fetch_add(concealed, Ordering::Relaxed);
    }
}

/// Per-session state the host calls, the realtime thread and the I/O side all touch.
#[derive(Debug)]
pub struct RtShared {
    clock_start: Instant,
    /// The realtime thread, once it runs (for unpark).
    pub thread: OnceLock<Thread>,
    /// Set by the realtime thread just before it parks.
    pub sleeping: AtomicBool,
    /// Asks the realtime thread to exit.
    pub shutdown: AtomicBool,
    /// Session-clock time of the last `process_audio` call (deadline accounting).
    pub last_push_us: AtomicU64,
    /// Input samples dropped by `process_audio` and not yet reported as an event.
    pub input_dropped_unreported: AtomicU64,
    /// Speech frames dropped because the STT ring was full, not yet reported.
    pub speech_dropped_unreported: AtomicU64,
    /// Realtime events lost because the I/O side stalled, not yet reported.
    pub events_dropped_unreported: AtomicU64,
    /// User turns the realtime thread has closed, on the audio clock.
    pub turns_ended: AtomicU64,
    /// Total samples the realtime thread has written to the out ring.
    pub out_written: AtomicU64,
    /// Samples up to this count were flushed by barge-in: `read_audio` skips them.
    pub out_flush_at: AtomicU64,
    /// Whether the realtime thread got elevated scheduling.
    pub elevated: AtomicBool,
    /// The realtime loop panicked (a custom processor, or a bug of the engine): it runs no more,
    /// and the session task ends the session. Set once, after `failure`.
    pub failed: AtomicBool,
    /// What the panic said.
    pub failure: OnceLock<String>,
}

impl Default for RtShared {
    fn default() -> Self {
        RtShared {
            clock_start: Instant::now(),
            thread: OnceLock::new(),
            sleeping: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            last_push_us: AtomicU64::new(0),
            input_dropped_unreported: AtomicU64::new(0),
            speech_dropped_unreported: AtomicU64::new(0),
            events_dropped_unreported: AtomicU64::new(0),
            turns_ended: AtomicU64::new(0),
            out_written: AtomicU64::new(0),
            out_flush_at: AtomicU64::new(0),
            elevated: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            failure: OnceLock::new(),
        }
    }
}

impl RtShared {
    /// Microseconds since the session was created (monotonic). Realtime-safe.
    pub fn now_us(&self) -> u64 {
        self.clock_start.elapsed().as_micros() as u64
    }

    /// Wakes the realtime thread if it is parked. Realtime-safe: an atomic load and, only when
    /// the thread sleeps, one futex wake.
    pub fn wake(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// Holds a value that only one thread at a time may use (one half of an SPSC ring). A second,
/// concurrent caller is refused instead of blocked: a broken threading contract gives an error,
/// never a data race.
pub struct SpscCell<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialized by the `busy` flag (acquire on entry, release on exit),
// so at most one thread holds `&mut T` at any time; `T: Send` lets it move between threads.
unsafe impl<T: Send> Sync for SpscCell<T> {}

impl<T> SpscCell<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        SpscCell {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with exclusive access, or returns `None` when another thread is inside.
    /// Wait-free.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        // SAFETY: the flag was false and is now ours; nobody else can be inside until we reset it.
        let result = f(unsafe { &mut *self.value.get() });
        self.busy.store(false, Ordering::Release);
        Some(result)
    }
}

thread_local! {
    static IN_REALTIME_SECTION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current thread is inside realtime work (the realtime loop or one of the two audio
/// calls). Tests install a global allocator that fails when this is true, proving that the
/// realtime path never allocates.
pub fn in_realtime_section() -> bool {
    IN_REALTIME_SECTION.with(|f| f.get())
}

/// Marks the current thread as doing realtime work while `f` runs.
pub fn realtime_section<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_REALTIME_SECTION.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(IN_REALTIME_SECTION.with(|flag| flag.replace(true)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spsc_cell_refuses_reentry_instead_of_blocking() {
        let cell = SpscCell::new(1);
        let inner = cell.with(|v| {
            *v += 1;
            cell.with(|_| ())
        });
        assert_eq!(inner, Some(None));
        assert_eq!(cell.with(|v| *v), Some(2));
    }

    #[test]
    fn realtime_section_is_scoped_to_the_closure() {
        assert!(!in_realtime_section());
        realtime_section(|| assert!(in_realtime_section()));
        assert!(!in_realtime_section());
    }
}
