//! Recording the conversation: the session task appends each finished user turn to the session's
//! [`History`] and hands it to the session's [`TurnLog`] (the backend's session store), with the
//! turn's user audio when the log wants it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::events::EventSink;
use crate::agent::{History, Turn};
use crate::error::Error;

/// Where finished turns are kept beyond memory. Called on the session task: must not block.
pub trait TurnLog: Send + Sync {
    /// Whether the user audio of a turn that starts now should be kept.
    fn wants_audio(&self) -> bool;
    /// Records the conversation: `turns` are all turns so far (the last one just finished, or
    /// none yet at session start); `audio` is the last turn's user speech at the internal rate.
    fn record(&self, turns: &[Turn], audio: Option<Vec<i16>>);
    /// The next failure of an earlier `record`, once.
    fn take_failure(&self) -> Option<Error>;
}

/// Several logs as one (a session's record in its process's store and its shared
/// conversation): each gets every turn, the audio only those that want it.
pub struct Logs(pub Vec<Arc<dyn TurnLog>>);

impl Logs {
    /// The logs in `logs` as one: `None` when there is none, the log itself when there is one.
    pub fn of(mut logs: Vec<Arc<dyn TurnLog>>) -> Option<Arc<dyn TurnLog>> {
        match logs.len() {
            0 => None,
            1 => logs.pop(),
            _ => Some(Arc::new(Logs(logs))),
        }
    }
}

impl TurnLog for Logs {
    fn wants_audio(&self) -> bool {
        self.0.iter().any(|log| log.wants_audio())
    }

    fn record(&self, turns: &[Turn], audio: Option<Vec<i16>>) {
        for log in &self.0 {
            let audio = audio.as_ref().filter(|_| log.wants_audio()).cloned();
            log.record(turns, audio);
        }
    }

    fn take_failure(&self) -> Option<Error> {
        self.0.iter().find_map(|log| log.take_failure())
    }
}

/// Records finished turns. Owned by the session task.
pub struct TurnRecorder {
    history: Arc<History>,
    log: Option<Arc<dyn TurnLog>>,
    /// User speech of turns still in progress, by realtime turn number, when the log wants it.
    audio: BTreeMap<u32, Vec<i16>>,
}

impl TurnRecorder {
    /// A recorder appending to `history` and, when there is one, writing to `log`.
    pub fn new(history: Arc<History>, log: Option<Arc<dyn TurnLog>>) -> Self {
        TurnRecorder {
            history,
            log,
            audio: BTreeMap::new(),
        }
    }

    /// The session's history.
    pub fn history(&self) -> Arc<History> {
        self.history.clone()
    }

    /// Realtime turn `turn` started: keep its audio if the log wants it.
    pub fn speech_started(&mut self, turn: u32) {
        if self.log.as_ref().is_some_and(|log| log.wants_audio()) {
            self.audio.insert(turn, Vec::new());
        }
    }

    /// Speech audio of realtime turn `turn`.
    pub fn speech(&mut self, turn: u32, pcm: &[i16]) {
        if let Some(audio) = self.audio.get_mut(&turn) {
            audio.extend_from_slice(pcm);
        }
    }

    /// Realtime turn `turn` ends without becoming a turn of the conversation (nothing was heard,
    /// or STT failed).
    pub fn discard(&mut self, turn: u32) {
        self.audio.remove(&turn);
    }

    /// Realtime turn `turn` finished with the user's `transcript` and the agent's `reply`.
    pub fn finished(&mut self, turn: u32, transcript: String, reply: String, interrupted: bool) {
        let audio = self.audio.remove(&turn);
        // Turns finish in the order they were spoken: audio of earlier ones never will.
        self.audio.retain(|&t, _| t > turn);
        let finished = Turn {
            transcript: Some(transcript),
            reply: Some(reply),
            interrupted,
        };
        let log = self.log.as_ref();
        self.history.append(finished, |turns| {
            if let Some(log) = log {
                log.record(turns, audio);
            }
        });
    }

    /// Turns failures of the log into error events.
    pub fn report_failures(&self, events: &mut EventSink) {
        let Some(log) = &self.log else {
            return;
        };
        while let Some(e) = log.take_failure() {
            events.error(e.status(), e.message());
        }
    }
}
