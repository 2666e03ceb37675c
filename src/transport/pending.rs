//! Calls waiting for their session, for listening transports (a phone call that sent `start`, a
//! browser's offer). A call is registered under a fresh, unguessable key; the key travels to the
//! session as its `connection_token` (opaque, a secret: never logged or persisted), and the
//! transport's `connect` hands the session's media edge to the call's task through it. A key
//! names one call once: attaching takes it out.
//!
//! Any thread; the lock is held for a map operation only, never on the realtime path.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::config::SessionConfig;
use crate::error::{Error, Result, VbStatus};
use crate::transport::{Arrivals, MediaEdge, MediaLink};

/// Hands an arriving call's session to the host's hook (`VbIncoming`) on a blocking thread (the
/// hook may block), and gives the hook's decision through the returned receiver. A hook that
/// panics refuses the call with `VB_ERR_PANIC`: the caller must still hear of it. Call on the I/O
/// runtime.
pub fn decide_arrival(
    arrivals: Arc<dyn Arrivals>,
    config: SessionConfig,
    info: serde_json::Value,
) -> oneshot::Receiver<Result<()>> {
    let (decided_tx, decided) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            arrivals.arrive(config, info).map(drop)
        }))
        .unwrap_or_else(|_| {
            Err(Error::new(
                VbStatus::VB_ERR_PANIC,
                "the host's hook for arriving sessions panicked",
            ))
        });
        let _ = decided_tx.send(result);
    });
    decided
}

/// What a call's task gets when its session starts.
pub struct Attach {
    /// The session's audio, events and news.
    pub edge: MediaEdge,
    /// Fires when the session closes the transport (stopped by the host or the backend).
    pub close: oneshot::Receiver<()>,
    /// Dropped when the call's task has ended (what [`MediaLink::close`] waits for).
    pub done: crossbeam_channel::Sender<()>,
}

/// The calls of one server that wait for their session.
pub struct Calls {
    /// The transport's name, in keys and errors (`"phone"`).
    who: &'static str,
    pending: Mutex<HashMap<String, oneshot::Sender<Attach>>>,
    next: AtomicU64,
}

/// A registered call; unregistered when dropped (the call ended before its session started).
pub struct PendingCall {
    /// The key its session carries as `connection_token`.
    pub key: String,
    calls: Arc<Calls>,
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.key);
    }
}

impl Calls {
    /// No calls yet, of the transport `who`.
    pub fn new(who: &'static str) -> Calls {
        Calls {
            who,
            pending: Mutex::default(),
            next: AtomicU64::new(0),
        }
    }

    /// Registers a call; its task waits on the receiver for the session's edge.
    pub fn register(self: &Arc<Self>) -> (PendingCall, oneshot::Receiver<Attach>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let key = format!(
            "{}-call-{n}-{:016x}",
            self.who,
            RandomState::new().hash_one(n)
        );
        let (tx, rx) = oneshot::channel();
        self.lock().insert(key.clone(), tx);
        (
            PendingCall {
                key,
                calls: self.clone(),
            },
            rx,
        )
    }

    /// Whether `key` names a call waiting for its session.
    pub fn is_pending(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }

    /// Hands `edge` to the call registered under `key`; the link closes it. `VB_ERR_CONNECTION_FAILED`
    /// when the call is gone (the caller hung up meanwhile) or was attached already.
    pub fn attach(&self, key: &str, edge: MediaEdge) -> Result<MediaLink> {
        let gone = || {
            Error::new(
                VbStatus::VB_ERR_CONNECTION_FAILED,
                format!("{}: the call ended before its session started", self.who),
            )
        };
        let call = self.lock().remove(key).ok_or_else(gone)?;
        let (close_tx, close) = oneshot::channel();
        let (done, finished) = crossbeam_channel::bounded::<()>(0);
        call.send(Attach { edge, close, done })
            .map_err(|_| gone())?;
        Ok(MediaLink::new(close_tx, finished))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Attach>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}
