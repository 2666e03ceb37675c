//! Log records for the host's own logger: `vb_set_log_callback`.

use std::ffi::{c_char, c_void};

use tracing::Level;
use tracing::level_filters::LevelFilter;

use super::{HostPtr, c_string, guard};
use crate::error::Error;
use crate::logging::{self, LogRecord};

/// The level of a log record, and the most verbose level a host wants.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum VbLogLevel {
    /// No records (as `max_level`).
    VB_LOG_OFF = 0,
    /// Something failed: a session's error, an export that failed for good.
    VB_LOG_ERROR = 1,
    /// Something went wrong and was handled: a retry, a lost connection being resumed, dropped
    /// audio, a failed OTLP export.
    VB_LOG_WARN = 2,
    /// The life of backends and sessions: started, stopped, admitted, refused, reconnected.
    VB_LOG_INFO = 3,
    /// What each session does: states, speech, transcripts (when the privacy policy allows),
    /// turn latencies, connections.
    VB_LOG_DEBUG = 4,
    /// Everything, other crates' details included where the filter lets them through.
    VB_LOG_TRACE = 5,
}

/// Receives one log record. `level` is a `VbLogLevel` (1 error … 5 trace); `target` is where it
/// comes from (a module path such as "voicebackend::provider::ws_link"); `message` is the text,
/// prefixed by the spans it happened in (`session{session.id=sess-…}:turn{turn=2}: …`). Both
/// strings are NUL-terminated UTF-8, valid only during the call.
pub type VbLogCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: i32,
        target: *const c_char,
        message: *const c_char,
    ),
>;

/// Sends the library's log records to `callback` (NULL: to nobody; `max_level` `VB_LOG_OFF`
/// does the same): records at `max_level` or more severe, and among those only what the filter
/// in the environment variable `VB_LOG` (else `RUST_LOG`; `tracing-subscriber`'s `EnvFilter`
/// syntax, e.g. `voicebackend=debug,warn`) lets through; without one, the library's records and
/// other libraries' warnings and errors. Calling it again replaces the callback and level.
///
/// Threading: records are formatted on the engine thread that logs them (never the realtime
/// thread, never inside `vb_session_process_audio` / `vb_session_read_audio`) and queued; one
/// library thread calls `callback`, one record at a time, in order. A callback that does not
/// keep up loses records rather than slowing the engine: beyond 4096 waiting, records are
/// dropped, and once the queue drains the callback gets a `VB_LOG_WARN` record saying how many.
/// After this function returns the previous callback is never called again, so its `user_data`
/// may be freed (called from inside the callback, the new one takes over after the current
/// record). `user_data` must stay valid until the callback is replaced.
///
/// The first call installs the process's global `tracing` subscriber: `VB_ERR_INVALID_STATE`
/// when the process has one already (a Rust host's own, which then receives the records), and
/// `VB_ERR_INVALID_CONFIG` when `VB_LOG` is not a valid filter. `VB_ERR_INVALID_ARGUMENT` for a
/// `max_level` outside 0–5. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn vb_set_log_callback(
    callback: VbLogCallback,
    user_data: *mut c_void,
    max_level: i32,
) -> crate::error::VbStatus {
    guard(|| {
        let user_data = HostPtr(user_data);
        let max_level = match max_level {
            0 => LevelFilter::OFF,
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            3 => LevelFilter::INFO,
            4 => LevelFilter::DEBUG,
            5 => LevelFilter::TRACE,
            other => {
                return Err(Error::invalid_argument(format!(
                    "max_level {other} is not a VbLogLevel (0-5)"
                )));
            }
        };
        let sink = callback.map(|callback| -> logging::LogSink {
            Box::new(move |record: &LogRecord| {
                let target = c_string(&record.target);
                let message = c_string(&record.message);
                // SAFETY: the host gave this callback and `user_data` for exactly this use; both
                // strings are NUL-terminated and live until the call returns.
                unsafe {
                    callback(
                        user_data.get(),
                        level_number(record.level),
                        target.as_ptr(),
                        message.as_ptr(),
                    )
                }
            })
        });
        logging::forward(sink, max_level)
    })
}

fn level_number(level: Level) -> i32 {
    (match level {
        Level::ERROR => VbLogLevel::VB_LOG_ERROR,
        Level::WARN => VbLogLevel::VB_LOG_WARN,
        Level::INFO => VbLogLevel::VB_LOG_INFO,
        Level::DEBUG => VbLogLevel::VB_LOG_DEBUG,
        Level::TRACE => VbLogLevel::VB_LOG_TRACE,
    }) as i32
}
