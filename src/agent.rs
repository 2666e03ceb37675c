//! The host's agent: turns a final transcript into a streamed reply. It runs on an agent worker
//! thread (tokio's blocking pool), never on the realtime thread, and may block.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What writing to a cancelled reply returns. An agent that passes it on (returns it from its
/// callback) reports nothing new: the host heard of the cancellation already (barge-in, its own
/// interrupt, or `agent_timeout_ms`).
pub(crate) const REPLY_CANCELLED: &str =
    "the reply was cancelled (barge-in, the host's interrupt, or agent_timeout_ms)";

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::{Error, Result, VbStatus};

/// The host's conversation logic.
pub trait Agent: Send + Sync {
    /// Called once per finished user turn with its final transcript. Write the reply with
    /// [`Reply::write`] as it is produced and finish with [`Reply::end`] (returning without
    /// ending ends it). An error (returned, or given to [`Reply::fail`]) becomes a
    /// `VB_EVENT_ERROR`; the session keeps listening.
    fn on_transcript(&self, transcript: &str, reply: &mut Reply) -> Result<()>;
}

impl<F> Agent for F
where
    F: Fn(&str, &mut Reply) -> Result<()> + Send + Sync,
{
    fn on_transcript(&self, transcript: &str, reply: &mut Reply) -> Result<()> {
        self(transcript, reply)
    }
}

/// One finished user turn: what the user said and what the agent answered. In a resumed session
/// a text is `None` where the privacy policy kept it out of the session store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// The user's final transcript.
    pub transcript: Option<String>,
    /// The agent's reply text, as far as it got when interrupted.
    pub reply: Option<String>,
    /// Whether barge-in or the host's interrupt cut the reply short (or cancelled it before it
    /// started).
    pub interrupted: bool,
}

/// The finished turns of one session, oldest first: appended by the session task, read by the
/// host ([`crate::Session::history`]) and the agent ([`Reply::history`]) on any thread.
#[derive(Debug, Default)]
pub struct History(Mutex<Vec<Turn>>);

impl History {
    /// A history that starts with `turns` (those of a resumed session).
    pub fn new(turns: Vec<Turn>) -> Self {
        History(Mutex::new(turns))
    }

    /// A copy of the turns so far.
    pub fn turns(&self) -> Vec<Turn> {
        self.lock().clone()
    }

    /// Appends `turn`, then calls `then` with all turns while no other append can run (so that
    /// what `then` records is in the order of the appends).
    pub fn append(&self, turn: Turn, then: impl FnOnce(&[Turn])) {
        let mut turns = self.lock();
        turns.push(turn);
        then(&turns);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Turn>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a reply sends to its session.
#[derive(Debug)]
pub(crate) enum ReplyMsg {
    Text(String),
    End,
    /// The agent failed the reply with its own error ([`Reply::fail`]).
    Failed(Error),
    /// The agent callback returned (after its last write).
    Returned(Result<()>),
}

/// The streaming reply of one turn (`VbReply` in C). Valid while the agent callback runs.
pub struct Reply {
    id: u64,
    tx: mpsc::UnboundedSender<(u64, ReplyMsg)>,
    cancelled: Arc<AtomicBool>,
    finish: Finish,
    history: Arc<History>,
}

/// How far a reply got on the agent's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    Open,
    Ended,
    Failed,
}

impl Reply {
    pub(crate) fn new(
        id: u64,
        tx: mpsc::UnboundedSender<(u64, ReplyMsg)>,
        cancelled: Arc<AtomicBool>,
        history: Arc<History>,
    ) -> Self {
        Reply {
            id,
            tx,
            cancelled,
            finish: Finish::Open,
            history,
        }
    }

    /// The conversation before this turn, oldest first, a resumed session's earlier turns
    /// included: the context an agent answers in.
    pub fn history(&self) -> Vec<Turn> {
        self.history.turns()
    }

    /// Appends text to the reply; TTS starts speaking complete sentences at once.
    /// `VB_ERR_INVALID_STATE` after [`Reply::end`] or once barge-in cancelled the reply.
    pub fn write(&mut self, chunk: &str) -> Result<()> {
        self.check_open()?;
        if !chunk.is_empty() {
            self.send(ReplyMsg::Text(chunk.to_owned()))?;
        }
        Ok(())
    }

    /// Ends the reply. `VB_ERR_INVALID_STATE` when already ended, failed or cancelled.
    pub fn end(&mut self) -> Result<()> {
        self.check_open()?;
        self.finish = Finish::Ended;
        self.send(ReplyMsg::End)
    }

    /// Fails the reply with the agent's own error, as returning `Err(Error::new(status,
    /// message))` from [`Agent::on_transcript`] does, but at once: the host gets a
    /// `VB_EVENT_ERROR` with `status` and the text `"agent: <message>"`, the turn ends (text
    /// written before is still spoken, and `VB_EVENT_AGENT_RESPONSE` carries it) and the session
    /// goes back to listening. What the callback returns afterwards is not reported again.
    /// `VB_ERR_INVALID_ARGUMENT` for `VB_OK` (no failure); `VB_ERR_INVALID_STATE` when the reply
    /// already ended, failed or was cancelled.
    pub fn fail(&mut self, status: VbStatus, message: &str) -> Result<()> {
        if status == VbStatus::VB_OK {
            return Err(Error::invalid_argument(
                "status is VB_OK: failing a reply takes an error status, e.g. VB_ERR_PROVIDER",
            ));
        }
        self.check_open()?;
        self.finish = Finish::Failed;
        self.send(ReplyMsg::Failed(Error::new(status, message)))
    }

    /// Whether [`Reply::fail`] failed this reply.
    pub(crate) fn has_failed(&self) -> bool {
        self.finish == Finish::Failed
    }

    /// Whether barge-in (or the host's interrupt) cancelled this reply: stop producing it.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::invalid_state(REPLY_CANCELLED));
        }
        match self.finish {
            Finish::Open => Ok(()),
            Finish::Ended => Err(Error::invalid_state("the reply has already ended")),
            Finish::Failed => Err(Error::invalid_state("the reply has already failed")),
        }
    }

    fn send(&self, msg: ReplyMsg) -> Result<()> {
        self.tx
            .send((self.id, msg))
            .map_err(|_| Error::invalid_state("the session has stopped"))
    }
}
