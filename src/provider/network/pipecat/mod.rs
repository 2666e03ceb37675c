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
//! | from the bot | RTVI `bot-llm-text` … `bot-llm-stopped` | `VB_EVENT_AGENT_RESPONSE` with the reply's whole text, once |
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

pub mod frames;
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
use frames::Kind;
use rtvi::RtviEvent;
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

/// What the client knows of the bot's output, and how each frame from the bot becomes a session
/// event. Keeps the [`S2sProvider`] promise that each cancelled response is answered by exactly
/// one [`S2sEvent::ResponseDone`], after which output belongs to the next response.
#[derive(Debug, Default)]
struct BotOutput {
    /// The bot is producing a reply (text or audio seen, its end not yet).
    responding: bool,
    /// Interruptions sent to the bot that it has not confirmed yet; its output until then
    /// belongs to the cancelled reply and is dropped.
    acks_pending: u32,
    /// When the client stops waiting for those confirmations.
    ack_deadline: Option<Instant>,
    /// The bot has sent something on this connection.
    heard_from_bot: bool,
    /// The bot sends `user-input`, so `user-transcription` (the same text again) is skipped.
    user_input_seen: bool,
    /// The bot's turn detection has a user turn open (`user-started-speaking` seen, its
    /// `user-stopped-speaking` not yet).
    user_turn_open: bool,
    /// Final transcripts of the open user turn: an STT that transcribes each stretch of speech
    /// on its own sends several; the session reports one per turn, when the turn ends.
    turn_transcript: String,
}

impl BotOutput {
    /// The session cancelled the reply (barge-in): the caller has asked the bot to stop.
    fn cancelled(&mut self, deadline: Instant) -> S2sEvent {
        self.responding = false;
        self.acks_pending += 1;
        self.ack_deadline = Some(deadline);
        S2sEvent::ResponseDone
    }

    /// The bot never confirmed the interruption: stop dropping its output, and say so.
    fn ack_timed_out(&mut self, timeout: Duration) -> S2sEvent {
        self.acks_pending = 0;
        self.ack_deadline = None;
        S2sEvent::Error(Error::new(
            VbStatus::VB_ERR_TIMEOUT,
            format!(
                "{NAME}: the bot did not confirm an interruption within {} ms",
                timeout.as_millis()
            ),
        ))
    }

    /// The connection is gone: the reply in progress, or the one awaited for a finished turn,
    /// has ended (the session plays what arrived, then listens).
    fn connection_lost(&mut self) -> S2sEvent {
        *self = BotOutput::default();
        S2sEvent::ResponseDone
    }

    /// Maps one frame from the bot to the session event it means, if any.
    fn on_frame(&mut self, frame: Kind) -> Option<S2sEvent> {
        match frame {
            Kind::Interruption(_) if self.acks_pending > 0 => {
                self.acks_pending -= 1;
                if self.acks_pending == 0 {
                    self.ack_deadline = None;
                }
                None
            }
            // The bot heard the user and stopped by itself. (It also marks the start of every
            // user turn with an interruption, which means nothing while it is silent.)
            Kind::Interruption(_) => {
                std::mem::take(&mut self.responding).then_some(S2sEvent::Interrupted)
            }
            Kind::Audio(_) if self.acks_pending > 0 => None,
            Kind::Audio(audio) => Some(match audio.mono_pcm() {
                Ok((pcm, rate)) => {
                    self.responding = true;
                    S2sEvent::AudioAtRate(pcm, rate)
                }
                Err(e) => S2sEvent::Error(e),
            }),
            Kind::Message(message) => match rtvi::parse(&message.data) {
                Ok(event) => self.on_rtvi(event),
                Err(e) => Some(S2sEvent::Error(e)),
            },
            // Pipecat's output transports never write these (text travels as RTVI messages).
            Kind::Text(_) | Kind::Transcription(_) => None,
        }
    }

    fn on_rtvi(&mut self, event: RtviEvent) -> Option<S2sEvent> {
        let stale = self.acks_pending > 0;
        match event {
            RtviEvent::UserStartedSpeaking => {
                self.user_turn_open = true;
                self.end_of_turn_transcript()
            }
            RtviEvent::UserStoppedSpeaking => {
                self.user_turn_open = false;
                self.end_of_turn_transcript()
            }
            RtviEvent::UserInput { text, is_final } => {
                self.user_input_seen = true;
                self.transcript(&text, is_final)
            }
            RtviEvent::UserTranscription { text, is_final } if !self.user_input_seen => {
                self.transcript(&text, is_final)
            }
            RtviEvent::UserTranscription { .. } => None,
            // A bot that does not report user turns answers when the turn has ended.
            RtviEvent::ReplyStarted => {
                self.responding |= !stale;
                self.user_turn_open = false;
                self.end_of_turn_transcript()
            }
            RtviEvent::ReplyText(text) if !stale => {
                self.responding = true;
                Some(S2sEvent::ResponseText(text))
            }
            RtviEvent::ReplyStopped if !stale && self.responding => {
                Some(S2sEvent::ResponseTextDone)
            }
            RtviEvent::BotStoppedSpeaking if !stale => {
                std::mem::take(&mut self.responding).then_some(S2sEvent::ResponseDone)
            }
            RtviEvent::Error { message, fatal } => Some(S2sEvent::Error(Error::provider(
                NAME,
                format!(
                    "the bot reports {}: {message}",
                    if fatal { "a fatal error" } else { "an error" }
                ),
            ))),
            _ => None,
        }
    }

    /// A transcript from the bot: final pieces of an open user turn are gathered until it ends;
    /// one outside a turn (a bot that does not report turns) is the turn's transcript at once.
    /// An interim one is reported with what the turn has so far.
    fn transcript(&mut self, text: &str, is_final: bool) -> Option<S2sEvent> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let so_far = join(&self.turn_transcript, text);
        if !is_final {
            return Some(S2sEvent::UserTranscriptPartial(so_far));
        }
        self.turn_transcript = so_far;
        if self.user_turn_open {
            None
        } else {
            self.end_of_turn_transcript()
        }
    }

    /// The gathered transcript of the turn that ended, if any.
    fn end_of_turn_transcript(&mut self) -> Option<S2sEvent> {
        let text = std::mem::take(&mut self.turn_transcript);
        (!text.is_empty()).then_some(S2sEvent::UserTranscript(text))
    }
}

/// `a b`, or whichever is not empty.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a} {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::frames::{AudioRawFrame, InterruptionFrame, MessageFrame};
    use super::*;

    fn audio() -> Kind {
        Kind::Audio(AudioRawFrame {
            audio: vec![1, 0, 2, 0],
            sample_rate: 24000,
            num_channels: 1,
            ..AudioRawFrame::default()
        })
    }

    fn interruption() -> Kind {
        Kind::Interruption(InterruptionFrame::default())
    }

    fn rtvi(kind: &str, data: &str) -> Kind {
        Kind::Message(MessageFrame {
            data: format!(r#"{{"label": "rtvi-ai", "type": "{kind}", "data": {data}}}"#),
        })
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_reply_maps_to_transcript_text_audio_and_done() {
        let mut bot = BotOutput::default();
        let input =
            r#"{"text": " Hi. ", "input_type": "transcription", "timestamp": "t", "final": true}"#;
        assert_eq!(
            bot.on_frame(rtvi("user-input", input)),
            Some(S2sEvent::UserTranscript("Hi.".into()))
        );
        // 1.x bots repeat it as user-transcription: reported once.
        let old = r#"{"text": " Hi. ", "user_id": "", "timestamp": "t", "final": true}"#;
        assert_eq!(bot.on_frame(rtvi("user-transcription", old)), None);
        assert_eq!(bot.on_frame(rtvi("bot-llm-started", "{}")), None);
        assert_eq!(
            bot.on_frame(rtvi("bot-llm-text", r#"{"text": "You said: Hi."}"#)),
            Some(S2sEvent::ResponseText("You said: Hi.".into()))
        );
        assert_eq!(
            bot.on_frame(rtvi("bot-llm-stopped", "{}")),
            Some(S2sEvent::ResponseTextDone)
        );
        assert_eq!(
            bot.on_frame(audio()),
            Some(S2sEvent::AudioAtRate(vec![1, 2], 24000))
        );
        assert_eq!(
            bot.on_frame(rtvi("bot-stopped-speaking", "{}")),
            Some(S2sEvent::ResponseDone)
        );
        // Nothing more to end.
        assert_eq!(bot.on_frame(rtvi("bot-stopped-speaking", "{}")), None);
    }

    #[test]
    fn the_pieces_of_one_bot_turn_are_one_transcript_reported_when_the_turn_ends() {
        let mut bot = BotOutput::default();
        let piece = |text: &str, is_final: bool| {
            rtvi(
                "user-input",
                &format!(
                    r#"{{"text": " {text} ", "input_type": "transcription", "timestamp": "t", "final": {is_final}}}"#
                ),
            )
        };
        assert_eq!(bot.on_frame(rtvi("user-started-speaking", "{}")), None);
        assert_eq!(bot.on_frame(piece("Stop, please.", true)), None);
        assert_eq!(
            bot.on_frame(piece("What", false)),
            Some(S2sEvent::UserTranscriptPartial("Stop, please. What".into()))
        );
        assert_eq!(bot.on_frame(piece("What time is it?", true)), None);
        assert_eq!(
            bot.on_frame(rtvi("user-stopped-speaking", "{}")),
            Some(S2sEvent::UserTranscript(
                "Stop, please. What time is it?".into()
            ))
        );
        // Without turn reports, the reply's start ends the turn.
        assert_eq!(bot.on_frame(rtvi("user-started-speaking", "{}")), None);
        assert_eq!(bot.on_frame(piece("Hello.", true)), None);
        assert_eq!(
            bot.on_frame(rtvi("bot-llm-started", "{}")),
            Some(S2sEvent::UserTranscript("Hello.".into()))
        );
    }

    #[test]
    fn the_interruption_that_opens_each_user_turn_means_nothing_while_the_bot_is_silent() {
        let mut bot = BotOutput::default();
        assert_eq!(bot.on_frame(interruption()), None);
        bot.on_frame(audio());
        assert_eq!(bot.on_frame(interruption()), Some(S2sEvent::Interrupted));
        assert_eq!(bot.on_frame(interruption()), None);
    }

    #[test]
    fn after_a_cancel_the_bot_output_is_dropped_until_it_confirms() {
        let mut bot = BotOutput::default();
        bot.on_frame(audio());
        assert_eq!(bot.cancelled(later()), S2sEvent::ResponseDone);
        assert_eq!(bot.on_frame(audio()), None);
        assert_eq!(bot.on_frame(rtvi("bot-stopped-speaking", "{}")), None);
        // The confirmation; a second interruption (the bot's own, for the new user turn) is
        // not a barge-in of anything.
        assert_eq!(bot.on_frame(interruption()), None);
        assert_eq!(bot.ack_deadline, None);
        assert_eq!(bot.on_frame(interruption()), None);
        assert!(matches!(
            bot.on_frame(audio()),
            Some(S2sEvent::AudioAtRate(..))
        ));
    }

    #[test]
    fn transcripts_of_the_new_turn_pass_while_a_cancel_is_unconfirmed() {
        let mut bot = BotOutput::default();
        bot.cancelled(later());
        let partial =
            r#"{"text": "Wait", "input_type": "transcription", "timestamp": "t", "final": false}"#;
        assert_eq!(
            bot.on_frame(rtvi("user-input", partial)),
            Some(S2sEvent::UserTranscriptPartial("Wait".into()))
        );
    }

    #[test]
    fn an_unconfirmed_cancel_times_out_with_an_error() {
        let mut bot = BotOutput::default();
        bot.cancelled(later());
        let S2sEvent::Error(e) = bot.ack_timed_out(Duration::from_millis(250)) else {
            panic!("not an error")
        };
        assert_eq!(e.status(), VbStatus::VB_ERR_TIMEOUT);
        assert_eq!(
            e.message(),
            "pipecat: the bot did not confirm an interruption within 250 ms"
        );
        assert!(matches!(
            bot.on_frame(audio()),
            Some(S2sEvent::AudioAtRate(..))
        ));
    }

    #[test]
    fn a_lost_connection_ends_the_reply_and_forgets_the_bots_state() {
        let mut bot = BotOutput::default();
        bot.on_frame(audio());
        bot.cancelled(later());
        assert_eq!(bot.connection_lost(), S2sEvent::ResponseDone);
        assert_eq!((bot.responding, bot.acks_pending), (false, 0));
        assert!(matches!(
            bot.on_frame(audio()),
            Some(S2sEvent::AudioAtRate(..))
        ));
    }

    #[test]
    fn bad_frames_and_bot_errors_become_error_events() {
        let mut bot = BotOutput::default();
        let Some(S2sEvent::Error(e)) =
            bot.on_frame(Kind::Message(MessageFrame { data: "{".into() }))
        else {
            panic!("not an error")
        };
        assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER);
        let Some(S2sEvent::Error(e)) =
            bot.on_frame(rtvi("error", r#"{"error": "LLM down", "fatal": true}"#))
        else {
            panic!("not an error")
        };
        assert_eq!(
            e.message(),
            "pipecat: the bot reports a fatal error: LLM down"
        );
    }
}
