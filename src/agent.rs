//! The host's agent: turns a final transcript into a streamed reply. It runs on an agent worker
//! thread (tokio's blocking pool), never on the realtime thread, and may block.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// The host's conversation logic.
pub trait Agent: Send + Sync {
    /// Called once per finished user turn with its final transcript. Write the reply with
    /// [`Reply::write`] as it is produced and finish with [`Reply::end`] (returning without
    /// ending ends it). An error becomes a `VB_EVENT_ERROR`; the session keeps listening.
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

/// What a reply sends to its session.
#[derive(Debug)]
pub(crate) enum ReplyMsg {
    Text(String),
    End,
    /// The agent callback returned (after its last write).
    Returned(Result<()>),
}

/// The streaming reply of one turn (`VbReply` in C). Valid while the agent callback runs.
pub struct Reply {
    id: u64,
    tx: mpsc::UnboundedSender<(u64, ReplyMsg)>,
    cancelled: Arc<AtomicBool>,
    ended: bool,
}

impl Reply {
    pub(crate) fn new(
        id: u64,
        tx: mpsc::UnboundedSender<(u64, ReplyMsg)>,
        cancelled: Arc<AtomicBool>,
    ) -> Self {
        Reply {
            id,
            tx,
            cancelled,
            ended: false,
        }
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

    /// Ends the reply. `VB_ERR_INVALID_STATE` when already ended or cancelled.
    pub fn end(&mut self) -> Result<()> {
        self.check_open()?;
        self.ended = true;
        self.send(ReplyMsg::End)
    }

    /// Whether barge-in (or the host's interrupt) cancelled this reply: stop producing it.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::invalid_state(
                "the reply was cancelled by an interruption",
            ));
        }
        if self.ended {
            return Err(Error::invalid_state("the reply has already ended"));
        }
        Ok(())
    }

    fn send(&self, msg: ReplyMsg) -> Result<()> {
        self.tx
            .send((self.id, msg))
            .map_err(|_| Error::invalid_state("the session has stopped"))
    }
}
