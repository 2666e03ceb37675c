//! C ABI of the LiveKit room service: `vb_backend_room_service`.

use std::ffi::c_char;

use super::backend::VbBackend;
use super::{fill_buffer, guard, required_ref, required_str};

/// Calls the room service of a `livekit` backend's server (LiveKit's Twirp API, with admin
/// tokens signed from the backend's key and secret). `request_json` is one of
/// `{"op":"create_room","room":R}`, `{"op":"list_rooms"}`, `{"op":"delete_room","room":R}`,
/// `{"op":"list_participants","room":R}`, `{"op":"remove_participant","room":R,"identity":I}`,
/// `{"op":"create_dispatch","room":R,"agent_name":A,"metadata":M}`; the answer, written to
/// `buf` like `vb_registry_list` writes (`*needed` gets its size with the NUL), is
/// `{"room":{name,sid,num_participants,created_at}}`, `{"rooms":[…]}`,
/// `{"participants":[{identity,sid,kind,state},…]}`, `{"dispatch_id":"…"}` or `{}`.
/// `VB_ERR_INVALID_CONFIG` on another backend, `VB_ERR_NOT_FOUND` for an unknown room,
/// `VB_ERR_UNAUTHORIZED` for refused keys, `VB_ERR_CONNECTION_FAILED` for an unreachable
/// server. Blocks the calling thread for the request (the backend's `timeout_ms` at most);
/// any state; thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend; `request_json` is NULL or NUL-terminated; `buf` is NULL
/// or valid for `capacity` bytes; `needed` is NULL or valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_room_service(
    backend: *const VbBackend,
    request_json: *const c_char,
    buf: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> crate::error::VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        // SAFETY: forwarded caller contract.
        let request = unsafe { required_str(request_json, "request_json") }?;
        let answer = backend.backend.room_service()?.call(request)?;
        // SAFETY: forwarded caller contract.
        unsafe { fill_buffer(&answer.to_string(), buf, capacity, needed) }
    })
}
