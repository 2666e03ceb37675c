//! C ABI of sessions that arrive by themselves: `VbIncoming` and `vb_backend_set_incoming`.

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use serde_json::Value;

use super::backend::VbBackend;
use super::session::{HostCallbacks, VbCallbacks, VbSession};
use super::{HostPtr, guard, required_ref};
use crate::backend::{Accepted, IncomingHandler, Session};
use crate::error::{Error, Result, VbStatus};

/// The host's hook for sessions that arrive by themselves: a LiveKit worker's dispatched jobs
/// (and, later, browser and phone calls). See `vb_backend_set_incoming`.
#[repr(C)]
pub struct VbIncoming {
    /// Passed back to `on_session`.
    pub user_data: *mut c_void,
    /// I/O thread, one call per arriving session, possibly concurrently. `session` was opened
    /// by the backend (not started); `info_json` describes it, e.g. `{"source":
    /// "livekit-dispatch", "room": "…", "participant": "…", "job_id": "…"}`. Fill `*callbacks`
    /// (zeroed on entry) and return `VB_OK` to take it: the backend then starts it, and the
    /// host owns it as if `vb_session_create` had made it (free it with `vb_session_free` once
    /// it has stopped). Any other status refuses the call: the backend frees the session (do
    /// not keep the pointer) and the call fails with that status.
    pub on_session: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            session: *mut VbSession,
            info_json: *const c_char,
            callbacks: *mut VbCallbacks,
        ) -> VbStatus,
    >,
}

type OnSessionFn =
    unsafe extern "C" fn(*mut c_void, *mut VbSession, *const c_char, *mut VbCallbacks) -> VbStatus;
/// `OnSessionFn` returning the raw integer: a host may return any `int`.
type RawOnSessionFn =
    unsafe extern "C" fn(*mut c_void, *mut VbSession, *const c_char, *mut VbCallbacks) -> i32;

/// Installs the host's hook for sessions that arrive by themselves. Without one, a LiveKit
/// worker refuses every job. Only before `vb_backend_start` (`VB_ERR_INVALID_STATE` after). The
/// struct is copied; `user_data` must stay valid until the backend is freed. Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend; `incoming` is NULL or a valid struct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_set_incoming(
    backend: *mut VbBackend,
    incoming: *const VbIncoming,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        // SAFETY: forwarded caller contract.
        let incoming = unsafe { required_ref(incoming, "incoming") }?;
        let on_session = incoming
            .on_session
            .ok_or_else(|| Error::invalid_argument("incoming->on_session is NULL"))?;
        // SAFETY: as in `vb_backend_set_auth_hook`: same ABI, the status read as an integer.
        let on_session = unsafe { std::mem::transmute::<OnSessionFn, RawOnSessionFn>(on_session) };
        backend.backend.set_incoming(Arc::new(CIncoming {
            user_data: HostPtr(incoming.user_data),
            on_session,
        }))
    })
}

/// The C host's hook as the backend calls it.
struct CIncoming {
    user_data: HostPtr,
    on_session: RawOnSessionFn,
}

impl IncomingHandler for CIncoming {
    fn on_session(&self, session: Session, info: &Value) -> Result<Accepted> {
        let info = CString::new(info.to_string())
            .map_err(|_| Error::internal("the session's description holds a NUL byte"))?;
        let handle = VbSession::into_raw(session);
        let mut callbacks = VbCallbacks {
            user_data: std::ptr::null_mut(),
            on_transcript: None,
            on_event: None,
        };
        // SAFETY: the host's function with its own user_data; `handle` is a live session the
        // host may keep, `info` and `callbacks` live until it returns.
        let status = unsafe {
            (self.on_session)(self.user_data.get(), handle, info.as_ptr(), &mut callbacks)
        };
        if status != VbStatus::VB_OK as i32 {
            // SAFETY: refused: the host gave the handle back and must not use it (documented).
            drop(unsafe { Box::from_raw(handle) });
            return Err(match VbStatus::from_raw(status.into()) {
                Some(known) => Error::new(
                    known,
                    format!("the host refused the session (on_session returned {known})"),
                ),
                None => Error::new(
                    VbStatus::VB_ERR_INTERNAL,
                    format!(
                        "the host refused the session (on_session returned {status}, which is no VbStatus)"
                    ),
                ),
            });
        }
        // SAFETY: `callbacks` is a valid struct the host filled.
        let host = unsafe { HostCallbacks::new(&callbacks) };
        host.attach(handle);
        Ok(Accepted {
            agent: host.agent,
            on_event: host.on_event,
        })
    }
}
