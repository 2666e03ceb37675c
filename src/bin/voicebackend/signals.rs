//! SIGINT/SIGTERM for the CLI: the first asks for a graceful stop (the conversation drains: no
//! more input, the reply in flight finishes), the second exits at once.

use std::sync::atomic::{AtomicU32, Ordering};

static STOP_REQUESTS: AtomicU32 = AtomicU32::new(0);

/// Async-signal-safe: one atomic increment, or `_exit` on the second signal.
extern "C" fn on_signal(signal: libc::c_int) {
    if STOP_REQUESTS.fetch_add(1, Ordering::SeqCst) > 0 {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + signal) };
    }
}

/// Installs the handlers for SIGINT and SIGTERM (main thread, once).
pub fn install() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls _exit.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

/// Whether SIGINT or SIGTERM has arrived.
pub fn stop_requested() -> bool {
    STOP_REQUESTS.load(Ordering::SeqCst) > 0
}
