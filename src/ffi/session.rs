//! C ABI of sessions, replies and events.
//!
//! Threads: one thread at a time calls `vb_session_process_audio`, one `vb_session_read_audio`,
//! one polls events; control calls are thread-safe. The two audio calls are realtime-safe.

use std::ffi::{CString, c_char, c_void};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

use super::backend::VbBackend;
use super::{
    HostPtr, RealtimeOutcome, c_string, fill_buffer, guard, guard_realtime, guard_value,
    required_ref, required_str,
};
use crate::agent::{Agent, REPLY_CANCELLED, Reply};
use crate::backend::{EventCallback, Session};
use crate::config::SessionConfig;
use crate::error::{Error, Result, VbStatus};
use crate::event::{Event, VbEventKind, VbSessionState, VbTurnMetrics};

/// One conversation (opaque). Create with `vb_session_create`, free with `vb_session_free`.
pub struct VbSession {
    pub(super) session: Session,
    /// Text of the last polled event, kept valid until the next poll.
    polled_text: Mutex<Option<CString>>,
}

/// The streaming reply of one agent call (opaque). Valid only while `on_transcript` runs.
pub struct VbReply {
    reply: *mut Reply,
}

/// Host callbacks of a session. The struct is copied by `vb_session_create`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VbCallbacks {
    /// Passed back to every callback.
    pub user_data: *mut c_void,
    /// Agent: called on an agent worker thread, never the realtime thread, once per finished
    /// user turn with the final transcript. Stream the reply with `vb_reply_write`, finish with
    /// `vb_reply_end` (or return an error status). May block; the session keeps listening.
    /// With `turn.preemptive_ms` it may also be called while the user pauses, with the turn so
    /// far: that reply is kept if the turn ends with the same words, and otherwise cancelled
    /// (`vb_reply_is_cancelled`) and the callback called again with the final transcript.
    pub on_transcript: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            session: *mut VbSession,
            transcript: *const c_char,
            reply: *mut VbReply,
        ) -> VbStatus,
    >,
    /// Optional push delivery of events, on the session's event thread. NULL: poll instead.
    pub on_event: Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const VbEvent)>,
}

/// One event. `text` stays valid until the next poll on the session (or until `on_event`
/// returns).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VbEvent {
    /// What happened.
    pub kind: VbEventKind,
    /// Microseconds since the session was created (monotonic).
    pub timestamp_us: u64,
    /// The session state after the event.
    pub state: VbSessionState,
    /// Transcript, reply or error text; NULL when the kind carries none.
    pub text: *const c_char,
    /// The error of `VB_EVENT_ERROR`, else `VB_OK`.
    pub error: VbStatus,
    /// Samples lost, for `VB_EVENT_AUDIO_DROPPED`.
    pub dropped_samples: u64,
    /// Turn latencies, for `VB_EVENT_TURN_METRICS`.
    pub metrics: VbTurnMetrics,
}

impl VbEvent {
    /// The C view of `event`, with `text` pointing into `text` (which must outlive the view).
    fn view(event: &Event, text: Option<&CString>) -> VbEvent {
        VbEvent {
            kind: event.kind,
            timestamp_us: event.timestamp_us,
            state: event.state,
            text: text.map_or(ptr::null(), |t| t.as_ptr()),
            error: event.error,
            dropped_samples: event.dropped_samples,
            metrics: event.metrics,
        }
    }
}

fn event_text(event: &Event) -> Option<CString> {
    event.text.as_deref().map(c_string)
}

/// The C agent: calls `on_transcript` with a `VbReply` wrapping the Rust reply.
struct CAgent {
    user_data: HostPtr,
    on_transcript:
        unsafe extern "C" fn(*mut c_void, *mut VbSession, *const c_char, *mut VbReply) -> VbStatus,
    session: Arc<AtomicPtr<VbSession>>,
}

/// `on_transcript` as it really is at the ABI level: a C enum return is a C `int`. Reading the
/// host's status as an integer keeps an out-of-range value from being undefined behaviour.
type RawTranscriptFn =
    unsafe extern "C" fn(*mut c_void, *mut VbSession, *const c_char, *mut VbReply) -> i32;

impl Agent for CAgent {
    fn on_transcript(&self, transcript: &str, reply: &mut Reply) -> Result<()> {
        let text = c_string(transcript);
        let mut c_reply = VbReply { reply };
        // SAFETY: `VbStatus` is a `repr(C)` enum, passed and returned exactly like a C `int`, so
        // the two function pointer types have the same ABI.
        let raw: RawTranscriptFn = unsafe { std::mem::transmute(self.on_transcript) };
        let session = self.session.load(Ordering::Acquire);
        // SAFETY: the host's function with its own user_data; the strings and the reply outlive
        // the call.
        let status = unsafe { raw(self.user_data.get(), session, text.as_ptr(), &mut c_reply) };
        match VbStatus::from_raw(status.into()) {
            Some(VbStatus::VB_OK) => Ok(()),
            // The refusal of a write to the cancelled reply, passed back: nothing new to report.
            Some(VbStatus::VB_ERR_INVALID_STATE) if reply.is_cancelled() => {
                Err(Error::invalid_state(REPLY_CANCELLED))
            }
            Some(status) => Err(Error::new(
                status,
                format!("on_transcript returned {status}"),
            )),
            None => Err(Error::invalid_argument(format!(
                "on_transcript returned {status}, which is no VbStatus"
            ))),
        }
    }
}

/// Creates a session on a running backend. `session_config_json` may be NULL (all defaults).
/// `callbacks` may be NULL when the pipeline needs no agent (s2s); an `stt_tts` session without
/// `on_transcript` is `VB_ERR_INVALID_ARGUMENT`. On success `*out_session` owns the session; free
/// it with `vb_session_free`. Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend; `session_config_json` is NULL or NUL-terminated;
/// `callbacks` is NULL or valid; `out_session` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_create(
    backend: *mut VbBackend,
    session_config_json: *const c_char,
    callbacks: *const VbCallbacks,
    out_session: *mut *mut VbSession,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        let config = if session_config_json.is_null() {
            SessionConfig::default()
        } else {
            // SAFETY: forwarded caller contract.
            SessionConfig::from_json(unsafe {
                required_str(session_config_json, "session_config_json")
            }?)?
        };
        if out_session.is_null() {
            return Err(Error::invalid_argument("out_session is NULL"));
        }
        // SAFETY: forwarded caller contract.
        let host = unsafe { HostCallbacks::new(callbacks) };
        let session =
            backend
                .backend
                .create_session(config, host.agent.clone(), host.on_event.clone())?;
        // SAFETY: checked non-NULL; valid for one write per the contract.
        unsafe { host.hand_out(session, out_session) };
        Ok(())
    })
}

/// The host's `VbCallbacks` as the Rust API takes them.
pub(super) struct HostCallbacks {
    pub(super) agent: Option<Arc<dyn Agent>>,
    pub(super) on_event: Option<EventCallback>,
    /// The handle the C agent passes to `on_transcript`, set by `hand_out`.
    handle: Arc<AtomicPtr<VbSession>>,
}

impl HostCallbacks {
    /// # Safety
    /// `callbacks` is NULL or valid for one read.
    pub(super) unsafe fn new(callbacks: *const VbCallbacks) -> HostCallbacks {
        // SAFETY: forwarded caller contract.
        let callbacks = unsafe { callbacks.as_ref() }.copied();
        let user_data = HostPtr(callbacks.map_or(ptr::null_mut(), |c| c.user_data));
        let handle = Arc::new(AtomicPtr::new(ptr::null_mut()));
        let agent = callbacks
            .and_then(|c| c.on_transcript)
            .map(|on_transcript| {
                Arc::new(CAgent {
                    user_data,
                    on_transcript,
                    session: handle.clone(),
                }) as Arc<dyn Agent>
            });
        let on_event = callbacks.and_then(|c| c.on_event).map(|on_event| {
            Arc::new(move |event: &Event| {
                let text = event_text(event);
                let view = VbEvent::view(event, text.as_ref());
                // SAFETY: the host's function with its own user_data; `view` and its text live
                // until it returns.
                unsafe { on_event(user_data.get(), &view) };
            }) as EventCallback
        });
        HostCallbacks {
            agent,
            on_event,
            handle,
        }
    }

    /// Boxes `session` into the C handle its agent knows and writes it to `*out`.
    ///
    /// # Safety
    /// `out` is valid for one write.
    unsafe fn hand_out(&self, session: Session, out: *mut *mut VbSession) {
        let handle = Box::into_raw(Box::new(VbSession {
            session,
            polled_text: Mutex::new(None),
        }));
        self.handle.store(handle, Ordering::Release);
        // SAFETY: valid for one write per the caller's contract.
        unsafe { *out = handle };
    }

    /// Points the agent at `handle` (a session boxed before its callbacks were known).
    pub(super) fn attach(&self, handle: *mut VbSession) {
        self.handle.store(handle, Ordering::Release);
    }
}

impl VbSession {
    /// Boxes `session` into a C handle the host owns (frees with `vb_session_free`).
    pub(super) fn into_raw(session: Session) -> *mut VbSession {
        Box::into_raw(Box::new(VbSession {
            session,
            polled_text: Mutex::new(None),
        }))
    }
}

// ---- Session persistence: resuming a recovered session, the conversation history. ----

/// Reopens a session of `vb_backend_recovered_sessions` (not started) under its id, with its
/// configuration (without the `auth_token`, which is never stored) and conversation history;
/// `callbacks` as for `vb_session_create`. It counts against `max_concurrent_sessions`.
/// `VB_ERR_NOT_FOUND` when no recovered session has that id (unknown, resumed or discarded
/// already, or persistence off). On success `*out_session` owns the session; free it with
/// `vb_session_free`. Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend; `session_id` is NULL or NUL-terminated; `callbacks` is
/// NULL or valid; `out_session` is NULL or valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_resume(
    backend: *mut VbBackend,
    session_id: *const c_char,
    callbacks: *const VbCallbacks,
    out_session: *mut *mut VbSession,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        // SAFETY: forwarded caller contract.
        let session_id = unsafe { required_str(session_id, "session_id") }?;
        if out_session.is_null() {
            return Err(Error::invalid_argument("out_session is NULL"));
        }
        // SAFETY: forwarded caller contract.
        let host = unsafe { HostCallbacks::new(callbacks) };
        let session = backend.backend.resume_session(
            session_id,
            host.agent.clone(),
            host.on_event.clone(),
        )?;
        // SAFETY: checked non-NULL; valid for one write per the contract.
        unsafe { host.hand_out(session, out_session) };
        Ok(())
    })
}

/// Writes the session's finished turns as a JSON array, oldest first, into `buf`:
/// `[{"transcript": "…", "reply": "…", "interrupted": false}, …]`, a resumed session's earlier
/// turns included (texts the privacy policy kept out of the store are `null` there). An agent
/// may call it from `on_transcript` for the context of the turn. `*needed` always gets the size
/// including the NUL; a short buffer is `VB_ERR_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `session` is NULL or a live session; `buf` is NULL or valid for `capacity` bytes; `needed` is
/// NULL or valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_history(
    session: *const VbSession,
    buf: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let session = unsafe { required_ref(session, "session") }?;
        let json = serde_json::to_string(&session.session.history())
            .map_err(|e| Error::internal(e.to_string()))?;
        // SAFETY: forwarded caller contract.
        unsafe { fill_buffer(&json, buf, capacity, needed) }
    })
}

/// Starts the session's realtime thread and pipeline. `VB_ERR_INVALID_STATE` when already
/// started or stopped. Thread-safe.
///
/// # Safety
/// `session` is NULL or a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_start(session: *mut VbSession) -> VbStatus {
    // SAFETY: forwarded caller contract.
    guard(|| unsafe { required_ref(session, "session") }?.session.start())
}

/// Stops the session: no callback runs after it returns (except one that is calling it).
/// Idempotent. Thread-safe.
///
/// # Safety
/// `session` is NULL or a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_stop(session: *mut VbSession) -> VbStatus {
    // SAFETY: forwarded caller contract.
    guard(|| unsafe { required_ref(session, "session") }?.session.stop())
}

/// Stops and frees a session. NULL is a no-op.
///
/// # Safety
/// `session` is NULL or a live session that no other thread uses any more.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_free(session: *mut VbSession) {
    guard_value((), || {
        if !session.is_null() {
            // SAFETY: created by `vb_session_create` and not freed before, per the contract.
            drop(unsafe { Box::from_raw(session) });
        }
    })
}

/// Host-side barge-in: stops playback now and cancels the reply in progress. Thread-safe.
///
/// # Safety
/// `session` is NULL or a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_interrupt(session: *mut VbSession) -> VbStatus {
    // SAFETY: forwarded caller contract.
    guard(|| {
        unsafe { required_ref(session, "session") }?
            .session
            .interrupt()
    })
}

/// Speaks `text` without a user turn (a greeting), after any reply in progress. Thread-safe.
///
/// # Safety
/// `session` is NULL or a live session; `text` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_say(session: *mut VbSession, text: *const c_char) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let session = unsafe { required_ref(session, "session") }?;
        // SAFETY: forwarded caller contract.
        session.session.say(unsafe { required_str(text, "text") }?)
    })
}

/// Writes the session id, NUL-terminated, into `buf`. `*needed` always gets the size including
/// the NUL; a short buffer is `VB_ERR_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `session` is NULL or a live session; `buf` is NULL or valid for `capacity` bytes; `needed` is
/// NULL or valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_id(
    session: *const VbSession,
    buf: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let session = unsafe { required_ref(session, "session") }?;
        // SAFETY: forwarded caller contract.
        unsafe { fill_buffer(session.session.id(), buf, capacity, needed) }
    })
}

/// The session's current state; `VB_STATE_ERROR` for NULL. Thread-safe.
///
/// # Safety
/// `session` is NULL or a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_state(session: *const VbSession) -> VbSessionState {
    guard_value(VbSessionState::VB_STATE_ERROR, || {
        // SAFETY: forwarded caller contract.
        unsafe { session.as_ref() }.map_or(VbSessionState::VB_STATE_ERROR, |s| s.session.state())
    })
}

/// Writes to `*writable` how many samples `vb_session_process_audio` would take right now. A host
/// pushing a file faster than real time waits while this is smaller than its next piece instead
/// of losing audio. Realtime-safe; call it from the thread that calls `vb_session_process_audio`.
///
/// # Safety
/// `session` is NULL or a live session; `writable` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_writable_samples(
    session: *mut VbSession,
    writable: *mut usize,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let session = unsafe { required_ref(session, "session") }?;
        if writable.is_null() {
            return Err(Error::invalid_argument("writable is NULL"));
        }
        let n = session.session.writable_samples();
        // SAFETY: checked non-NULL; valid for one write per the contract.
        unsafe { *writable = n };
        Ok(())
    })
}

/// Copies mono int16 PCM at `input_sample_rate` into the session. `*accepted` (may be NULL) gets
/// the number of samples taken. `VB_ERR_BUFFER_FULL` when fewer than `sample_count` were taken
/// (then `*accepted` is still written); the loss is counted in `frames_dropped` and reported as
/// `VB_EVENT_AUDIO_DROPPED`. Realtime-safe: never blocks, allocates or locks.
///
/// # Safety
/// `session` is NULL or a live session; `pcm` is NULL or valid for `sample_count` samples;
/// `accepted` is NULL or valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_process_audio(
    session: *mut VbSession,
    pcm: *const i16,
    sample_count: usize,
    accepted: *mut usize,
) -> VbStatus {
    guard_realtime(|| {
        // SAFETY: forwarded caller contract.
        let session = unsafe { required_ref(session, "session") }?;
        let samples: &[i16] = match (pcm.is_null(), sample_count) {
            (_, 0) => &[],
            (true, _) => {
                return Err(Error::invalid_argument(
                    "pcm is NULL but sample_count is not 0",
                ));
            }
            // SAFETY: non-NULL and valid for `sample_count` samples per the contract.
            (false, n) => unsafe { std::slice::from_raw_parts(pcm, n) },
        };
        let push = session.session.process_audio(samples)?;
        if !accepted.is_null() {
            // SAFETY: valid for one write per the contract.
            unsafe { *accepted = push.accepted };
        }
        Ok(if push.dropped > 0 {
            RealtimeOutcome::Refused(
                VbStatus::VB_ERR_BUFFER_FULL,
                c"input ring full: the session took fewer samples than given; the rest were dropped",
            )
        } else {
            RealtimeOutcome::Done
        })
    })
}

/// Copies up to `capacity` samples of agent audio at `output_sample_rate` into `out`. `*written`
/// gets the count; 0 when nothing is due. Realtime-safe: never blocks, allocates or locks.
///
/// # Safety
/// `session` is NULL or a live session; `out` is NULL or valid for `capacity` samples; `written`
/// is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_read_audio(
    session: *mut VbSession,
    out: *mut i16,
    capacity: usize,
    written: *mut usize,
) -> VbStatus {
    guard_realtime(|| {
        // SAFETY: forwarded caller contract.
        let session = unsafe { required_ref(session, "session") }?;
        if written.is_null() {
            return Err(Error::invalid_argument("written is NULL"));
        }
        let buffer: &mut [i16] = match (out.is_null(), capacity) {
            (_, 0) => &mut [],
            (true, _) => return Err(Error::invalid_argument("out is NULL but capacity is not 0")),
            // SAFETY: non-NULL and valid for `capacity` samples per the contract.
            (false, n) => unsafe { std::slice::from_raw_parts_mut(out, n) },
        };
        let n = session.session.read_audio(buffer)?;
        // SAFETY: checked non-NULL; valid for one write per the contract.
        unsafe { *written = n };
        Ok(RealtimeOutcome::Done)
    })
}

/// Non-blocking. `VB_OK` and `*has_event = true` when an event was written to `*out`;
/// `*has_event = false` when none is waiting. The event's text stays valid until the next poll on
/// this session. `VB_ERR_INVALID_STATE` when the session delivers events to `on_event`.
///
/// # Safety
/// `session` is NULL or a live session; `out` and `has_event` are valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_poll_event(
    session: *mut VbSession,
    out: *mut VbEvent,
    has_event: *mut bool,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let session = unsafe { required_ref(session, "session") }?;
        if out.is_null() || has_event.is_null() {
            return Err(Error::invalid_argument("out or has_event is NULL"));
        }
        let event = session.session.poll_event()?;
        let mut polled = session
            .polled_text
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match event {
            Some(event) => {
                *polled = event_text(&event);
                // SAFETY: both checked non-NULL; valid for one write per the contract. The text
                // lives in `polled_text` until the next poll.
                unsafe {
                    *out = VbEvent::view(&event, polled.as_ref());
                    *has_event = true;
                }
            }
            // SAFETY: checked non-NULL; valid for one write per the contract.
            None => unsafe { *has_event = false },
        }
        Ok(())
    })
}

/// Appends text to the reply; TTS speaks complete sentences as they arrive. Only during
/// `on_transcript`. `VB_ERR_INVALID_STATE` after `vb_reply_end` or once barge-in cancelled the
/// reply (stop producing it then).
///
/// # Safety
/// `reply` is NULL or the reply passed to the running `on_transcript`; `text_chunk` is NULL or
/// NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_reply_write(
    reply: *mut VbReply,
    text_chunk: *const c_char,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let reply = unsafe { reply_mut(reply) }?;
        // SAFETY: forwarded caller contract.
        reply.write(unsafe { required_str(text_chunk, "text_chunk") }?)
    })
}

/// Ends the reply. Only during `on_transcript`; returning without it ends the reply too.
///
/// # Safety
/// `reply` is NULL or the reply passed to the running `on_transcript`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_reply_end(reply: *mut VbReply) -> VbStatus {
    // SAFETY: forwarded caller contract.
    guard(|| unsafe { reply_mut(reply) }?.end())
}

/// Fails the reply with the agent's own error: a status and a message the host chose (say,
/// `VB_ERR_PROVIDER` and "the order database is down"). The host gets a `VB_EVENT_ERROR` with
/// that status and the text "agent: <message>", the turn ends (text written before is still
/// spoken) and the session goes back to `VB_STATE_LISTENING`. Only during `on_transcript`; what
/// it returns afterwards is not reported again (`return vb_reply_fail(reply, …);` returns
/// `VB_OK`). `VB_ERR_INVALID_ARGUMENT` for a NULL reply or message, a message that is not UTF-8,
/// `VB_OK` or a value that is no `VbStatus`; `VB_ERR_INVALID_STATE` after `vb_reply_end`, a
/// previous `vb_reply_fail`, or once barge-in cancelled the reply. `status` is read as a plain
/// integer (any `VbStatus` passes as one).
///
/// # Safety
/// `reply` is NULL or the reply passed to the running `on_transcript`; `message` is NULL or
/// NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_reply_fail(
    reply: *mut VbReply,
    status: i32,
    message: *const c_char,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let reply = unsafe { reply_mut(reply) }?;
        let status = VbStatus::from_raw(status.into())
            .ok_or_else(|| Error::invalid_argument(format!("status {status} is no VbStatus")))?;
        // SAFETY: forwarded caller contract.
        let message = unsafe { required_str(message, "message") }?;
        reply.fail(status, message)
    })
}

/// Whether the reply was cancelled — by barge-in, `vb_session_interrupt`, `agent_timeout_ms`,
/// or (with `turn.preemptive_ms`) because the user went on after the pause it answered: the
/// agent should stop producing it. False for NULL.
///
/// # Safety
/// `reply` is NULL or the reply passed to the running `on_transcript`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_reply_is_cancelled(reply: *const VbReply) -> bool {
    guard_value(false, || {
        // SAFETY: forwarded caller contract; `reply.reply` points to the live Rust reply.
        unsafe { reply.as_ref().and_then(|r| r.reply.as_ref()) }.is_some_and(Reply::is_cancelled)
    })
}

/// # Safety
/// `reply` is NULL or the reply passed to the running `on_transcript`.
unsafe fn reply_mut<'a>(reply: *mut VbReply) -> Result<&'a mut Reply> {
    // SAFETY: per the contract the VbReply and the Rust reply it points to live during the call.
    unsafe { reply.as_mut().and_then(|r| r.reply.as_mut()) }
        .ok_or_else(|| Error::invalid_argument("reply is NULL"))
}
