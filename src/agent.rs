//! The host's agent: turns a final transcript into a streamed reply. It runs on an agent worker
//! thread (tokio's blocking pool), never on the realtime thread, and may block.

use std::collections::VecDeque;
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
    /// `VB_EVENT_ERROR`; the session keeps listening. With `turn.preemptive_ms` it may also be
    /// called while the user pauses, with the turn so far: that reply is kept if the turn ends
    /// with the same words, and otherwise cancelled ([`Reply::is_cancelled`]) and the agent
    /// called again with the final transcript.
    fn on_transcript(&self, transcript: &str, reply: &mut Reply) -> Result<()>;

    /// Called on an agent worker thread each time a turn joins the session's conversation (its
    /// reply played, or cut short), with the conversation so far, oldest first: an agent that
    /// computes something per conversation (a language model's context) can do it now, while
    /// the user speaks, instead of at the next [`Agent::on_transcript`]. It may run while a
    /// turn of another session is answered; its panics are caught and logged. Called only when
    /// [`Agent::prepares`] says so: implement both. Default: nothing.
    fn prepare(&self, history: &[Turn]) {
        let _ = history;
    }

    /// Whether [`Agent::prepare`] does something, so that the engine calls it (a worker
    /// thread's wake-up per turn otherwise spent on nothing). Default: false.
    fn prepares(&self) -> bool {
        false
    }
}

impl<F> Agent for F
where
    F: Fn(&str, &mut Reply) -> Result<()> + Send + Sync,
{
    fn on_transcript(&self, transcript: &str, reply: &mut Reply) -> Result<()> {
        self(transcript, reply)
    }
}

/// What a tool does with the arguments the model gave (a JSON object, as text): its result, as
/// text the model reads (often JSON). Runs on a blocking worker thread, never the realtime
/// thread; it may block, within the agent's `tool_timeout_ms`.
pub type ToolHandler = Arc<dyn Fn(&str) -> Result<String> + Send + Sync>;

/// A function the host offers the built-in LLM agent (`Backend::add_tool`, C
/// `vb_backend_add_tool`): the model sees its name, description and parameters' JSON schema and
/// may call it while it answers.
#[derive(Clone)]
pub struct Tool {
    /// `[A-Za-z0-9_-]`, 1–64 characters, unique per backend.
    pub name: String,
    /// What it does and when to use it, for the model.
    pub description: String,
    /// The JSON schema of its arguments (an object schema).
    pub parameters: serde_json::Value,
    /// What runs when the model calls it.
    pub handler: ToolHandler,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("parameters", &self.parameters)
            .finish_non_exhaustive()
    }
}

impl Tool {
    /// `VB_ERR_INVALID_ARGUMENT` unless the name fits OpenAI's rules (`^[a-zA-Z0-9_-]{1,64}$`)
    /// and the parameters are a JSON schema object.
    pub fn validate(&self) -> Result<()> {
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(Error::invalid_argument(format!(
                "tool name '{}': 1-64 characters of A-Z, a-z, 0-9, _ and -",
                self.name
            )));
        }
        if !self.parameters.is_object() {
            return Err(Error::invalid_argument(format!(
                "tool '{}': parameters must be a JSON schema object, e.g. {{\"type\":\"object\",\"properties\":{{}}}}",
                self.name
            )));
        }
        Ok(())
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

/// The most recent finished turns of one session, oldest first, at most `history_max_turns` of
/// them (older ones are dropped, so a long conversation costs bounded memory): appended by the
/// session task, read by the host ([`crate::Session::history`]) and the agent
/// ([`Reply::history`]) on any thread.
#[derive(Debug)]
pub struct History {
    turns: Mutex<VecDeque<Turn>>,
    max_turns: usize,
}

impl History {
    /// A history of at most `max_turns` turns (at least one) that starts with the last of
    /// `turns` (those of a resumed session).
    pub fn new(turns: Vec<Turn>, max_turns: usize) -> Self {
        let max_turns = max_turns.max(1);
        let mut turns = VecDeque::from(turns);
        while turns.len() > max_turns {
            turns.pop_front();
        }
        History {
            turns: Mutex::new(turns),
            max_turns,
        }
    }

    /// A copy of the turns kept.
    pub fn turns(&self) -> Vec<Turn> {
        self.lock().iter().cloned().collect()
    }

    /// Appends `turn` (dropping the oldest when the history is full), then calls `then` with the
    /// turns kept while no other append can run (so that what `then` records is in the order of
    /// the appends).
    pub fn append(&self, turn: Turn, then: impl FnOnce(&[Turn])) {
        let mut turns = self.lock();
        if turns.len() == self.max_turns {
            turns.pop_front();
        }
        turns.push_back(turn);
        then(turns.make_contiguous());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Turn>> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
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
    /// Something went wrong that the host should hear of, while the reply goes on (a tool of the
    /// built-in agent failed).
    Notice(Error),
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

    /// Tells the host of a failure that does not end the reply (`VB_EVENT_ERROR` with `error`'s
    /// status and the text `"agent: <message>"`): the built-in agent's tool that failed, hung or
    /// was not found. Ignored once the reply is over.
    pub fn report(&self, error: Error) {
        if self.finish == Finish::Open && !self.is_cancelled() {
            let _ = self.tx.send((self.id, ReplyMsg::Notice(error)));
        }
    }

    /// Whether [`Reply::fail`] failed this reply.
    pub(crate) fn has_failed(&self) -> bool {
        self.finish == Finish::Failed
    }

    /// The flag barge-in sets, for an agent that waits on something else (the built-in agent's
    /// network answer) and must notice at once.
    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancelled.clone()
    }

    /// Whether barge-in (or the host's interrupt, or `agent_timeout_ms`) cancelled this reply:
    /// stop producing it. With `turn.preemptive_ms`, an early reply to a paused turn is also
    /// cancelled when the user goes on or the final transcript has other words.
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

#[cfg(test)]
mod tests {
    use super::{History, Turn};

    fn turn(n: usize) -> Turn {
        Turn {
            transcript: Some(format!("question {n}")),
            reply: Some(format!("answer {n}")),
            interrupted: n % 2 == 0,
        }
    }

    #[test]
    fn a_history_keeps_the_most_recent_turns_and_records_them_in_order() {
        let history = History::new((0..5).map(turn).collect(), 3);
        assert_eq!(history.turns(), vec![turn(2), turn(3), turn(4)]);
        for n in 5..9 {
            let mut recorded = Vec::new();
            history.append(turn(n), |turns| recorded = turns.to_vec());
            assert_eq!(recorded, vec![turn(n - 2), turn(n - 1), turn(n)]);
        }
        assert_eq!(history.turns(), vec![turn(6), turn(7), turn(8)]);
    }

    #[test]
    fn a_history_keeps_at_least_one_turn() {
        let history = History::new(Vec::new(), 0);
        history.append(turn(1), |turns| assert_eq!(turns, [turn(1)]));
        history.append(turn(2), |turns| assert_eq!(turns, [turn(2)]));
    }
}
