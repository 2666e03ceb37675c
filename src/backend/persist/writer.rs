//! The store file and its writer thread: the redb tables, the file shared by the backends of
//! this process that name it, and the thread that owns the database — it commits whatever is
//! queued in one transaction, answers flushes and reads, and closes the file (removing the
//! default file when nothing is left in it).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError, TableDefinition,
};

use super::{RECORD_VERSION, StoredAudio, StoredSession};
use crate::config::PersistenceConfig;
use crate::error::{Error, Result};

/// Session id → the record as JSON ([`StoredSession`]).
const SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("sessions");
/// (session id, turn index) → (sample rate, little-endian i16 PCM) of the user's speech.
const TURN_AUDIO: TableDefinition<(&str, u64), (u32, &[u8])> = TableDefinition::new("turn_audio");
/// redb's page cache per store file.
const CACHE_BYTES: usize = 4 << 20;
/// Operations the writer commits in one transaction, at most.
const MAX_BATCH: usize = 256;
/// One open store file, shared by the backends of this process that use it.
pub(super) struct StoreFile {
    /// Where the file is.
    pub(super) path: PathBuf,
    /// The writer thread's queue.
    pub(super) ops: Sender<Op>,
    /// The writer thread, joined when the last backend using the file goes.
    pub(super) writer: Mutex<Option<JoinHandle<()>>>,
    /// Records found when the file was opened and not resumed yet.
    pub(super) orphans: Mutex<BTreeMap<String, StoredSession>>,
}

/// What becomes of the file when the last backend using it closes it with no record left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WhenEmpty {
    /// The host named the file: it stays.
    Keep,
    /// The default file under the user's cache: it goes, so that programs that completed every
    /// session leave nothing behind there.
    Remove,
}

/// Store files open in this process, by absolute path, with the number of backends using each.
pub(super) static OPEN_STORES: Mutex<BTreeMap<PathBuf, (Arc<StoreFile>, usize)>> =
    Mutex::new(BTreeMap::new());
/// What the writer thread does, in order.
pub(super) enum Op {
    Put {
        id: String,
        json: String,
        audio: Option<StoredAudio>,
        failures: Sender<Error>,
    },
    Delete(String),
    /// Deletes a recovered session's record and audio, answering with the outcome of its
    /// transaction.
    Discard(String, Sender<Result<()>>),
    /// Answers once everything queued before it is committed, with the first failure since the
    /// previous flush.
    Flush(Sender<Result<()>>),
    Read(Sender<Result<Vec<StoredSession>>>),
    Close,
}
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;
impl StoreFile {
    /// Opens (or creates) the file, reads the records left in it and starts the writer thread,
    /// which owns the database from then on.
    pub(super) fn open(path: PathBuf, when_empty: WhenEmpty) -> Result<StoreFile> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| open_error(&path, e))?;
        StoreFile::start(path, db, when_empty)
    }

    /// Prepares the tables of `db` (the file at `path`), reads the records left in it and hands
    /// it to a new writer thread.
    pub(super) fn start(path: PathBuf, db: Database, when_empty: WhenEmpty) -> Result<StoreFile> {
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
            .spawn(move || run_writer(db, writer_path, when_empty, queue))
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
/// The writer thread: commits queued operations in batches until `Close`.
fn run_writer(db: Database, path: PathBuf, when_empty: WhenEmpty, ops: Receiver<Op>) {
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
            .any(|op| matches!(op, Op::Put { .. } | Op::Delete(_) | Op::Discard(..)));
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
                Op::Discard(_, done) => {
                    let _ = done.send(written.clone());
                }
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
            // Unlinked while the database still holds the file's lock: a process opening the
            // path from now on creates a new file instead of sharing this one.
            if when_empty == WhenEmpty::Remove && holds_nothing(&db).unwrap_or(false) {
                let _ = std::fs::remove_file(&path);
            }
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
                Op::Delete(id) | Op::Discard(id, _) => {
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

/// Whether the store holds no record and no audio.
fn holds_nothing(db: &Database) -> std::result::Result<bool, BoxError> {
    let txn = db.begin_read()?;
    Ok(txn.open_table(SESSIONS)?.first()?.is_none()
        && txn.open_table(TURN_AUDIO)?.first()?.is_none())
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

/// The absolute store path `config` names, its directory created, and what becomes of the file
/// once empty; `None` for "".
pub(super) fn store_path(config: &PersistenceConfig) -> Result<Option<(PathBuf, WhenEmpty)>> {
    let (path, when_empty) = match config.path.as_deref() {
        Some("") => return Ok(None),
        Some(path) => (PathBuf::from(path), WhenEmpty::Keep),
        None => (default_path()?, WhenEmpty::Remove),
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
    Ok(Some((absolute.join(name), when_empty)))
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
