//! C ABI of the registry and backends. Backend functions are thread-safe.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::{HostPtr, fill_buffer, guard, required_ref, required_str};
use crate::backend::{Backend, VbHealth, backend_registry};
use crate::error::{Error, VbStatus};
use crate::rt::processor::AudioProcessor;

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
    /// Realtime thread: processes `samples` samples at `sample_rate` in place; must not block or
    /// allocate. Called concurrently from the realtime threads of different sessions.
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

// ---- Session persistence: sessions recovered from the store, flushing it. ----

/// Writes the JSON array of the sessions found in the session store when the backend was
/// created and not resumed yet (their process ended without stopping them), oldest first:
/// `[{"session_id": "…", "user_id": "…", "turns": 3}, …]`; `[]` when persistence is off.
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
