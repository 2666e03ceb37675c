//! Versioning, status names and the last error message.

use std::ffi::c_char;

use super::{guard_value, last_error_ptr};
use crate::error::VbStatus;

/// The C ABI version this library implements. Bumped on any incompatible change.
pub const VB_ABI_VERSION: u32 = 1;

/// Returns `VB_ABI_VERSION` as the library was built with it. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn vb_abi_version() -> u32 {
    guard_value(VB_ABI_VERSION, || VB_ABI_VERSION)
}

/// Returns the crate version, e.g. "0.1.0" (static string). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn vb_version() -> *const c_char {
    guard_value(c"".as_ptr(), || {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    })
}

/// Returns the name of a status, e.g. "VB_ERR_INVALID_CONFIG" (static string), or
/// "VB_STATUS_UNKNOWN" for a value that is no status. The status is read as a plain integer, so
/// any value is safe to pass. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn vb_status_str(status: i32) -> *const c_char {
    guard_value(c"VB_STATUS_UNKNOWN".as_ptr(), || {
        match VbStatus::from_raw(status.into()) {
            Some(s) => s.c_name().as_ptr(),
            None => c"VB_STATUS_UNKNOWN".as_ptr(),
        }
    })
}

/// The reason the last failed `vb_` call on this OS thread failed; "" when the last call
/// succeeded. Valid until the next `vb_` call on this thread. At most about 1000 characters: a
/// longer reason (one quoting what a peer sent) keeps its start and end.
#[unsafe(no_mangle)]
pub extern "C" fn vb_last_error_message() -> *const c_char {
    guard_value(c"".as_ptr(), last_error_ptr)
}
