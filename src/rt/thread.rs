//! The realtime thread of one session: elevated scheduling, the park/unpark wait, shutdown.

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::thread::JoinHandle;

use super::core::RealtimeLoop;
use super::shared::{RtShared, realtime_section};

/// Longest sleep of an idle realtime thread (a safety net; every producer wakes it).
const IDLE_PARK: std::time::Duration = std::time::Duration::from_millis(500);

/// Spawns the realtime thread running `rt` until `shared.shutdown` is set.
pub fn spawn_realtime_thread(
    name: String,
    mut rt: RealtimeLoop,
    shared: Arc<RtShared>,
    elevate: bool,
) -> std::io::Result<JoinHandle<()>> {
    let period = rt.spec().period();
    std::thread::Builder::new()
        .name(name)
        .stack_size(256 * 1024)
        .spawn(move || {
            if elevate {
                shared
                    .elevated
                    .store(elevate_current_thread(), Ordering::Relaxed);
            }
            let _ = shared.thread.set(std::thread::current());
            if rt.suppresses_noise() {
                // The suppressor's FFT fills thread-local tables on its first frame: here, not
                // in realtime work.
                super::denoise::prepare_thread();
            }
            while !shared.shutdown.load(Ordering::Acquire) {
                realtime_section(|| rt.run_once());
                shared.sleeping.store(true, Ordering::SeqCst);
                // Pairs with the fence in the producers: either they see `sleeping` and unpark us, or
                // we see their data here and skip the park.
                fence(Ordering::SeqCst);
                if !rt.has_work() && !shared.shutdown.load(Ordering::Acquire) {
                    // Woken by new input, by the I/O side (reply audio, controls) and, while a reply
                    // plays, every frame period so that playout follows the host's reads. An idle
                    // session sleeps until something happens.
                    std::thread::park_timeout(if rt.is_playing() { period } else { IDLE_PARK });
                }
                shared.sleeping.store(false, Ordering::SeqCst);
            }
        })
}

/// Asks for SCHED_FIFO at a modest priority. Returns whether the OS granted it.
pub(crate) fn elevate_current_thread() -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: plain syscall wrapper on the calling thread with a valid parameter struct.
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}
