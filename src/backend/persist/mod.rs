//! Session persistence: the records of active sessions in an embedded store (redb), so that a
//! restarted process can list and resume the sessions that its predecessor never stopped.
//!
//! A store file is opened once per process and shared by every backend configured with it; redb
//! locks it, so another process gets a configuration error. Each active session has a record:
//! its configuration (never its `auth_token`, and `connection_url` without credentials), times,
//! counters and conversation history, texts only as far as the privacy policy allows; a turn's
//! user audio, when the policy allows it, goes to a second table. Records are written when a
//! session starts and after each finished turn, and deleted when it stops: a stopped session
//! has completed, so a record left in the file means that its process died. The default file,
//! under the user's cache, is removed when the last backend using it closes it with no record
//! left: a program whose sessions all completed leaves nothing there. A writer thread commits
//! whatever is queued in one transaction; the session task never waits for the disk.
//!
//! Conversations that must outlive their process on another one (a LiveKit job whose worker
//! died) are kept in a directory the processes share: [`shared`].

mod shared;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use super::privacy::{DataKind, DataOwner, PrivacyPolicy};
use crate::agent::Turn;
use crate::config::{PersistenceConfig, SessionConfig};
use crate::error::{Error, Result, VbStatus};
use crate::net::redact_url;
use crate::pipeline::history::TurnLog;
use writer::{OPEN_STORES, Op, StoreFile, store_path};

pub(crate) use shared::{SharedConversation, SharedStore};

/// The record format this build writes and reads.
const RECORD_VERSION: u32 = 1;

/// One session as the store holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSession {
    /// Record format version.
    pub version: u32,
    /// The session id.
    pub session_id: String,
    /// The session configuration, without `auth_token` and with `connection_url` stripped of
    /// credentials.
    pub config: SessionConfig,
    /// When the session was first created, in ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When the record was last written, in ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// Finished user turns.
    pub turns: u64,
    /// Turns whose reply was cut short by barge-in or the host's interrupt.
    pub interruptions: u64,
    /// The conversation, oldest first; texts the privacy policy withheld are `None`.
    pub history: Vec<Turn>,
    /// The user's speech of turns, when the privacy policy allowed it (not part of the record:
    /// filled by [`crate::Backend::stored_sessions`]).
    #[serde(skip)]
    pub audio: Vec<StoredAudio>,
}

/// The user's speech of one turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAudio {
    /// Index of the turn in the history.
    pub turn: u64,
    /// The backend's internal rate.
    pub sample_rate: u32,
    /// Mono PCM.
    pub pcm: Vec<i16>,
}

/// A session found in the store when the backend was created: its process ended without
/// stopping it. `vb_backend_recovered_sessions` lists these as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveredSession {
    /// The id to resume it under.
    pub session_id: String,
    /// Its `user_id`.
    pub user_id: String,
    /// Finished user turns in its history.
    pub turns: u64,
}

/// A backend's handle on its store file (the file stays open while any backend uses it).
pub(crate) struct SessionStore {
    file: Arc<StoreFile>,
}

impl SessionStore {
    /// Opens the store `config` names; `None` when persistence is off (`path` ""). Failures are
    /// `VB_ERR_INVALID_CONFIG` naming the path. Control thread (`Backend::new`).
    pub(crate) fn open(config: &PersistenceConfig) -> Result<Option<SessionStore>> {
        let Some((path, when_empty)) = store_path(config)? else {
            return Ok(None);
        };
        let mut open = lock(&OPEN_STORES);
        if let Some((file, users)) = open.get_mut(&path) {
            *users += 1;
            return Ok(Some(SessionStore { file: file.clone() }));
        }
        let file = Arc::new(StoreFile::open(path.clone(), when_empty)?);
        open.insert(path, (file.clone(), 1));
        Ok(Some(SessionStore { file }))
    }

    /// The store file.
    pub(crate) fn path(&self) -> &Path {
        &self.file.path
    }

    /// Recovered sessions not resumed yet, oldest first.
    pub(crate) fn recovered(&self) -> Vec<RecoveredSession> {
        let orphans = lock(&self.file.orphans);
        let mut found: Vec<&StoredSession> = orphans.values().collect();
        found.sort_by_key(|r| (r.created_at_ms, r.session_id.as_str()));
        found
            .into_iter()
            .map(|r| RecoveredSession {
                session_id: r.session_id.clone(),
                user_id: r.config.user_id.clone(),
                turns: r.turns,
            })
            .collect()
    }

    /// Takes a recovered session for resuming; `VB_ERR_NOT_FOUND` when there is none under that
    /// id (unknown, resumed or discarded already).
    pub(crate) fn claim(&self, session_id: &str) -> Result<StoredSession> {
        lock(&self.file.orphans)
            .remove(session_id)
            .ok_or_else(|| self.not_recovered(session_id))
    }

    /// Forgets a recovered session without resuming it: its record and audio are deleted from
    /// the file before this returns. `VB_ERR_NOT_FOUND` when there is none under that id
    /// (unknown, resumed or discarded already); `VB_ERR_INTERNAL` when the file could not be
    /// written (the session stays recovered). Blocks for the disk write; any thread but the
    /// writer.
    pub(crate) fn discard(&self, session_id: &str) -> Result<()> {
        let record = lock(&self.file.orphans)
            .remove(session_id)
            .ok_or_else(|| self.not_recovered(session_id))?;
        let discarded = self.ask(|done| Op::Discard(session_id.to_owned(), done));
        if discarded.is_err() {
            self.unclaim(record);
        }
        discarded
    }

    fn not_recovered(&self, session_id: &str) -> Error {
        Error::new(
            VbStatus::VB_ERR_NOT_FOUND,
            format!(
                "no recovered session '{session_id}' in {} (unknown, resumed or discarded already)",
                self.path().display()
            ),
        )
    }

    /// Gives back a claimed session whose resuming failed.
    pub(crate) fn unclaim(&self, record: StoredSession) {
        lock(&self.file.orphans).insert(record.session_id.clone(), record);
    }

    /// The store's side of session `id`: writes its record, deletes it at stop. `created_at_ms`
    /// of a resumed session is kept; audio is at `audio_rate`.
    pub(crate) fn session(
        &self,
        id: &str,
        config: &SessionConfig,
        created_at_ms: Option<u64>,
        audio_rate: u32,
        policy: Arc<dyn PrivacyPolicy>,
    ) -> Arc<PersistedSession> {
        let mut config = config.clone();
        config.auth_token = None;
        config.connection_url = config.connection_url.as_deref().map(redact_url);
        Arc::new(PersistedSession {
            id: id.to_owned(),
            config,
            created_at_ms: created_at_ms.unwrap_or_else(now_ms),
            audio_rate,
            policy,
            ops: self.file.ops.clone(),
            failures: crossbeam_channel::unbounded(),
            deleted: AtomicBool::new(false),
        })
    }

    /// Blocks until everything queued so far is committed; the first write failure since the
    /// previous flush, if any. Any thread but the writer.
    pub(crate) fn flush(&self) -> Result<()> {
        self.ask(Op::Flush)
    }

    /// Every record with its audio, as committed now.
    pub(crate) fn read(&self) -> Result<Vec<StoredSession>> {
        self.ask(Op::Read)
    }

    fn ask<T>(&self, op: impl FnOnce(Sender<Result<T>>) -> Op) -> Result<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let closed = || Error::internal(format!("{}: the store is closed", self.path().display()));
        self.file.ops.send(op(tx)).map_err(|_| closed())?;
        rx.recv().map_err(|_| closed())?
    }
}

impl Drop for SessionStore {
    /// The last backend using the file closes it, with the registry locked so that a backend
    /// opening it meanwhile waits until redb has let go of the file.
    fn drop(&mut self) {
        let mut open = lock(&OPEN_STORES);
        let last = open.get_mut(&self.file.path).is_some_and(|(_, users)| {
            *users -= 1;
            *users == 0
        });
        if last {
            open.remove(&self.file.path);
            let _ = self.file.ops.send(Op::Close);
            if let Some(writer) = lock(&self.file.writer).take() {
                let _ = writer.join();
            }
        }
    }
}

/// The store's side of one session (a [`TurnLog`]): writes its record through the writer thread.
pub(crate) struct PersistedSession {
    id: String,
    /// Without credentials.
    config: SessionConfig,
    created_at_ms: u64,
    audio_rate: u32,
    policy: Arc<dyn PrivacyPolicy>,
    ops: Sender<Op>,
    failures: (Sender<Error>, Receiver<Error>),
    /// Set at stop: nothing is written after the delete.
    deleted: AtomicBool,
}

impl PersistedSession {
    /// Deletes the record (and its audio): the session has stopped. Any thread; does not wait.
    pub(crate) fn delete(&self) {
        if !self.deleted.swap(true, Ordering::AcqRel) {
            let _ = self.ops.send(Op::Delete(self.id.clone()));
        }
    }

    fn may_persist(&self, kind: DataKind) -> bool {
        let owner = DataOwner {
            session_id: &self.id,
            user_id: &self.config.user_id,
            metadata: &self.config.metadata,
        };
        self.policy.may_persist(kind, &owner)
    }

    fn fail(&self, message: String) {
        let _ = self.failures.0.send(Error::internal(message));
    }
}

impl TurnLog for PersistedSession {
    fn wants_audio(&self) -> bool {
        self.may_persist(DataKind::Audio)
    }

    fn record(&self, turns: &[Turn], audio: Option<Vec<i16>>) {
        if self.deleted.load(Ordering::Acquire) {
            return;
        }
        let keep_transcripts = self.may_persist(DataKind::Transcript);
        let keep_replies = self.may_persist(DataKind::AgentText);
        let history: Vec<Turn> = turns
            .iter()
            .map(|t| Turn {
                transcript: t.transcript.clone().filter(|_| keep_transcripts),
                reply: t.reply.clone().filter(|_| keep_replies),
                interrupted: t.interrupted,
            })
            .collect();
        let record = StoredSession {
            version: RECORD_VERSION,
            session_id: self.id.clone(),
            config: self.config.clone(),
            created_at_ms: self.created_at_ms,
            updated_at_ms: now_ms(),
            turns: history.len() as u64,
            interruptions: history.iter().filter(|t| t.interrupted).count() as u64,
            history,
            audio: Vec::new(),
        };
        let json = match serde_json::to_string(&record) {
            Ok(json) => json,
            Err(e) => return self.fail(format!("session record of '{}': {e}", self.id)),
        };
        let audio = audio
            .filter(|_| self.may_persist(DataKind::Audio))
            .zip(turns.len().checked_sub(1))
            .map(|(pcm, turn)| StoredAudio {
                turn: turn as u64,
                sample_rate: self.audio_rate,
                pcm,
            });
        let put = Op::Put {
            id: self.id.clone(),
            json,
            audio,
            failures: self.failures.0.clone(),
        };
        if self.ops.send(put).is_err() {
            self.fail("the session store is closed: the session record was not written".into());
        }
    }

    fn take_failure(&self) -> Option<Error> {
        self.failures.1.try_recv().ok()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use redb::backends::InMemoryBackend;
    use redb::{Database, StorageBackend};

    use super::*;
    use crate::config::PrivacyConfig;

    /// Memory that refuses writes while `fail` is set, like a full or broken disk.
    #[derive(Debug)]
    struct FlakyDisk {
        memory: InMemoryBackend,
        fail: Arc<AtomicBool>,
    }

    impl FlakyDisk {
        fn check(&self) -> io::Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(io::Error::other("no space left on the test disk"));
            }
            Ok(())
        }
    }

    impl StorageBackend for FlakyDisk {
        fn len(&self) -> io::Result<u64> {
            self.memory.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
            self.memory.read(offset, out)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.check()?;
            self.memory.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.check()?;
            self.memory.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.check()?;
            self.memory.write(offset, data)
        }
    }

    #[test]
    fn a_failed_write_is_reported_to_its_session_and_by_the_next_flush() {
        let fail = Arc::new(AtomicBool::new(false));
        let disk = FlakyDisk {
            memory: InMemoryBackend::new(),
            fail: fail.clone(),
        };
        let db = Database::builder().create_with_backend(disk).unwrap();
        let path = PathBuf::from("/flaky-disk/sessions.redb");
        let file = Arc::new(StoreFile::start(path.clone(), db, writer::WhenEmpty::Keep).unwrap());
        lock(&OPEN_STORES).insert(path, (file.clone(), 1));
        let store = SessionStore { file };
        let policy = Arc::new(PrivacyConfig::default());
        let session = store.session("sess-1", &SessionConfig::default(), None, 16000, policy);

        session.record(&[], None);
        store.flush().unwrap();
        assert_eq!(store.read().unwrap().len(), 1);
        assert!(session.take_failure().is_none());

        fail.store(true, Ordering::SeqCst);
        let turn = Turn {
            transcript: Some("hello".into()),
            reply: Some("hi".into()),
            interrupted: false,
        };
        session.record(&[turn], None);
        let e = store.flush().unwrap_err();
        assert_eq!(e.status(), VbStatus::VB_ERR_INTERNAL);
        assert!(e.message().contains("/flaky-disk/sessions.redb"), "{e}");
        assert!(e.message().contains("no space left"), "{e}");
        assert_eq!(session.take_failure(), Some(e));
        assert!(session.take_failure().is_none(), "reported once");
        assert!(store.flush().is_ok(), "and flushed once");
        fail.store(false, Ordering::SeqCst);
    }
}
