//! C ABI of the registry and backends. Backend functions are thread-safe.

use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::{HostPtr, fill_buffer, guard, required_ref, required_str};
use crate::backend::AudioProcessor;
use crate::backend::limits::poll_allow;
use crate::backend::{AuthHook, AuthResult, Backend, RateLimiter, VbHealth, backend_registry};
use crate::error::{Error, Result, VbStatus};

/// A configured engine (opaque). Create with `vb_backend_create`, free with `vb_backend_free`.
pub struct VbBackend {
    pub(crate) backend: Backend,
}

/// A custom audio processor supplied by the host (see `vb_backend_add_processor`).
#[repr(C)]
pub struct VbProcessor {
    /// Passed back to `process`.
    pub user_data: *mut c_void,
    /// Unique within the backend; copied by the call.
    pub name: *const c_char,
    /// Lower runs earlier.
    pub order: i32,
    /// Realtime thread: processes the frame in `pcm` in place (`samples` long, at `sample_rate`
    /// Hz); must not block or allocate. Called concurrently from the realtime threads of
    /// different sessions.
    pub process: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            pcm: *mut i16,
            samples: usize,
            sample_rate: u32,
        ),
    >,
}

/// Writes the JSON array of registered backend provider names, e.g. `["local"]`, into `buf`.
/// `*needed` always gets the size including the NUL; a short buffer is
/// `VB_ERR_INVALID_ARGUMENT`. Any thread.
///
/// # Safety
/// `buf` is NULL or valid for `capacity` bytes; `needed` is NULL or valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_registry_list(
    buf: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> VbStatus {
    guard(|| {
        let names = serde_json::to_string(&backend_registry().names())
            .map_err(|e| Error::internal(e.to_string()))?;
        // SAFETY: forwarded caller contract.
        unsafe { fill_buffer(&names, buf, capacity, needed) }
    })
}

/// Creates a backend from JSON configuration (see `C_API.md` for keys and defaults). On success
/// `*out_backend` owns the new backend; free it with `vb_backend_free`. Unknown keys and
/// out-of-range values give `VB_ERR_INVALID_CONFIG` naming the field; unknown provider names give
/// `VB_ERR_PROVIDER_NOT_FOUND`. Any thread.
///
/// # Safety
/// `config_json` is a NUL-terminated string; `out_backend` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_create(
    config_json: *const c_char,
    out_backend: *mut *mut VbBackend,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let json = unsafe { required_str(config_json, "config_json") }?;
        if out_backend.is_null() {
            return Err(Error::invalid_argument("out_backend is NULL"));
        }
        let backend = Backend::from_json(json)?;
        // SAFETY: checked non-NULL; valid for one write per the contract.
        unsafe { *out_backend = Box::into_raw(Box::new(VbBackend { backend })) };
        Ok(())
    })
}

/// Starts the backend's I/O runtime; sessions can be created afterwards. `VB_ERR_INVALID_STATE`
/// when already running or stopped. Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_start(backend: *mut VbBackend) -> VbStatus {
    // SAFETY: forwarded caller contract.
    guard(|| unsafe { required_ref(backend, "backend") }?.backend.start())
}

/// Graceful stop: refuses new sessions, lets in-flight replies finish for up to
/// `drain_timeout_ms`, then stops every session (deleting their records in the session store:
/// they completed). `VB_ERR_INTERNAL` when the store could not be updated (the backend is
/// stopped all the same). Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_stop(
    backend: *mut VbBackend,
    drain_timeout_ms: u32,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        backend
            .backend
            .stop(Duration::from_millis(drain_timeout_ms.into()))
    })
}

/// Stops (without draining) and frees a backend. Its sessions stop; their handles must still be
/// freed with `vb_session_free`. NULL is a no-op.
///
/// # Safety
/// `backend` is NULL or a live backend that no other thread uses any more.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_free(backend: *mut VbBackend) {
    if backend.is_null() {
        return;
    }
    // SAFETY: created by `vb_backend_create` and not freed before, per the contract.
    let backend = unsafe { Box::from_raw(backend) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(backend)));
}

/// Fills `*out_health` with counters over all sessions and a verdict. Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend; `out_health` is NULL or valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_health(
    backend: *const VbBackend,
    out_health: *mut VbHealth,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        if out_health.is_null() {
            return Err(Error::invalid_argument("out_health is NULL"));
        }
        let health = backend.backend.health();
        // SAFETY: checked non-NULL; valid for one write per the contract.
        unsafe { *out_health = health };
        Ok(())
    })
}

/// Sessions created and not yet stopped; 0 for NULL. Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_active_sessions(backend: *const VbBackend) -> u32 {
    // SAFETY: forwarded caller contract.
    let count = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        unsafe { backend.as_ref() }.map_or(0, |b| b.backend.active_sessions())
    }));
    count.unwrap_or(0)
}

/// Adds a custom audio processor, applied in `order` to every frame of every session before VAD.
/// Only before `vb_backend_start`. The struct is copied; `user_data` must stay valid until the
/// backend is freed. Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend; `processor` is NULL or a valid struct whose `name` is a
/// NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_add_processor(
    backend: *mut VbBackend,
    processor: *const VbProcessor,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        // SAFETY: forwarded caller contract.
        let processor = unsafe { required_ref(processor, "processor") }?;
        // SAFETY: forwarded caller contract.
        let name = unsafe { required_str(processor.name, "processor->name") }?.to_owned();
        let process = processor
            .process
            .ok_or_else(|| Error::invalid_argument("processor->process is NULL"))?;
        let template = CProcessor {
            user_data: HostPtr(processor.user_data),
            name,
            order: processor.order,
            process,
        };
        backend.backend.add_processor(Arc::new(move || {
            Box::new(template.clone()) as Box<dyn AudioProcessor>
        }))
    })
}

/// A host's C processor.
#[derive(Clone)]
struct CProcessor {
    user_data: HostPtr,
    name: String,
    order: i32,
    process: unsafe extern "C" fn(*mut c_void, *mut i16, usize, u32),
}

impl AudioProcessor for CProcessor {
    fn name(&self) -> &str {
        &self.name
    }
    fn order(&self) -> i32 {
        self.order
    }
    fn process(&mut self, pcm: &mut [i16], sample_rate: u32) {
        // SAFETY: the host's function, called with its own user_data and a valid frame buffer.
        unsafe {
            (self.process)(
                self.user_data.get(),
                pcm.as_mut_ptr(),
                pcm.len(),
                sample_rate,
            )
        }
    }
}

/// An auth hook supplied by the host (see `vb_backend_set_auth_hook`). Both functions run on
/// the thread that calls `vb_session_create`, before anything of the session exists, and may
/// be called concurrently for different sessions.
#[repr(C)]
pub struct VbAuthHook {
    /// Passed back to both functions.
    pub user_data: *mut c_void,
    /// `VB_OK` and the user id written NUL-terminated into `user_id_out` (at most
    /// `user_id_capacity` bytes with the NUL) when `token` is valid, else `VB_ERR_UNAUTHORIZED`.
    /// `metadata_json` is the session's metadata object. Another status is passed on to the
    /// creating call.
    pub authenticate: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            token: *const c_char,
            metadata_json: *const c_char,
            user_id_out: *mut c_char,
            user_id_capacity: usize,
        ) -> VbStatus,
    >,
    /// `VB_OK` when `user_id` may perform `operation` ("session.create", "session.resume"),
    /// else `VB_ERR_UNAUTHORIZED`. Another status is passed on to the creating call.
    pub authorize: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            user_id: *const c_char,
            operation: *const c_char,
        ) -> VbStatus,
    >,
}

/// A rate limiter supplied by the host (see `vb_backend_set_rate_limiter`). Its functions run
/// on the thread that calls `vb_session_create` and may be called concurrently.
#[repr(C)]
pub struct VbRateLimiter {
    /// Passed back to both functions.
    pub user_data: *mut c_void,
    /// `VB_OK` to admit one session of `key` (its user id, "" when it has none) now,
    /// `VB_ERR_RATE_LIMITED` to refuse. Must not block.
    pub allow: Option<unsafe extern "C" fn(user_data: *mut c_void, key: *const c_char) -> VbStatus>,
    /// Optional (NULL: the engine asks `allow` every 10 ms): admits one session of `key`,
    /// waiting up to `timeout_ms` (the session's `admission_wait_ms`); `VB_ERR_RATE_LIMITED`
    /// when no admission came in time.
    pub wait: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            key: *const c_char,
            timeout_ms: u32,
        ) -> VbStatus,
    >,
}

/// Installs the host's auth hook, replacing the built-in one of `auth.jwt_hs256_secret`. From
/// then on a session with an `auth_token` is admitted only when `authenticate` names its user
/// (a `user_id` in the session config must be that user) and `authorize` allows
/// "session.create"; a refusal is `VB_ERR_UNAUTHORIZED` and creates nothing. Only before
/// `vb_backend_start` (`VB_ERR_INVALID_STATE` after). The struct is copied; `user_data` must
/// stay valid until the backend is freed. Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend; `hook` is NULL or a valid struct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_set_auth_hook(
    backend: *mut VbBackend,
    hook: *const VbAuthHook,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        // SAFETY: forwarded caller contract.
        let hook = unsafe { required_ref(hook, "hook") }?;
        let authenticate = hook
            .authenticate
            .ok_or_else(|| Error::invalid_argument("hook->authenticate is NULL"))?;
        let authorize = hook
            .authorize
            .ok_or_else(|| Error::invalid_argument("hook->authorize is NULL"))?;
        // SAFETY: `VbStatus` is a `repr(C)` enum, returned exactly like a C `int`: the raw types
        // have the same ABI, and reading an integer keeps an out-of-range value defined.
        let (authenticate, authorize) = unsafe {
            (
                std::mem::transmute::<AuthenticateFn, RawAuthenticateFn>(authenticate),
                std::mem::transmute::<AuthorizeFn, RawAuthorizeFn>(authorize),
            )
        };
        backend.backend.set_auth_hook(Arc::new(CAuthHook {
            user_data: HostPtr(hook.user_data),
            authenticate,
            authorize,
        }))
    })
}

/// Installs the host's rate limiter, replacing the built-in token buckets of `rate_limit`: each
/// new session takes one admission from it, and a refusal is `VB_ERR_RATE_LIMITED` and creates
/// nothing. Only before `vb_backend_start` (`VB_ERR_INVALID_STATE` after). The struct is
/// copied; `user_data` must stay valid until the backend is freed. Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend; `limiter` is NULL or a valid struct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_set_rate_limiter(
    backend: *mut VbBackend,
    limiter: *const VbRateLimiter,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        // SAFETY: forwarded caller contract.
        let limiter = unsafe { required_ref(limiter, "limiter") }?;
        let allow = limiter
            .allow
            .ok_or_else(|| Error::invalid_argument("limiter->allow is NULL"))?;
        // SAFETY: as in `vb_backend_set_auth_hook`: same ABI, the status read as an integer.
        let (allow, wait) = unsafe {
            (
                std::mem::transmute::<AllowFn, RawAllowFn>(allow),
                limiter
                    .wait
                    .map(|w| std::mem::transmute::<WaitFn, RawWaitFn>(w)),
            )
        };
        backend.backend.set_rate_limiter(Arc::new(CRateLimiter {
            user_data: HostPtr(limiter.user_data),
            allow,
            wait,
        }))
    })
}

/// The host functions as declared, and as they are at the ABI level (a C enum return is a C
/// `int`).
type AuthenticateFn =
    unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *mut c_char, usize) -> VbStatus;
type AuthorizeFn = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> VbStatus;
type AllowFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> VbStatus;
type WaitFn = unsafe extern "C" fn(*mut c_void, *const c_char, u32) -> VbStatus;
type RawAuthenticateFn =
    unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *mut c_char, usize) -> i32;
type RawAuthorizeFn = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> i32;
type RawAllowFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> i32;
type RawWaitFn = unsafe extern "C" fn(*mut c_void, *const c_char, u32) -> i32;

/// Size of the buffer `authenticate` writes the user id into, NUL included.
const USER_ID_CAPACITY: usize = 1024;

/// A status returned by a host hook: `Ok` for `VB_OK`, else the error `refusal` (the status
/// the hook uses to refuse) reads as `refused`, or the status the hook returned, passed on.
fn host_status(raw: i32, hook: &str, refusal: VbStatus, refused: &str) -> Result<()> {
    match VbStatus::from_raw(raw.into()) {
        Some(VbStatus::VB_OK) => Ok(()),
        Some(status) if status == refusal => Err(Error::new(status, refused)),
        Some(status) => Err(Error::new(status, format!("{hook} failed with {status}"))),
        None => Err(Error::new(
            refusal,
            format!("{hook} returned {raw}, which is no VbStatus"),
        )),
    }
}

/// A C string for a host hook; a NUL inside is refused with `status`.
fn hook_cstring(text: &str, what: &str, status: VbStatus) -> Result<CString> {
    CString::new(text).map_err(|_| Error::new(status, format!("{what} contains a NUL byte")))
}

/// A host's C auth hook.
struct CAuthHook {
    user_data: HostPtr,
    authenticate: RawAuthenticateFn,
    authorize: RawAuthorizeFn,
}

impl AuthHook for CAuthHook {
    fn authenticate(&self, token: &str, metadata: &serde_json::Value) -> Result<AuthResult> {
        let unauthorized = VbStatus::VB_ERR_UNAUTHORIZED;
        let token = hook_cstring(token, "auth_token", unauthorized)?;
        let metadata = hook_cstring(&metadata.to_string(), "metadata", unauthorized)?;
        let mut user_id = vec![0u8; USER_ID_CAPACITY];
        // SAFETY: the host's function with its own user_data; the strings and the buffer (of
        // the capacity given) outlive the call.
        let raw = unsafe {
            (self.authenticate)(
                self.user_data.get(),
                token.as_ptr(),
                metadata.as_ptr(),
                user_id.as_mut_ptr().cast(),
                user_id.len(),
            )
        };
        host_status(
            raw,
            "the auth hook's authenticate",
            unauthorized,
            "the auth hook refused the token",
        )?;
        let user_id = CStr::from_bytes_until_nul(&user_id).map_err(|_| {
            Error::new(
                unauthorized,
                format!(
                    "the auth hook's user id is not NUL-terminated within {USER_ID_CAPACITY} bytes"
                ),
            )
        })?;
        let user_id = user_id
            .to_str()
            .map_err(|_| Error::new(unauthorized, "the auth hook's user id is not valid UTF-8"))?;
        Ok(AuthResult {
            user_id: user_id.to_owned(),
            claims: serde_json::Value::Null,
        })
    }

    fn authorize(&self, user: &AuthResult, operation: &str) -> Result<bool> {
        let user_id = hook_cstring(&user.user_id, "user id", VbStatus::VB_ERR_UNAUTHORIZED)?;
        let operation = hook_cstring(operation, "operation", VbStatus::VB_ERR_INVALID_ARGUMENT)?;
        // SAFETY: the host's function with its own user_data; the strings outlive the call.
        let raw =
            unsafe { (self.authorize)(self.user_data.get(), user_id.as_ptr(), operation.as_ptr()) };
        if VbStatus::from_raw(raw.into()) == Some(VbStatus::VB_ERR_UNAUTHORIZED) {
            return Ok(false);
        }
        host_status(
            raw,
            "the auth hook's authorize",
            VbStatus::VB_ERR_UNAUTHORIZED,
            "the auth hook refused",
        )?;
        Ok(true)
    }
}

/// A host's C rate limiter.
struct CRateLimiter {
    user_data: HostPtr,
    allow: RawAllowFn,
    wait: Option<RawWaitFn>,
}

impl CRateLimiter {
    fn refused(key: &str) -> String {
        match key {
            "" => "the host's rate limiter refused a session without a user id".to_owned(),
            user => format!("the host's rate limiter refused a session of user '{user}'"),
        }
    }
}

impl RateLimiter for CRateLimiter {
    fn allow(&self, key: &str) -> Result<()> {
        let limited = VbStatus::VB_ERR_RATE_LIMITED;
        let c_key = hook_cstring(key, "user id", limited)?;
        // SAFETY: the host's function with its own user_data; the key outlives the call.
        let raw = unsafe { (self.allow)(self.user_data.get(), c_key.as_ptr()) };
        host_status(
            raw,
            "the rate limiter's allow",
            limited,
            &Self::refused(key),
        )
    }

    fn wait(&self, key: &str, timeout: Duration) -> Result<()> {
        let Some(wait) = self.wait else {
            return poll_allow(self, key, timeout);
        };
        let limited = VbStatus::VB_ERR_RATE_LIMITED;
        let c_key = hook_cstring(key, "user id", limited)?;
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: the host's function with its own user_data; the key outlives the call.
        let raw = unsafe { wait(self.user_data.get(), c_key.as_ptr(), timeout_ms) };
        host_status(raw, "the rate limiter's wait", limited, &Self::refused(key))
    }
}

// ---- Session persistence: sessions recovered from the store, flushing it. ----

/// Writes the JSON array of the sessions found in the session store when the backend was
/// created and not resumed or discarded since (their process ended without stopping them),
/// oldest first: `[{"session_id": "…", "user_id": "…", "turns": 3}, …]`; `[]` when persistence
/// is off.
/// `*needed` always gets the size including the NUL; a short buffer is
/// `VB_ERR_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend; `buf` is NULL or valid for `capacity` bytes; `needed` is
/// NULL or valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_recovered_sessions(
    backend: *const VbBackend,
    buf: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        let json = serde_json::to_string(&backend.backend.recovered_sessions())
            .map_err(|e| Error::internal(e.to_string()))?;
        // SAFETY: forwarded caller contract.
        unsafe { fill_buffer(&json, buf, capacity, needed) }
    })
}

/// Forgets a session of `vb_backend_recovered_sessions` without resuming it: its record and its
/// turn audio are deleted from the session store before this returns, and it is no longer
/// listed (nor found by a later backend on the same file). `VB_ERR_NOT_FOUND` when no recovered
/// session has that id (unknown, resumed or discarded already, or persistence off);
/// `VB_ERR_INTERNAL` with the reason when the store could not be written (the session stays
/// listed). Thread-safe; blocks for the disk write.
///
/// # Safety
/// `backend` is NULL or a live backend; `session_id` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_discard_recovered(
    backend: *mut VbBackend,
    session_id: *const c_char,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        // SAFETY: forwarded caller contract.
        let session_id = unsafe { required_str(session_id, "session_id") }?;
        backend.backend.discard_recovered(session_id)
    })
}

/// Blocks until every session record written so far is on disk (records are written when a
/// session starts and after each turn, by a writer thread). `VB_ERR_INTERNAL` with the reason
/// when a write failed since the previous flush; `VB_OK` at once when persistence is off.
/// Thread-safe; blocks for the disk write.
///
/// # Safety
/// `backend` is NULL or a live backend.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_flush_store(backend: *mut VbBackend) -> VbStatus {
    // SAFETY: forwarded caller contract.
    guard(|| {
        unsafe { required_ref(backend, "backend") }?
            .backend
            .flush_store()
    })
}
