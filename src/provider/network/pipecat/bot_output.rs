//! What the bot's frames mean to the session: the state of the bot's output as the client sees
//! it (a reply in progress, interruptions awaiting the bot's confirmation, the user's turn) and
//! the [`S2sEvent`] each frame from the bot becomes. Pure state: runs on the connection's task.

use std::time::Duration;

use tokio::time::Instant;

use super::NAME;
use super::frames::Kind;
use super::reply_text::ReplyText;
use super::rtvi::{self, RtviEvent};
use crate::error::{Error, VbStatus};
use crate::provider::S2sEvent;

/// What the client knows of the bot's output, and how each frame from the bot becomes a session
/// event. Keeps the [`S2sProvider`](crate::provider::S2sProvider) promise that each cancelled
/// response is answered by exactly one [`S2sEvent::ResponseDone`], after which output belongs to
/// the next response.
#[derive(Debug, Default)]
pub(super) struct BotOutput {
    /// The bot is producing a reply (text or audio seen, its end not yet).
    responding: bool,
    /// Interruptions sent to the bot that it has not confirmed yet; its output until then
    /// belongs to the cancelled reply and is dropped.
    acks_pending: u32,
    /// When the client stops waiting for those confirmations.
    pub(super) ack_deadline: Option<Instant>,
    /// The bot has sent something on this connection.
    pub(super) heard_from_bot: bool,
    /// The bot sends `user-input`, so `user-transcription` (the same text again) is skipped.
    user_input_seen: bool,
    /// The bot's turn detection has a user turn open (`user-started-speaking` seen, its
    /// `user-stopped-speaking` not yet).
    user_turn_open: bool,
    /// Final transcripts of the open user turn: an STT that transcribes each stretch of speech
    /// on its own sends several; the session reports one per turn, when the turn ends.
    turn_transcript: String,
    /// Which of the messages repeating the reply's words the reply's text is read from.
    reply_text: ReplyText,
}

impl BotOutput {
    /// The session cancelled the reply (barge-in): the caller has asked the bot to stop.
    pub(super) fn cancelled(&mut self, deadline: Instant) -> S2sEvent {
        self.reply_ended();
        self.acks_pending += 1;
        self.ack_deadline = Some(deadline);
        S2sEvent::ResponseDone
    }

    /// The bot never confirmed the interruption: stop dropping its output, and say so.
    pub(super) fn ack_timed_out(&mut self, timeout: Duration) -> S2sEvent {
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
    pub(super) fn connection_lost(&mut self) -> S2sEvent {
        *self = BotOutput::default();
        S2sEvent::ResponseDone
    }

    /// Maps one frame from the bot to the session event it means, if any.
    pub(super) fn on_frame(&mut self, frame: Kind) -> Option<S2sEvent> {
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
            Kind::Interruption(_) => self.reply_ended().then_some(S2sEvent::Interrupted),
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
            RtviEvent::ReplyText { source, text } if !stale => {
                let piece = self.reply_text.text(source, &text);
                self.reply_piece(piece)
            }
            RtviEvent::BotOutput {
                text,
                segment_id,
                spoken,
            } if !stale => {
                let piece = self.reply_text.bot_output(&text, segment_id, spoken);
                self.reply_piece(piece)
            }
            RtviEvent::ReplyStopped if !stale && self.responding => {
                Some(S2sEvent::ResponseTextDone)
            }
            RtviEvent::BotStoppedSpeaking if !stale => {
                self.reply_ended().then_some(S2sEvent::ResponseDone)
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

    /// A piece of the reply's text, if the message brought one.
    fn reply_piece(&mut self, piece: Option<String>) -> Option<S2sEvent> {
        let piece = piece?;
        self.responding = true;
        Some(S2sEvent::ResponseText(piece))
    }

    /// The reply in progress, if any, has ended (stopped, interrupted or cancelled): whether
    /// there was one.
    fn reply_ended(&mut self) -> bool {
        self.reply_text.reply_ended();
        std::mem::take(&mut self.responding)
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
    use super::super::frames::{AudioRawFrame, InterruptionFrame, MessageFrame};
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
