//! A backend's side of its session store: the sessions an earlier process left in it (listed,
//! resumed or discarded), flushing the store and reading it.

use std::sync::Arc;

use super::backend::Backend;
use super::persist::{RecoveredSession, SessionStore, StoredSession};
use super::session::{EventCallback, Session};
use crate::agent::Agent;
use crate::error::{Error, Result, VbStatus};

impl Backend {
    /// Reopens a session of [`Backend::recovered_sessions`] (not started): same id, configuration
    /// (without its `auth_token`, which is never stored) and history, and it goes on writing its
    /// record. It counts against `max_concurrent_sessions`. `VB_ERR_NOT_FOUND` when no recovered
    /// session has that id (unknown, resumed or discarded already, or persistence off). Any
    /// thread.
    pub fn resume_session(
        &self,
        session_id: &str,
        agent: Option<Arc<dyn Agent>>,
        on_event: Option<EventCallback>,
    ) -> Result<Session> {
        let store = self.store_of_recovered(session_id)?;
        let record = store.claim(session_id)?;
        match self.open_session(record.config.clone(), Some(&record), agent, on_event) {
            Ok(session) => Ok(session),
            Err(e) => {
                store.unclaim(record);
                Err(e)
            }
        }
    }

    /// Sessions found in the store when the backend was created and not resumed or discarded
    /// since: an earlier process ended without stopping them. Oldest first. Any thread.
    pub fn recovered_sessions(&self) -> Vec<RecoveredSession> {
        self.inner
            .store
            .as_ref()
            .map_or_else(Vec::new, SessionStore::recovered)
    }

    /// Forgets a session of [`Backend::recovered_sessions`] without resuming it: its record and
    /// its turn audio are deleted from the store file before this returns, and it is no longer
    /// listed. `VB_ERR_NOT_FOUND` when no recovered session has that id (unknown, resumed or
    /// discarded already, or persistence off); `VB_ERR_INTERNAL` when the file could not be
    /// written (the session stays listed). Any thread; blocks for the disk write.
    pub fn discard_recovered(&self, session_id: &str) -> Result<()> {
        self.store_of_recovered(session_id)?.discard(session_id)
    }

    /// Blocks until every session record written so far is on disk; returns the first write
    /// failure since the previous flush. `Ok` at once when persistence is off. Any thread.
    pub fn flush_store(&self) -> Result<()> {
        if let Some(shared) = &self.inner.shared {
            shared.flush();
        }
        self.inner
            .store
            .as_ref()
            .map_or(Ok(()), SessionStore::flush)
    }

    /// What the session store holds now, turn audio included (after [`Backend::flush_store`]:
    /// everything written so far): for an operator's look, and for tests. Empty when
    /// persistence is off. Any thread.
    pub fn stored_sessions(&self) -> Result<Vec<StoredSession>> {
        self.inner
            .store
            .as_ref()
            .map_or(Ok(Vec::new()), SessionStore::read)
    }

    /// The store a recovered session would be in; `VB_ERR_NOT_FOUND` when persistence is off.
    fn store_of_recovered(&self, session_id: &str) -> Result<&SessionStore> {
        self.inner.store.as_ref().ok_or_else(|| {
            Error::new(
                VbStatus::VB_ERR_NOT_FOUND,
                format!("no recovered session '{session_id}': persistence is off"),
            )
        })
    }
}
