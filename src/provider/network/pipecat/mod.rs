//! Pipecat, in one place: a session of the `pipecat` backend talks to a Pipecat bot over a
//! WebSocket, in the frames of Pipecat's `ProtobufFrameSerializer` ([`frames`]) with RTVI messages
//! inside ([`rtvi`]); the backend's `provider_config` is read in [`settings`].
//!
//! To the session, the bot is a speech-to-speech model that does its own turn-taking, so the
//! connection implements [`S2sProvider`] and runs in the `s2s` session pipeline on the backend's
//! I/O runtime. What crosses the socket:
//!
//! | direction | Pipecat | session |
//! |---|---|---|
//! | to the bot | `AudioRawFrame` (16-bit mono, internal rate) | user speech of each turn the engine detects, after the custom processors |
//! | to the bot | `InterruptionFrame` | barge-in detected by the engine (the bot stops and echoes the frame) |
//! | to the bot | RTVI `client-ready` | sent on every (re)connection |
//! | from the bot | `AudioRawFrame` (any rate, mono or interleaved) | reply audio, resampled to the host's output rate |
//! | from the bot | `InterruptionFrame` while it speaks | barge-in detected by the bot: playout stops, `VB_EVENT_INTERRUPTED` |
//! | from the bot | RTVI `user-input` (`transcription`), or `user-transcription` from bots without it | `VB_EVENT_TRANSCRIPT_FINAL` once per user turn (final pieces joined, at `user-stopped-speaking`); interim ones `VB_EVENT_TRANSCRIPT_PARTIAL` |
//! | from the bot | RTVI `llm-raw-text`, `bot-llm-text`, `bot-transcription`, `bot-output`, `tts-raw-text` or `bot-tts-text`: one type per reply (`reply_text.rs`) | `VB_EVENT_AGENT_RESPONSE` with the reply's whole text, once: at `bot-llm-stopped` for LLM text, else when the bot stops speaking |
//! | from the bot | RTVI `bot-stopped-speaking` | end of the reply (back to listening once it has played) |
//! | from the bot | RTVI `error` | `VB_EVENT_ERROR` (`VB_ERR_PROVIDER`) |
//!
//! Failures: a bot that cannot be reached ends the session's model with `VB_ERR_CONNECTION_FAILED`
//! (or `VB_ERR_TIMEOUT`), which the session reports as `VB_EVENT_ERROR` and state `ERROR` — the
//! session itself starts regardless, as every network session does, and speech before the first
//! connection waits for it. A connection lost
//! mid-session is a `VB_EVENT_ERROR` (`VB_ERR_CONNECTION_FAILED`); the reply in progress ends and
//! the session reconnects under the backend's `retry` rules, dropping user audio meanwhile; a bot
//! that keeps closing connections before it sends anything (a single-client bot that is busy) is
//! given up after `retry.max_attempts` of them. A frame or message that does not decode is a
//! `VB_EVENT_ERROR` (`VB_ERR_PROVIDER`) and the session goes on.

mod bot_output;
pub mod frames;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
#[cfg(test)]
mod recorded;
mod reply_text;
pub mod rtvi;
pub mod settings;

use std::pin::pin;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::config::RetryConfig;
use crate::error::{Error, Result, VbStatus};
use crate::net::{self, WebSocket};
use crate::provider::{BoxFuture, S2sEvent, S2sInput, S2sProvider, S2sSession};
use bot_output::BotOutput;
pub use settings::bot_from_backend_config;

/// The registry name, and how messages about the bot start.
const NAME: &str = "pipecat";

/// A Pipecat bot reached over WebSocket: one connection per session.
#[derive(Debug, Clone)]
pub struct PipecatBot {
    url: String,
    timeout: Duration,
    retry: RetryConfig,
}

impl PipecatBot {
    /// A bot at `url` (`ws://` or `wss://`, validated by the caller); `timeout` bounds each
    /// connection attempt and the wait for the bot to confirm an interruption; `retry` is how
    /// connections are retried.
    pub fn new(url: String, timeout: Duration, retry: RetryConfig) -> Self {
        PipecatBot {
            url,
            timeout,
            retry,
        }
    }
}

impl S2sProvider for PipecatBot {
    fn name(&self) -> &str {
        NAME
    }

    /// Pipecat states the rate in every audio frame, so replies arrive as
    /// [`S2sEvent::AudioAtRate`]; this is only the rate Pipecat bots are usually configured with.
    fn sample_rate(&self) -> u32 {
        16000
    }

    fn run(&self, session: S2sSession) -> BoxFuture<'static, Result<()>> {
        Box::pin(run_session(self.clone(), session))
    }
}

/// The session's connection: connects, converses, reconnects after a loss. Returns when the
/// session's input closes (`Ok`), when the bot cannot be reached, or when it keeps dropping
/// connections before saying anything (`retry.max_attempts` in a row).
async fn run_session(bot: PipecatBot, mut session: S2sSession) -> Result<()> {
    let mut output = BotOutput::default();
    let mut silent_losses = 0;
    // The user may speak while the first connection is made: that audio waits for the bot.
    let mut socket = net::connect_websocket(NAME, &bot.url, &[], bot.timeout, &bot.retry).await?;
    loop {
        let why = match converse(&bot, &mut socket, &mut session, &mut output).await {
            Ok(()) => {
                let _ = socket.close(None).await;
                return Ok(());
            }
            Err(why) => why,
        };
        silent_losses = if output.heard_from_bot {
            0
        } else {
            silent_losses + 1
        };
        let shown = net::redact_url(&bot.url);
        if silent_losses >= bot.retry.max_attempts {
            return Err(Error::new(
                VbStatus::VB_ERR_CONNECTION_FAILED,
                format!(
                    "{NAME}: lost the connection to {shown}: {why} ({silent_losses} connections in a row ended before the bot sent anything)"
                ),
            ));
        }
        let lost = Error::new(
            VbStatus::VB_ERR_CONNECTION_FAILED,
            format!("{NAME}: lost the connection to {shown}: {why}; reconnecting"),
        );
        let _ = session.events.send(S2sEvent::Error(lost));
        let _ = session.events.send(output.connection_lost());
        let delay = if silent_losses > 0 {
            net::backoff(&bot.retry, silent_losses)
        } else {
            Duration::ZERO
        };
        match reconnect(&bot, &mut session, delay).await? {
            Some(reconnected) => socket = reconnected,
            None => return Ok(()),
        }
    }
}

/// After `delay`, opens the WebSocket again (with the retry rules). Meanwhile the session's
/// input is drained: audio is dropped (it belongs to the conversation the loss broke) and a
/// barge-in is answered at once. `None` when the input closed first.
async fn reconnect(
    bot: &PipecatBot,
    session: &mut S2sSession,
    delay: Duration,
) -> Result<Option<WebSocket>> {
    let mut attempt = pin!(async {
        tokio::time::sleep(delay).await;
        net::connect_websocket(NAME, &bot.url, &[], bot.timeout, &bot.retry).await
    });
    loop {
        tokio::select! {
            result = &mut attempt => return result.map(Some),
            input = session.input.recv() => match input {
                None => return Ok(None),
                Some(S2sInput::CancelResponse) => {
                    let _ = session.events.send(S2sEvent::ResponseDone);
                }
                Some(S2sInput::Audio(_) | S2sInput::EndOfTurn) => {}
            },
        }
    }
}

/// Says `client-ready`, then relays audio and control both ways until the input closes (`Ok`)
/// or the connection is lost (why).
async fn converse(
    bot: &PipecatBot,
    socket: &mut WebSocket,
    session: &mut S2sSession,
    output: &mut BotOutput,
) -> std::result::Result<(), String> {
    let ready = frames::encode_message(rtvi::client_ready(1));
    socket
        .send(Message::Binary(ready.into()))
        .await
        .map_err(|e| e.to_string())?;
    let events = session.events.clone();
    let emit = |event: Option<S2sEvent>| {
        if let Some(event) = event {
            let _ = events.send(event);
        }
    };
    loop {
        let ack_deadline = output.ack_deadline;
        tokio::select! {
            input = session.input.recv() => match input {
                None => return Ok(()),
                Some(S2sInput::Audio(pcm)) => {
                    let frame = frames::encode_audio(&pcm, session.input_rate);
                    socket.send(Message::Binary(frame.into())).await.map_err(|e| e.to_string())?;
                }
                // The bot detects the end of the user's turn itself.
                Some(S2sInput::EndOfTurn) => {}
                Some(S2sInput::CancelResponse) => {
                    let frame = frames::encode_interruption();
                    socket.send(Message::Binary(frame.into())).await.map_err(|e| e.to_string())?;
                    emit(Some(output.cancelled(Instant::now() + bot.timeout)));
                }
            },
            message = socket.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    output.heard_from_bot = true;
                    emit(match frames::decode(&bytes) {
                        Ok(kind) => output.on_frame(kind),
                        Err(e) => Some(S2sEvent::Error(e)),
                    });
                }
                Some(Ok(Message::Text(text))) => emit(Some(S2sEvent::Error(Error::provider(
                    NAME,
                    format!(
                        "the bot sent a {}-byte text message; Pipecat's protobuf serializer sends binary frames",
                        text.len()
                    ),
                )))),
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map_or_else(String::new, |f| format!(" ({} {})", f.code, f.reason));
                    return Err(format!("the bot closed the connection{why}"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the connection ended".to_owned()),
            },
            _ = tokio::time::sleep_until(ack_deadline.unwrap_or_else(Instant::now)), if ack_deadline.is_some() => {
                emit(Some(output.ack_timed_out(bot.timeout)));
            }
        }
    }
}
