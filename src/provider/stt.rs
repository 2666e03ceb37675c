//! Speech to text: one call per user turn, audio streamed in as the user speaks.

use tokio::sync::mpsc;

use super::BoxFuture;
pub use super::speech::{SpeechStream, SpeechWriter, speech_ring};
use crate::error::Result;

/// One user turn to transcribe.
pub struct SttTurn {
    /// Rate of the audio (the session's internal rate).
    pub sample_rate: u32,
    /// Mono PCM as the user speaks, through a bounded ring; it ends when the turn ends.
    pub audio: SpeechStream,
    /// Where results go.
    pub results: SttSink,
}

/// What a provider reports for the turn it transcribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SttResult {
    /// An interim hypothesis.
    Partial(String),
    /// The final transcript of the turn.
    Final(String),
}

/// The results channel of one turn, tagged with the turn number for the session.
#[derive(Clone)]
pub struct SttSink {
    turn: u32,
    tx: mpsc::UnboundedSender<(u32, SttResult)>,
}

impl SttSink {
    /// A sink that tags results with `turn`.
    pub fn new(turn: u32, tx: mpsc::UnboundedSender<(u32, SttResult)>) -> Self {
        SttSink { turn, tx }
    }

    /// Reports an interim hypothesis.
    pub fn partial(&self, text: impl Into<String>) {
        let _ = self.tx.send((self.turn, SttResult::Partial(text.into())));
    }

    /// Reports the final transcript (once per turn).
    pub fn final_transcript(&self, text: impl Into<String>) {
        let _ = self.tx.send((self.turn, SttResult::Final(text.into())));
    }
}

/// A speech-to-text engine.
pub trait SttProvider: Send + Sync {
    /// The registry name.
    fn name(&self) -> &str;
    /// Transcribes one turn: reads `turn.audio` until it closes, reports partials as it likes and
    /// exactly one final transcript, then resolves. An error resolves the turn without a final.
    fn transcribe(&self, turn: SttTurn) -> BoxFuture<'static, Result<()>>;
}
