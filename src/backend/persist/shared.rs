//! Conversations shared by the processes of a deployment (`persistence.shared_dir`): a session
//! with a `conversation_id` keeps its conversation in a directory every worker process can read,
//! so that when its process dies, the process that takes the conversation next (the worker the
//! LiveKit server dispatches the room to) goes on with its history.
//!
//! - **One file per conversation**, `<id>.json` (the id with every byte outside `[A-Za-z0-9_-]`
//!   written `%XX`): the record of [`SharedRecord`], replaced whole on each finished turn (written
//!   to a temporary file, then renamed over the old one: a reader sees the old record or the
//!   new one, never half of one).
//! - **A lease by modification time**: the process that owns a conversation touches its file
//!   every third of `persistence.lease_ms`; a file older than the lease belongs to a dead process
//!   ([`SharedStore::stale`]). A session stopped by its host, or whose user left, deletes the
//!   file (the conversation is over); one stopped because its backend stopped releases it (the
//!   file is back-dated: stale at once, for another process to take).
//! - **A claim file** `<id>.json.claim`, created exclusively, lets one of the processes that
//!   found a stale conversation bring it back ([`SharedStore::claim`]); the session that takes
//!   the conversation over removes it with its first write.
//!
//! Works for processes of one host, or of several hosts mounting one network file system whose
//! renames are atomic and clocks agree to well within the lease (NFSv4 on hosts running NTP).
//! The user's audio never goes here; texts only as the privacy policy allows.
//!
//! Writes, touches and deletes happen on one thread per store; a session never waits for them.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};

use super::super::privacy::{DataKind, DataOwner, PrivacyPolicy};
use super::now_ms;
use crate::agent::Turn;
use crate::config::{PersistenceConfig, SessionConfig};
use crate::error::{Error, Result};
use crate::net::redact_url;
use crate::pipeline::history::TurnLog;

/// The record format this build writes and reads.
const SHARED_VERSION: u32 = 1;
/// Suffix of a conversation's record.
const RECORD: &str = ".json";
/// Suffix of a claim on a stale conversation.
const CLAIM: &str = ".json.claim";

/// One conversation as the shared directory holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedRecord {
    /// Record format version.
    pub version: u32,
    /// The conversation's id (the sessions' `conversation_id`).
    pub conversation_id: String,
    /// The process that wrote it last: `<host name>/<pid>`.
    pub owner: String,
    /// The id of the session that wrote it last.
    pub session_id: String,
    /// That session's configuration, without its tokens and with `connection_url` stripped of
    /// credentials: what a process bringing the conversation back needs (the room, say).
    pub config: SessionConfig,
    /// When the conversation began, in ms since the Unix epoch (kept across processes).
    pub created_at_ms: u64,
    /// When the record was last written, in ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// The conversation, oldest first; texts the privacy policy withheld are `None`.
    pub history: Vec<Turn>,
}

/// What the writer thread does, in order.
enum Op {
    Put {
        file: String,
        json: String,
        failures: Sender<Error>,
    },
    /// The conversation is over: its record and any claim go.
    Delete(String),
    /// The owner lets go while the conversation goes on: back-dated, stale at once.
    Release(String),
    /// Answers once everything queued before it is done.
    Flush(Sender<()>),
    Close,
}

/// A backend's shared directory.
pub(crate) struct SharedStore {
    dir: PathBuf,
    lease: Duration,
    owner: String,
    ops: Sender<Op>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl SharedStore {
    /// Opens the directory `config.shared_dir` names (created if missing; a file is written and
    /// removed there to prove it is writable); `None` when there is none. Failures are
    /// `VB_ERR_INVALID_CONFIG` naming the directory. Control thread (`Backend::new`).
    pub(crate) fn open(config: &PersistenceConfig) -> Result<Option<Arc<SharedStore>>> {
        let Some(dir) = config.shared_dir.as_deref() else {
            return Ok(None);
        };
        let dir = PathBuf::from(dir);
        let unusable = |e: std::io::Error| {
            Error::invalid_config(format!(
                "persistence.shared_dir: {} cannot be used: {e}",
                dir.display()
            ))
        };
        std::fs::create_dir_all(&dir).map_err(unusable)?;
        let owner = format!("{}/{}", host_name(), std::process::id());
        let probe = dir.join(format!(".probe-{}", owner.replace('/', "-")));
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"voicebackend"))
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(unusable)?;
        let lease = Duration::from_millis(config.lease_ms.into());
        let (ops, queue) = crossbeam_channel::unbounded();
        let writer = Writer {
            dir: dir.clone(),
            owned: BTreeSet::new(),
        };
        let thread = std::thread::Builder::new()
            .name("vb-shared".into())
            .spawn(move || writer.run(&queue, lease / 3))
            .map_err(|e| Error::internal(format!("could not start the shared store: {e}")))?;
        Ok(Some(Arc::new(SharedStore {
            dir,
            lease,
            owner,
            ops,
            writer: Mutex::new(Some(thread)),
        })))
    }

    /// The lease: how long an owner may be silent before its conversations are stale.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// The record of conversation `id`, when there is one to go on with. A record that does not
    /// parse is set aside as `<file>.corrupt-<ms>` (kept, never read again) and logged; the
    /// conversation then starts afresh. Any thread but a session's task (reads the disk).
    pub(crate) fn adopt(&self, id: &str) -> Option<SharedRecord> {
        let path = self.dir.join(file_name(id));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(conversation = id, "shared conversation unreadable: {e}");
                return None;
            }
        };
        match parse(&text, id) {
            Ok(record) => Some(record),
            Err(why) => {
                let aside = path.with_extension(format!("json.corrupt-{}", now_ms()));
                let _ = std::fs::rename(&path, &aside);
                tracing::warn!(
                    conversation = id,
                    "shared conversation {} set aside as {}: {why}",
                    path.display(),
                    aside.display()
                );
                None
            }
        }
    }

    /// The store's side of a session carrying on conversation `id`: writes its record from now
    /// on and keeps it alive (touched every third of the lease) until it stops. `created_at_ms`:
    /// when the conversation began, when it is going on.
    pub(crate) fn conversation(
        &self,
        id: &str,
        session_id: &str,
        config: &SessionConfig,
        created_at_ms: Option<u64>,
        policy: Arc<dyn PrivacyPolicy>,
    ) -> Arc<SharedConversation> {
        let mut config = config.clone();
        config.auth_token = None;
        config.connection_token = None;
        config.connection_url = config.connection_url.as_deref().map(redact_url);
        Arc::new(SharedConversation {
            id: id.to_owned(),
            file: file_name(id),
            session_id: session_id.to_owned(),
            owner: self.owner.clone(),
            config,
            created_at_ms: created_at_ms.unwrap_or_else(now_ms),
            policy,
            ops: self.ops.clone(),
            failures: crossbeam_channel::unbounded(),
            ended: AtomicBool::new(false),
        })
    }

    /// Conversations whose owner has not renewed them within the lease (its process died, or
    /// it released them) and that nobody holds a live claim on, oldest first. Records that do
    /// not parse are skipped. Reads the directory: not on a session's task.
    pub(crate) fn stale(&self) -> Vec<SharedRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let now = SystemTime::now();
        let mut found: Vec<SharedRecord> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(RECORD))
            .filter(|e| age(&e.path(), now).is_some_and(|age| age > self.lease))
            .filter(|e| {
                let claim = claim_path(&e.path());
                age(&claim, now).is_none_or(|age| age > self.claim_timeout())
            })
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let id = decode(e.file_name().to_string_lossy().strip_suffix(RECORD)?)?;
                parse(&text, &id).ok()
            })
            .collect();
        found.sort_by_key(|r| (r.updated_at_ms, r.conversation_id.clone()));
        found
    }

    /// Claims stale conversation `id` for bringing it back: true for exactly one of the
    /// processes that try (the claim file is created exclusively); a claim older than three
    /// leases is taken to have failed and is replaced.
    pub(crate) fn claim(&self, id: &str) -> bool {
        let claim = claim_path(&self.dir.join(file_name(id)));
        let create = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&claim)
                .and_then(|mut f| f.write_all(self.owner.as_bytes()))
        };
        match create() {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let lapsed =
                    age(&claim, SystemTime::now()).is_some_and(|age| age > self.claim_timeout());
                lapsed && std::fs::remove_file(&claim).is_ok() && create().is_ok()
            }
            Err(_) => false,
        }
    }

    /// Gives up this process's claim on conversation `id` (it could not be brought back now).
    pub(crate) fn unclaim(&self, id: &str) {
        let _ = std::fs::remove_file(claim_path(&self.dir.join(file_name(id))));
    }

    /// Conversation `id` is over (nobody is left to talk to): its record and claim go.
    pub(crate) fn forget(&self, id: &str) {
        let _ = self.ops.send(Op::Delete(file_name(id)));
    }

    /// Blocks until everything queued so far is on disk. Not on a session's task.
    pub(crate) fn flush(&self) {
        let (done, wait) = crossbeam_channel::bounded(1);
        if self.ops.send(Op::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    fn claim_timeout(&self) -> Duration {
        self.lease * 3
    }
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        let _ = self.ops.send(Op::Close);
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

/// The store's side of one session carrying on a conversation (a [`TurnLog`]).
pub(crate) struct SharedConversation {
    id: String,
    file: String,
    session_id: String,
    owner: String,
    /// Without tokens or credentials.
    config: SessionConfig,
    created_at_ms: u64,
    policy: Arc<dyn PrivacyPolicy>,
    ops: Sender<Op>,
    failures: (Sender<Error>, Receiver<Error>),
    /// Set when the session stopped: nothing is written after.
    ended: AtomicBool,
}

impl SharedConversation {
    /// The conversation is over: deletes its record. Any thread; does not wait.
    pub(crate) fn delete(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            let _ = self.ops.send(Op::Delete(self.file.clone()));
        }
    }

    /// The session stops but the conversation goes on elsewhere: the record stays, stale at
    /// once. Any thread; does not wait.
    pub(crate) fn release(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            let _ = self.ops.send(Op::Release(self.file.clone()));
        }
    }

    fn may_persist(&self, kind: DataKind) -> bool {
        let owner = DataOwner {
            session_id: &self.session_id,
            user_id: &self.config.user_id,
            metadata: &self.config.metadata,
        };
        self.policy.may_persist(kind, &owner)
    }
}

impl TurnLog for SharedConversation {
    fn wants_audio(&self) -> bool {
        false
    }

    fn record(&self, turns: &[Turn], _audio: Option<Vec<i16>>) {
        if self.ended.load(Ordering::Acquire) {
            return;
        }
        let keep_transcripts = self.may_persist(DataKind::Transcript);
        let keep_replies = self.may_persist(DataKind::AgentText);
        let record = SharedRecord {
            version: SHARED_VERSION,
            conversation_id: self.id.clone(),
            owner: self.owner.clone(),
            session_id: self.session_id.clone(),
            config: self.config.clone(),
            created_at_ms: self.created_at_ms,
            updated_at_ms: now_ms(),
            history: turns
                .iter()
                .map(|t| Turn {
                    transcript: t.transcript.clone().filter(|_| keep_transcripts),
                    reply: t.reply.clone().filter(|_| keep_replies),
                    interrupted: t.interrupted,
                })
                .collect(),
        };
        let json = match serde_json::to_string(&record) {
            Ok(json) => json,
            Err(e) => {
                let _ = self.failures.0.send(Error::internal(format!(
                    "shared conversation '{}': {e}",
                    self.id
                )));
                return;
            }
        };
        let put = Op::Put {
            file: self.file.clone(),
            json,
            failures: self.failures.0.clone(),
        };
        if self.ops.send(put).is_err() {
            let _ = self.failures.0.send(Error::internal(format!(
                "the shared store is closed: conversation '{}' was not written",
                self.id
            )));
        }
    }

    fn take_failure(&self) -> Option<Error> {
        self.failures.1.try_recv().ok()
    }
}

/// The thread that owns the writes: records, touches, deletes.
struct Writer {
    dir: PathBuf,
    /// Files of conversations this process owns, touched every `renew`.
    owned: BTreeSet<String>,
}

impl Writer {
    fn run(mut self, queue: &Receiver<Op>, renew: Duration) {
        static TEMP: AtomicU64 = AtomicU64::new(0);
        let mut next_renewal = Instant::now() + renew;
        loop {
            // Renewed on time however busy the queue is: a late touch would make a live
            // conversation look dead to the other processes.
            if Instant::now() >= next_renewal {
                self.renew();
                next_renewal = Instant::now() + renew;
            }
            match queue.recv_deadline(next_renewal) {
                Ok(Op::Put {
                    file,
                    json,
                    failures,
                }) => {
                    let n = TEMP.fetch_add(1, Ordering::Relaxed);
                    let temp = self
                        .dir
                        .join(format!(".{file}.{}-{n}.tmp", std::process::id()));
                    let path = self.dir.join(&file);
                    let written = std::fs::write(&temp, json.as_bytes())
                        .and_then(|()| std::fs::rename(&temp, &path));
                    match written {
                        Ok(()) => {
                            // Taken over: a claim that brought the conversation here is done.
                            if self.owned.insert(file) {
                                let _ = std::fs::remove_file(claim_path(&path));
                            }
                        }
                        Err(e) => {
                            let _ = std::fs::remove_file(&temp);
                            let _ = failures.send(Error::internal(format!(
                                "shared conversation {}: {e}",
                                path.display()
                            )));
                        }
                    }
                }
                Ok(Op::Delete(file)) => {
                    self.owned.remove(&file);
                    let path = self.dir.join(&file);
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_file(claim_path(&path));
                }
                Ok(Op::Release(file)) => {
                    if self.owned.remove(&file) {
                        let _ = set_modified(&self.dir.join(&file), UNIX_EPOCH);
                    }
                }
                Ok(Op::Flush(done)) => {
                    let _ = done.send(());
                }
                Ok(Op::Close) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Touches every owned record; forgets those gone (another process ended them).
    fn renew(&mut self) {
        let now = SystemTime::now();
        let dir = &self.dir;
        self.owned
            .retain(|file| set_modified(&dir.join(file), now).is_ok());
    }
}

fn set_modified(path: &Path, when: SystemTime) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .set_modified(when)
}

/// How long ago `path` was last modified; `None` when it is not there.
fn age(path: &Path, now: SystemTime) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(now.duration_since(modified).unwrap_or_default())
}

fn claim_path(record: &Path) -> PathBuf {
    let mut claim = record.as_os_str().to_owned();
    claim.push(&CLAIM[RECORD.len()..]);
    PathBuf::from(claim)
}

fn parse(text: &str, id: &str) -> std::result::Result<SharedRecord, String> {
    let record: SharedRecord = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if record.version != SHARED_VERSION {
        return Err(format!(
            "record version {} (this build reads {SHARED_VERSION})",
            record.version
        ));
    }
    if record.conversation_id != id {
        return Err(format!(
            "it holds conversation '{}'",
            record.conversation_id
        ));
    }
    Ok(record)
}

/// `<id>.json` with every byte outside `[A-Za-z0-9_-]` written `%XX`: any id is one plain file
/// name, distinct ids are distinct names.
fn file_name(id: &str) -> String {
    let mut name = String::with_capacity(id.len() + RECORD.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            name.push(byte as char);
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name.push_str(RECORD);
    name
}

/// The id a file name (without `.json`) was made from.
fn decode(name: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(name.len());
    let mut rest = name.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
