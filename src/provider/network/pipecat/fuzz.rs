//! Fuzzing entry (feature `fuzzing`): binary messages from a Pipecat bot through what a session's
//! connection makes of them, [`BotOutput`] (frames, RTVI, the reply's text, interruptions
//! awaiting the bot's confirmation), with the session's cancels, confirmation timeouts and lost
//! connections as the connection's loop handles them.

use std::time::Duration;

use tokio::time::Instant;

use super::bot_output::BotOutput;
use super::frames;
use crate::provider::S2sEvent;

/// The confirmation timeout used (`provider_config.timeout_ms`).
const TIMEOUT: Duration = Duration::from_secs(10);

/// One thing that happens on a session's connection to its bot.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// A binary WebSocket message from the bot.
    Message(&'a [u8]),
    /// The session cancels the reply (barge-in): an interruption goes to the bot.
    Cancel,
    /// The wait for the bot to confirm interruptions ends (only while one is awaited).
    AckTimeout,
    /// The connection is lost.
    ConnectionLost,
}

/// What the session hears from each step, in order.
pub fn bot_messages(steps: &[Step]) -> Vec<Option<S2sEvent>> {
    let mut output = BotOutput::default();
    steps
        .iter()
        .map(|step| match *step {
            Step::Message(bytes) => {
                output.heard_from_bot = true;
                match frames::decode(bytes) {
                    Ok(kind) => output.on_frame(kind),
                    Err(e) => Some(S2sEvent::Error(e)),
                }
            }
            Step::Cancel => Some(output.cancelled(Instant::now() + TIMEOUT)),
            Step::AckTimeout if output.ack_deadline.is_some() => {
                Some(output.ack_timed_out(TIMEOUT))
            }
            Step::AckTimeout => None,
            Step::ConnectionLost => Some(output.connection_lost()),
        })
        .collect()
}
