//! Session persistence: the records of active sessions in an embedded store (redb), so that a
//! restarted process can list and resume the sessions that its predecessor never stopped.
//!
//! A store file is opened once per process and shared by every backend configured with it; redb
//! locks it, so another process gets a configuration error. Each active session has a record:
//! its configuration (never its `auth_token`, and `connection_url` without credentials), times,
//! counters and conversation history, texts only as far as the privacy policy allows; a turn's
//! user audio, when the policy allows it, goes to a second table. Records are written when a
//! session starts and after each finished turn, and deleted when it stops: a stopped session
//! has completed, so a record left in the file means that its process died. A writer thread
//! commits whatever is queued in one transaction; the session task never waits for the disk.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError, TableDefinition,
};
use serde::{Deserialize, Serialize};

use super::privacy::{DataKind, DataOwner, PrivacyPolicy};
use crate::agent::Turn;
use crate::config::{PersistenceConfig, SessionConfig};
use crate::error::{Error, Result, VbStatus};
use crate::net::redact_url;
use crate::pipeline::history::TurnLog;

/// Session id → the record as JSON ([`StoredSession`]).
const SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("sessions");
/// (session id, turn index) → (sample rate, little-endian i16 PCM) of the user's speech.
const TURN_AUDIO: TableDefinition<(&str, u64), (u32, &[u8])> = TableDefinition::new("turn_audio");
/// The record format this build writes and reads.
const RECORD_VERSION: u32 = 1;
/// redb's page cache per store file.
const CACHE_BYTES: usize = 4 << 20;
/// Operations the writer commits in one transaction, at most.
const MAX_BATCH: usize = 256;

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

/// One open store file, shared by the backends of this process that use it.
struct StoreFile {
    path: PathBuf,
    ops: Sender<Op>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Records found when the file was opened and not resumed yet.
    orphans: Mutex<BTreeMap<String, StoredSession>>,
}

/// Store files open in this process, by absolute path, with the number of backends using each.
static OPEN_STORES: Mutex<BTreeMap<PathBuf, (Arc<StoreFile>, usize)>> = Mutex::new(BTreeMap::new());

/// What the writer thread does, in order.
enum Op {
    Put {
        id: String,
        json: String,
        audio: Option<StoredAudio>,
        failures: Sender<Error>,
    },
    Delete(String),
    /// Answers once everything queued before it is committed, with the first failure since the
    /// previous flush.
    Flush(Sender<Result<()>>),
    Read(Sender<Result<Vec<StoredSession>>>),
    Close,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl SessionStore {
    /// Opens the store `config` names; `None` when persistence is off (`path` ""). Failures are
    /// `VB_ERR_INVALID_CONFIG` naming the path. Control thread (`Backend::new`).
    pub(crate) fn open(config: &PersistenceConfig) -> Result<Option<SessionStore>> {
        let Some(path) = store_path(config)? else {
            return Ok(None);
        };
        let mut open = lock(&OPEN_STORES);
        if let Some((file, users)) = open.get_mut(&path) {
            *users += 1;
            return Ok(Some(SessionStore { file: file.clone() }));
        }
        let file = Arc::new(StoreFile::open(path.clone())?);
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
    /// id (unknown, or resumed already).
    pub(crate) fn claim(&self, session_id: &str) -> Result<StoredSession> {
        lock(&self.file.orphans).remove(session_id).ok_or_else(|| {
            Error::new(
                VbStatus::VB_ERR_NOT_FOUND,
                format!(
                    "no recovered session '{session_id}' in {} (unknown, or resumed already)",
                    self.path().display()
                ),
            )
        })
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

impl StoreFile {
    /// Opens (or creates) the file, reads the records left in it and starts the writer thread,
    /// which owns the database from then on.
    fn open(path: PathBuf) -> Result<StoreFile> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| open_error(&path, e))?;
        StoreFile::start(path, db)
    }

    /// Prepares the tables of `db` (the file at `path`), reads the records left in it and hands
    /// it to a new writer thread.
    fn start(path: PathBuf, db: Database) -> Result<StoreFile> {
        let prepare = || -> std::result::Result<Vec<StoredSession>, BoxError> {
            let txn = db.begin_write()?;
            txn.open_table(SESSIONS)?;
            txn.open_table(TURN_AUDIO)?;
            txn.commit()?;
            read_all(&db, false)
        };
        let orphans = prepare().map_err(|e| {
            Error::invalid_config(format!(
                "persistence.path: {} is not a readable session store: {e}",
                path.display()
            ))
        })?;
        let (ops, queue) = crossbeam_channel::unbounded();
        let writer_path = path.clone();
        let writer = std::thread::Builder::new()
            .name("vb-store".to_owned())
            .spawn(move || run_writer(db, writer_path, queue))
            .map_err(|e| Error::internal(format!("could not start the store writer: {e}")))?;
        Ok(StoreFile {
            path,
            ops,
            writer: Mutex::new(Some(writer)),
            orphans: Mutex::new(
                orphans
                    .into_iter()
                    .map(|r| (r.session_id.clone(), r))
                    .collect(),
            ),
        })
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

/// The writer thread: commits queued operations in batches until `Close`.
fn run_writer(db: Database, path: PathBuf, ops: Receiver<Op>) {
    let failed = |what: &str, e: BoxError| {
        Error::internal(format!("session store {}: {what}: {e}", path.display()))
    };
    let mut unreported: Option<Error> = None;
    while let Ok(first) = ops.recv() {
        let batch: Vec<Op> = std::iter::once(first)
            .chain(ops.try_iter().take(MAX_BATCH))
            .collect();
        let writes = batch
            .iter()
            .any(|op| matches!(op, Op::Put { .. } | Op::Delete(_)));
        let written = if writes {
            write_batch(&db, &batch).map_err(|e| failed("writing failed", e))
        } else {
            Ok(())
        };
        if let Err(e) = &written {
            unreported.get_or_insert_with(|| e.clone());
        }
        let mut closing = false;
        for op in batch {
            match op {
                Op::Put { failures, .. } => {
                    if let Err(e) = &written {
                        let _ = failures.send(e.clone());
                    }
                }
                Op::Delete(_) => {}
                Op::Flush(done) => {
                    let _ = done.send(unreported.take().map_or(Ok(()), Err));
                }
                Op::Read(reply) => {
                    let _ =
                        reply.send(read_all(&db, true).map_err(|e| failed("reading failed", e)));
                }
                Op::Close => closing = true,
            }
        }
        if closing {
            return;
        }
    }
}

/// Applies the puts and deletes of `batch` in one transaction.
fn write_batch(db: &Database, batch: &[Op]) -> std::result::Result<(), BoxError> {
    let txn = db.begin_write()?;
    {
        let mut sessions = txn.open_table(SESSIONS)?;
        let mut audio = txn.open_table(TURN_AUDIO)?;
        for op in batch {
            match op {
                Op::Put {
                    id,
                    json,
                    audio: turn_audio,
                    ..
                } => {
                    sessions.insert(id.as_str(), json.as_str())?;
                    if let Some(a) = turn_audio {
                        let bytes: Vec<u8> = a.pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
                        audio.insert((id.as_str(), a.turn), (a.sample_rate, bytes.as_slice()))?;
                    }
                }
                Op::Delete(id) => {
                    sessions.remove(id.as_str())?;
                    audio.retain_in((id.as_str(), 0)..=(id.as_str(), u64::MAX), |_, _| false)?;
                }
                _ => {}
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// Every record, by session id, with the turn audio when `with_audio`.
fn read_all(db: &Database, with_audio: bool) -> std::result::Result<Vec<StoredSession>, BoxError> {
    let txn = db.begin_read()?;
    let mut sessions = BTreeMap::new();
    for entry in txn.open_table(SESSIONS)?.iter()? {
        let (id, json) = entry?;
        let id = id.value().to_owned();
        let record: StoredSession = serde_json::from_str(json.value())
            .map_err(|e| format!("the record of session '{id}' is unreadable: {e}"))?;
        if record.version != RECORD_VERSION {
            return Err(format!(
                "the record of session '{id}' has format version {}; this build reads {RECORD_VERSION}",
                record.version
            )
            .into());
        }
        sessions.insert(id, record);
    }
    if with_audio {
        for entry in txn.open_table(TURN_AUDIO)?.iter()? {
            let (key, value) = entry?;
            let (id, turn) = key.value();
            let (sample_rate, bytes) = value.value();
            let session = sessions
                .get_mut(id)
                .ok_or_else(|| format!("turn audio of session '{id}' has no session record"))?;
            session.audio.push(StoredAudio {
                turn,
                sample_rate,
                pcm: bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            });
        }
    }
    Ok(sessions.into_values().collect())
}

/// The absolute store path `config` names, its directory created; `None` for "".
fn store_path(config: &PersistenceConfig) -> Result<Option<PathBuf>> {
    let path = match config.path.as_deref() {
        Some("") => return Ok(None),
        Some(path) => PathBuf::from(path),
        None => default_path()?,
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::invalid_config(format!(
            "persistence.path: {} names no file",
            path.display()
        )));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let absolute = std::fs::create_dir_all(dir)
        .and_then(|()| dir.canonicalize())
        .map_err(|e| {
            Error::invalid_config(format!(
                "persistence.path: cannot create the directory {}: {e}",
                dir.display()
            ))
        })?;
    Ok(Some(absolute.join(name)))
}

/// `$XDG_CACHE_HOME/voicebackend/sessions/<program>.redb` (`~/.cache` without XDG_CACHE_HOME),
/// `<program>` being the running executable's name: a program finds its sessions again after a
/// restart, and different programs on one machine do not share (and lock) one file.
fn default_path() -> Result<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let cache = absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .ok_or_else(|| {
            Error::invalid_config(
                "persistence.path: null means the user's cache directory, but neither \
                 $XDG_CACHE_HOME nor $HOME is set; give a path, or \"\" to turn persistence off",
            )
        })?;
    let program = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "default".to_owned());
    Ok(cache
        .join("voicebackend")
        .join("sessions")
        .join(format!("{program}.redb")))
}

fn open_error(path: &Path, e: DatabaseError) -> Error {
    let path = path.display();
    Error::invalid_config(match e {
        DatabaseError::DatabaseAlreadyOpen => format!(
            "persistence.path: {path} is in use by another process (a session store belongs to \
             one process at a time: give each process its own path)"
        ),
        DatabaseError::Storage(StorageError::Io(e)) if e.kind() != ErrorKind::InvalidData => {
            format!("persistence.path: cannot open {path}: {e}")
        }
        e => format!("persistence.path: {path} is not a readable session store: {e}"),
    })
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

    use redb::StorageBackend;
    use redb::backends::InMemoryBackend;

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
        let file = Arc::new(StoreFile::start(path.clone(), db).unwrap());
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
