//! Bringing back conversations whose process died: while a backend with a shared store
//! (`persistence.shared_dir`) listens for calls (a LiveKit worker), a thread looks every half
//! lease for conversations nobody renews ([`SharedStore::stale`]), claims each for this process
//! ([`SharedStore::claim`]: one process per conversation), and asks the listening transport to
//! bring it back ([`Listener::recover`]: LiveKit dispatches an agent to the room again). The
//! session that then takes the conversation — in whichever process the server chose — goes on
//! with its history and ends the claim with its first write. A conversation with nobody left
//! to talk to is forgotten.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{RecvTimeoutError, Sender};

use super::persist::SharedStore;
use crate::pipeline::{Listener, Recovered};

/// The recovery thread of a running backend; stopped (and joined) when dropped.
pub(crate) struct Recovery {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Recovery {
    /// Starts looking for stale conversations of `shared` for `listener` to bring back.
    pub(crate) fn start(
        shared: Arc<SharedStore>,
        listener: Arc<dyn Listener>,
        span: tracing::Span,
    ) -> Recovery {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let every = shared.lease() / 2;
        let thread = std::thread::Builder::new()
            .name("vb-recovery".into())
            .spawn(move || {
                let _in_span = span.enter();
                loop {
                    match stopped.recv_timeout(every) {
                        Err(RecvTimeoutError::Timeout) => look_once(&shared, listener.as_ref()),
                        _ => return,
                    }
                }
            })
            .ok();
        Recovery {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Recovery {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One look: every stale conversation this process can claim is brought back or forgotten.
fn look_once(shared: &SharedStore, listener: &dyn Listener) {
    for record in shared.stale() {
        let id = record.conversation_id.as_str();
        if !listener.can_recover(&record.config) || !shared.claim(id) {
            continue;
        }
        match listener.recover(id, &record.config) {
            Ok(Recovered::Dispatched(how)) => {
                // The claim stays until the session that takes it over writes (or it lapses
                // after three leases and the conversation is tried again).
                tracing::info!(
                    conversation = id,
                    turns = record.history.len(),
                    "conversation of a dead process brought back: {how}"
                );
            }
            Ok(Recovered::Over(why)) => {
                tracing::info!(conversation = id, "conversation over: {why}");
                shared.forget(id);
            }
            Ok(Recovered::NotYet(why)) => {
                tracing::debug!(conversation = id, "not brought back yet: {why}");
                shared.unclaim(id);
            }
            Err(e) => {
                tracing::warn!(
                    conversation = id,
                    "bringing a conversation back failed: {e}"
                );
                shared.unclaim(id);
            }
        }
    }
}
