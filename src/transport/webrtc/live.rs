//! Calls under way, by `pc_id`: what reaches a call's task from the HTTP side after its first
//! offer (a renegotiation, a restart, trickled candidates). The registry only routes; the call's
//! task owns its peer connection. Any thread; the lock is held for a map operation only.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::offer::Refusal;

/// What the HTTP side asks of a call under way.
pub enum Control {
    /// A new offer for the connection: answered on the same peer connection (renegotiation,
    /// a browser's ICE restart), or, with `restart`, on a new one that replaces it.
    Offer {
        /// The offer's SDP (it parsed).
        sdp: String,
        /// Replace the peer connection (`restart_pc`).
        restart: bool,
        /// The answer's SDP, or why there is none.
        answer: oneshot::Sender<Result<String, Refusal>>,
    },
    /// Trickled candidates (`candidateInit` JSON each).
    Candidates(Vec<String>),
}

/// The calls of one server under way.
#[derive(Default)]
pub struct Live {
    calls: Mutex<HashMap<String, mpsc::UnboundedSender<Control>>>,
    next: AtomicU64,
}

/// A call's place in the registry; removed when dropped (the call's task ended).
pub struct LiveEntry {
    /// The call's `pc_id`.
    pub pc_id: String,
    live: Arc<Live>,
}

impl Drop for LiveEntry {
    fn drop(&mut self) {
        self.live.lock().remove(&self.pc_id);
    }
}

impl Live {
    /// A fresh, unguessable `pc_id` (Pipecat's are `SmallWebRTCConnection-<uuid hex>`).
    pub fn new_pc_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let state = RandomState::new();
        format!(
            "webrtc-{:016x}{:016x}",
            state.hash_one(n),
            state.hash_one(n ^ u64::MAX)
        )
    }

    /// Registers the call `pc_id`; its task reads what comes on the receiver.
    pub fn register(
        self: &Arc<Self>,
        pc_id: String,
    ) -> (LiveEntry, mpsc::UnboundedReceiver<Control>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(pc_id.clone(), tx);
        (
            LiveEntry {
                pc_id,
                live: self.clone(),
            },
            rx,
        )
    }

    /// Hands `control` to the call `pc_id`; `false` when there is no such call (any more).
    pub fn send(&self, pc_id: &str, control: Control) -> bool {
        self.lock()
            .get(pc_id)
            .is_some_and(|call| call.send(control).is_ok())
    }

    /// Calls under way.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Control>>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}
