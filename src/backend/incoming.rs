//! Sessions that arrive by themselves: a LiveKit job the server dispatched to this worker (and,
//! later, a browser's or a phone's call). The backend opens each one, hands it to the host's
//! [`IncomingHandler`] (`VbIncoming` in C), and starts it when the host takes it.
//!
//! The host owns a session it took as if it had created it, and drops (frees) it once it has
//! stopped. A session that arrives is not checked against `auth` (whoever dispatched it — the
//! LiveKit server, holding the API secret — vouches for it); it counts against
//! `max_concurrent_sessions` and the rate limits like any other.

use std::sync::{Arc, Weak};

use serde_json::Value;

use super::backend::BackendInner;
use super::session::{EventCallback, Session, SessionInner};
use crate::agent::Agent;
use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::event::VbSessionState;
use crate::pipeline::{Arrivals, Arrived};

/// How the host takes a session that arrived.
#[derive(Default)]
pub struct Accepted {
    /// Its agent (`stt_tts` conversations need one).
    pub agent: Option<Arc<dyn Agent>>,
    /// Push delivery of its events (`None`: the host polls them).
    pub on_event: Option<EventCallback>,
}

/// The host's hook for sessions that arrive by themselves. Called on an I/O thread, one call per
/// session, possibly concurrently for different sessions.
pub trait IncomingHandler: Send + Sync {
    /// `session` was opened by the backend (not started); `info` describes it, e.g.
    /// `{"source": "livekit-dispatch", "room": "…", "participant": "…", "job_id": "…"}`.
    /// Keep the session and return how to run it to take it (the backend then starts it); an
    /// error refuses the call (the session is stopped, the call fails with that reason).
    fn on_session(&self, session: Session, info: &Value) -> Result<Accepted>;
}

/// The backend as the listening transport sees it.
pub(crate) struct BackendArrivals {
    pub(crate) backend: Weak<BackendInner>,
}

impl Arrivals for BackendArrivals {
    fn accepting(&self) -> bool {
        self.backend
            .upgrade()
            .is_some_and(|b| b.incoming_handler().is_some())
    }

    fn arrive(&self, config: SessionConfig, info: Value) -> Result<Arc<dyn Arrived>> {
        let backend = self
            .backend
            .upgrade()
            .ok_or_else(|| Error::invalid_state("the backend has been freed"))?;
        let handler = backend.incoming_handler().ok_or_else(|| {
            Error::invalid_state("no host takes sessions that arrive (vb_backend_set_incoming)")
        })?;
        let session = backend.open_arrival(config)?;
        let inner = session.inner.clone();
        // The host now owns `session`; it is stopped if the host refuses it or drops it.
        let accepted = handler.on_session(session, &info)?;
        let started = inner
            .accept(accepted.agent, accepted.on_event)
            .and_then(|()| inner.start());
        if let Err(e) = started {
            let _ = inner.stop();
            return Err(e);
        }
        Ok(Arc::new(ArrivedSession { inner }))
    }

    fn active_sessions(&self) -> u32 {
        self.backend
            .upgrade()
            .map_or(0, |b| b.active_session_count())
    }
}

/// A session that arrived, followed by its transport.
struct ArrivedSession {
    inner: Arc<SessionInner>,
}

impl Arrived for ArrivedSession {
    fn id(&self) -> String {
        self.inner.id.clone()
    }

    fn is_over(&self) -> bool {
        self.inner.state() == VbSessionState::VB_STATE_STOPPED
    }

    fn end(&self) {
        let _ = self.inner.stop();
    }
}
