//! Speech to speech: one bidirectional model stream per session replaces STT → agent → TTS.

use tokio::sync::mpsc;

use super::BoxFuture;
use crate::error::{Error, Result};

/// What the session sends to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S2sInput {
    /// User speech at the session's internal rate.
    Audio(Vec<i16>),
    /// The engine's turn detector says the user's turn ended: answer now.
    EndOfTurn,
    /// Barge-in: stop the response being generated. The provider answers every cancel with
    /// exactly one [`S2sEvent::ResponseDone`]; output before it belongs to the cancelled response.
    CancelResponse,
}

/// What the model sends back.
#[derive(Debug, Clone, PartialEq)]
pub enum S2sEvent {
    /// What the model heard the user say.
    UserTranscript(String),
    /// What the model has heard so far of the user's turn (a final transcript follows).
    UserTranscriptPartial(String),
    /// Text of the model's response as it streams.
    ResponseText(String),
    /// The response's text is complete (its audio may still stream): the host gets the whole
    /// text now instead of at [`S2sEvent::ResponseDone`].
    ResponseTextDone,
    /// Response audio at [`S2sProvider::sample_rate`].
    Audio(Vec<i16>),
    /// Response audio at the given rate, for models that state the rate with each chunk.
    AudioAtRate(Vec<i16>, u32),
    /// The response is complete.
    ResponseDone,
    /// The model stopped its response by itself because it heard the user (barge-in detected on
    /// the model's side): playout stops now. Not an answer to [`S2sInput::CancelResponse`].
    Interrupted,
    /// The model reported an error; the session goes on.
    Error(Error),
}

/// One session's connection to the model.
pub struct S2sSession {
    /// Rate of the audio in `input`.
    pub input_rate: u32,
    /// Inputs until the channel closes (session end).
    pub input: mpsc::UnboundedReceiver<S2sInput>,
    /// Outputs.
    pub events: mpsc::UnboundedSender<S2sEvent>,
}

/// A speech-to-speech model.
pub trait S2sProvider: Send + Sync {
    /// The registry name.
    fn name(&self) -> &str;
    /// Rate of the audio it produces.
    fn sample_rate(&self) -> u32;
    /// Runs the session until its input closes.
    fn run(&self, session: S2sSession) -> BoxFuture<'static, Result<()>>;
}
