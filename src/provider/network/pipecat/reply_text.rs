//! Which RTVI messages give the host the bot's reply text, and how their pieces join.
//!
//! A Pipecat bot reports the same words several times over. For one reply a pipecat-ai 1.14.0
//! bot sends, in this order (recorded from `tests/pipecat/bot.py`; `tests/pipecat/rtvi/` holds
//! the recordings):
//!
//! | message | what it carries | when |
//! |---|---|---|
//! | `llm-raw-text` | the LLM's chunks (only if the bot enables it) | as the LLM streams, before the audio |
//! | `bot-llm-text` | the same chunks (deprecated) | the same |
//! | `bot-transcription` | the LLM's text again, a sentence at a time (deprecated) | the same, as each sentence ends |
//! | `bot-output` | each segment of what the bot outputs — an LLM's sentence, a `TTSSpeakFrame`'s text, a speech-to-speech model's transcript, text that is not spoken — announced once, then again as it is spoken | from the start of the bot's speech on |
//! | `tts-raw-text` | the text the TTS speaks (only if the bot enables it) | as it is spoken |
//! | `bot-tts-text` | the same (deprecated) | the same |
//!
//! A bot without an LLM (a `TTSSpeakFrame` from a processor of its own, a TTS-only pipeline)
//! sends only the last three. The rule: **a reply's text comes from one message type, the first
//! that brings text in that reply**; the others repeat the same words and are skipped until the
//! reply ends (the bot stops speaking, is interrupted, or the connection is lost). With
//! Pipecat's order that is: the LLM's text when the bot has an LLM (complete at
//! `bot-llm-stopped`, before the audio: the host gets the reply as early as the bot has it),
//! else `bot-output`, else the TTS text. `llm-raw-text` and `tts-raw-text` come just before
//! their deprecated twins, so a bot that enables them is read through them.
//!
//! `bot-output` itself repeats each segment: a protocol 2 bot (pipecat-ai 1.4 and later) sends
//! `spoken_status` `new`, then `in-progress` for each word a word-timestamp TTS speaks, then
//! `completed`, all with the segment's `segment_id`, so only a segment's first message is
//! taken. A protocol 1 bot (pipecat-ai 0.0.96 to 1.3) sends no segment id: it announces each
//! segment with `spoken: false` (the only message of text it does not speak) and repeats it
//! with `spoken: true` as it is spoken (the sentence, or word by word), so the announcements
//! are taken.
//!
//! Joining: LLM chunks carry their own spaces and are kept as they are. The other messages
//! carry sentences or words without the space between them (Pipecat's sentence aggregator
//! strips it); one space is put between two pieces unless one of them has whitespace there.

use std::collections::VecDeque;

use super::rtvi::TextSource;

/// How many `bot-output` segments are remembered, so that their repetitions are recognised.
/// Repetitions follow within the same reply; a few replies' worth is plenty.
const SEGMENTS_REMEMBERED: usize = 64;

/// The text of the reply in progress: which message it comes from, and what it ends with.
#[derive(Debug, Default)]
pub(super) struct ReplyText {
    /// The message type this reply's text comes from (the first to bring text in it).
    source: Option<TextSource>,
    /// The last character of the reply's text so far.
    last: Option<char>,
    /// `bot-output` segments seen lately: their later messages are repetitions.
    segments: VecDeque<u64>,
}

impl ReplyText {
    /// A message carrying reply text other than `bot-output`: what to add to the reply's
    /// text, if anything.
    pub(super) fn text(&mut self, source: TextSource, text: &str) -> Option<String> {
        if self.source.is_some_and(|chosen| chosen != source) {
            return None;
        }
        let piece = match source {
            // Chunks of a stream: a whitespace-only chunk is the space between two words.
            TextSource::LlmRawText | TextSource::BotLlmText if !text.is_empty() => text.to_owned(),
            _ if text.trim().is_empty() => return None,
            _ => match self.last {
                Some(last) if !last.is_whitespace() && !text.starts_with(char::is_whitespace) => {
                    format!(" {text}")
                }
                _ => text.to_owned(),
            },
        };
        self.source = Some(source);
        self.last = piece.chars().last();
        Some(piece)
    }

    /// A `bot-output` message: what to add to the reply's text, if anything.
    pub(super) fn bot_output(
        &mut self,
        text: &str,
        segment_id: Option<u64>,
        spoken: Option<bool>,
    ) -> Option<String> {
        let repeated = match segment_id {
            Some(id) if self.segments.contains(&id) => true,
            Some(id) => {
                // Remembered across replies, whichever message the reply's text comes from, so
                // that a repetition arriving late is not taken for the next reply's text.
                if self.segments.len() == SEGMENTS_REMEMBERED {
                    self.segments.pop_front();
                }
                self.segments.push_back(id);
                false
            }
            None => spoken == Some(true),
        };
        if repeated {
            return None;
        }
        self.text(TextSource::BotOutput, text)
    }

    /// The reply has ended: the next text begins a new reply, which may come from another
    /// message type (a greeting spoken by a `TTSSpeakFrame`, then an LLM's answer).
    pub(super) fn reply_ended(&mut self) {
        self.source = None;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TextSource::*;

    /// The text the reply gets from `messages` (each a source and a text, or a `bot-output`
    /// with its segment id and `spoken`), replayed in order.
    fn reply(messages: &[(TextSource, &str, Option<u64>, Option<bool>)]) -> String {
        let mut reply = ReplyText::default();
        let mut text = String::new();
        for &(source, piece, segment_id, spoken) in messages {
            let taken = match source {
                BotOutput => reply.bot_output(piece, segment_id, spoken),
                _ => reply.text(source, piece),
            };
            text.push_str(&taken.unwrap_or_default());
        }
        text
    }

    fn llm(text: &str) -> (TextSource, &str, Option<u64>, Option<bool>) {
        (BotLlmText, text, None, None)
    }

    fn output(text: &str, segment: u64) -> (TextSource, &str, Option<u64>, Option<bool>) {
        (BotOutput, text, Some(segment), None)
    }

    fn v1_output(text: &str, spoken: bool) -> (TextSource, &str, Option<u64>, Option<bool>) {
        (BotOutput, text, None, Some(spoken))
    }

    fn tts(text: &str) -> (TextSource, &str, Option<u64>, Option<bool>) {
        (BotTtsText, text, None, None)
    }

    #[test]
    fn llm_chunks_keep_their_own_spaces_and_other_pieces_are_joined_by_one() {
        assert_eq!(
            reply(&[llm("Hel"), llm("lo"), llm(" "), llm("there.")]),
            "Hello there."
        );
        assert_eq!(
            reply(&[tts("Hello"), tts("there."), tts(" How"), tts("\nare you?")]),
            "Hello there. How\nare you?"
        );
        assert_eq!(reply(&[tts(""), tts("  "), tts("Hi.")]), "Hi.");
    }

    #[test]
    fn the_first_message_type_with_text_is_the_replys_source() {
        // Whichever comes first, the others are repetitions.
        assert_eq!(reply(&[tts("Hi."), llm("Hi."), output("Hi.", 1)]), "Hi.");
        assert_eq!(reply(&[output("Hi.", 1), tts("Hi."), llm("Hi.")]), "Hi.");
        // A message without text chooses nothing.
        assert_eq!(reply(&[tts(" "), llm("Hi.")]), "Hi.");
    }

    #[test]
    fn a_segment_is_taken_once_whatever_repeats_it() {
        // Protocol 2 with a word-timestamp TTS: new (the sentence), in-progress (the sentence
        // again, with progress fields), completed.
        let messages = [
            output("One two.", 7),
            output("One two.", 7),
            output("One two.", 7),
            output("Three.", 9),
            output("Three.", 9),
        ];
        assert_eq!(reply(&messages), "One two. Three.");
        // Protocol 1: announced (spoken false), then spoken, maybe word by word.
        let messages = [
            v1_output("One two.", false),
            v1_output("One", true),
            v1_output("two.", true),
            v1_output("Three.", false),
            v1_output("Three.", true),
        ];
        assert_eq!(reply(&messages), "One two. Three.");
    }

    #[test]
    fn a_new_reply_may_come_from_another_message_and_old_segments_stay_repetitions() {
        let mut reply = ReplyText::default();
        // A greeting from a TTSSpeakFrame: bot-output.
        assert_eq!(
            reply.bot_output("Hello!", Some(3), Some(false)).as_deref(),
            Some("Hello!")
        );
        assert_eq!(reply.text(BotLlmText, "Hello!"), None);
        reply.reply_ended();
        // A late repetition of the greeting is not the next reply's text.
        assert_eq!(reply.bot_output("Hello!", Some(3), Some(true)), None);
        // The answer, from an LLM: its text, with no space put before it.
        assert_eq!(reply.text(BotLlmText, "Sure").as_deref(), Some("Sure"));
        assert_eq!(reply.bot_output("Sure.", Some(5), Some(false)), None);
    }

    #[test]
    fn the_segments_remembered_are_bounded() {
        let mut reply = ReplyText::default();
        for id in 0..(SEGMENTS_REMEMBERED as u64 + 10) {
            reply.bot_output("x", Some(id), None);
        }
        assert_eq!(reply.segments.len(), SEGMENTS_REMEMBERED);
        assert_eq!(reply.segments.front(), Some(&10));
    }
}
