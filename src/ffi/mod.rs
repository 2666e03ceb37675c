//! The C ABI (`include/voicebackend.h`): pointer, UTF-8 and JSON checks, panic catching, status
//! mapping and the thread-local last error. Every function is a thin shell over the Rust API.
//!
//! Conventions: every fallible function returns `VbStatus`; on failure out-parameters are left
//! untouched and `vb_last_error_message()` says why. No panic crosses the boundary.

pub mod backend;
pub mod incoming;
pub mod log;
pub mod rooms;
pub mod session;
pub mod session_opus;
pub mod tool;
pub mod version;

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Error, Result, VbStatus};

/// The last error of this thread, as handed out by `vb_last_error_message`. Recording a success or
/// a static message never allocates or frees, so the audio calls can use it.
struct LastError {
    current: Current,
    /// The last formatted message; kept while a success or a static message is current.
    owned: Option<CString>,
}

#[derive(Clone, Copy)]
enum Current {
    Success,
    Static(&'static CStr),
    Owned,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> =
        const { RefCell::new(LastError { current: Current::Success, owned: None }) };
}

/// Records the outcome of a call on this thread and returns its status.
fn record(result: Result<()>) -> VbStatus {
    LAST_ERROR.with(|last| {
        let mut last = last.borrow_mut();
        match result {
            Ok(()) => {
                last.current = Current::Success;
                VbStatus::VB_OK
            }
            Err(e) => {
                last.owned = Some(c_string(&e.to_string()));
                last.current = Current::Owned;
                e.status()
            }
        }
    })
}

/// `text` as a C string (a NUL inside becomes a space).
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

/// Records a failure whose message is static (used on the realtime-safe audio path).
fn record_static(status: VbStatus, message: &'static CStr) -> VbStatus {
    LAST_ERROR.with(|last| last.borrow_mut().current = Current::Static(message));
    status
}

/// The current thread's last error message ("" after a success).
fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|last| {
        let last = last.borrow();
        match last.current {
            Current::Success => c"".as_ptr(),
            Current::Static(s) => s.as_ptr(),
            Current::Owned => last.owned.as_deref().unwrap_or(c"").as_ptr(),
        }
    })
}

/// The one panic guard of the C boundary: every exported function runs its body through it, by
/// one of the three entry points below ([`guard`], [`guard_realtime`], [`guard_value`]). A panic
/// becomes a `VB_ERR_PANIC` error carrying its message; catching costs nothing until one happens.
fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|panic| Error::new(VbStatus::VB_ERR_PANIC, panic_message(&panic)))
}

/// Runs `f` under the panic guard and records its outcome as the thread's last error: the entry
/// point of the functions that return a `VbStatus`.
fn guard(f: impl FnOnce() -> Result<()>) -> VbStatus {
    record(catch_panic(f).and_then(|result| result))
}

/// How a realtime-safe audio call ended when it kept its contract.
enum RealtimeOutcome {
    /// It did what was asked.
    Done,
    /// A refusal the host has to expect (a full ring, a packet that does not decode), reported
    /// with a static message so that nothing is allocated.
    Refused(VbStatus, &'static CStr),
}

/// [`guard`] for the realtime-safe audio calls: success and a [`RealtimeOutcome::Refused`] are
/// recorded without allocating; an `Err` (a broken contract: NULL pointer, wrong state) and a
/// panic as by `guard`.
fn guard_realtime(f: impl FnOnce() -> Result<RealtimeOutcome>) -> VbStatus {
    match catch_panic(f).and_then(|result| result) {
        Ok(RealtimeOutcome::Done) => record(Ok(())),
        Ok(RealtimeOutcome::Refused(status, message)) => record_static(status, message),
        Err(e) => record(Err(e)),
    }
}

/// [`guard`] for the functions that return a value instead of a status (a count, a state, a
/// static string) or nothing (`*_free`): `f`'s value, or `fallback` when it panicked (the panic
/// is then the thread's last error). A value returned leaves the last error as it was, so that
/// `vb_last_error_message` and the getters between a failed call and its message do not clear it.
fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_panic(f).unwrap_or_else(|panic| {
        record(Err(panic));
        fallback
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    format!("internal panic caught at the C boundary: {detail}")
}

/// Borrows a required NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid during the call.
unsafe fn required_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|e| Error::invalid_argument(format!("{what} is not valid UTF-8: {e}")))
}

/// Borrows a required object behind a pointer.
///
/// # Safety
/// `ptr` is NULL or points to a live object of type `T`.
unsafe fn required_ref<'a, T>(ptr: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: the caller guarantees a non-NULL pointer is valid.
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::invalid_argument(format!("{what} is NULL")))
}

/// Writes `text` NUL-terminated into a caller's buffer. `*needed` (if not NULL) always gets the
/// size including the NUL; a NULL or short buffer is `VB_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `buf` is NULL or valid for `capacity` bytes; `needed` is NULL or valid for one write.
unsafe fn fill_buffer(
    text: &str,
    buf: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> Result<()> {
    let size = text.len() + 1;
    if !needed.is_null() {
        // SAFETY: valid for one write per the caller's contract.
        unsafe { *needed = size };
    }
    if buf.is_null() {
        return Err(Error::invalid_argument(format!(
            "buf is NULL ({size} bytes needed)"
        )));
    }
    if capacity < size {
        return Err(Error::invalid_argument(format!(
            "buffer too small: {capacity} bytes given, {size} needed"
        )));
    }
    // SAFETY: `buf` has room for `size` bytes, checked above; the regions cannot overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
    }
    Ok(())
}

/// A host pointer (`user_data`) handed back to host callbacks on engine threads.
#[derive(Clone, Copy)]
struct HostPtr(*mut std::ffi::c_void);

impl HostPtr {
    /// The pointer value (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut std::ffi::c_void {
        self.0
    }
}

// SAFETY: the C contract says callbacks run on engine threads with the host's `user_data`; the
// host guarantees that what it points to may be used from those threads. The engine never
// dereferences it.
unsafe impl Send for HostPtr {}
// SAFETY: as above; the engine only copies the pointer value.
unsafe impl Sync for HostPtr {}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: a NUL-terminated string owned by this thread's last error.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn every_entry_point_turns_a_panic_into_vb_err_panic_with_its_message() {
        assert_eq!(guard(|| panic!("guarded")), VbStatus::VB_ERR_PANIC);
        assert!(last_error().contains("guarded"), "{}", last_error());
        assert_eq!(guard(|| Ok(())), VbStatus::VB_OK);
        assert_eq!(last_error(), "");

        let status = guard_realtime(|| panic!("realtime {}", 7));
        assert_eq!(status, VbStatus::VB_ERR_PANIC);
        assert!(last_error().contains("realtime 7"), "{}", last_error());
        let refused = guard_realtime(|| {
            Ok(RealtimeOutcome::Refused(
                VbStatus::VB_ERR_BUFFER_FULL,
                c"full",
            ))
        });
        assert_eq!(refused, VbStatus::VB_ERR_BUFFER_FULL);
        assert_eq!(last_error(), "full");

        assert_eq!(guard_value(5, || -> i32 { panic!("valued") }), 5);
        assert!(last_error().contains("valued"), "{}", last_error());
        // A value returned leaves the last error alone.
        assert_eq!(guard_value(5, || 6), 6);
        assert!(last_error().contains("valued"), "{}", last_error());
    }
}
