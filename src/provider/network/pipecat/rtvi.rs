//! RTVI, the JSON message protocol Pipecat bots speak to their clients inside `MessageFrame`s
//! (`{"label": "rtvi-ai", "type": …, "id": …, "data": {…}}`; pipecat-ai 1.14.0 implements
//! protocol 2.2.0 in `pipecat/processors/frameworks/rtvi/models.py`).
//!
//! Only what a voice session needs is read: the user's turns and transcripts, the bot's reply
//! text (from any of the six messages that carry it: which one the host gets is decided in
//! `reply_text.rs`), when the bot stops speaking and the errors it reports. Other messages
//! (`bot-ready`, metrics, `bot-tts-started`, …) are recognised as RTVI and skipped. Pure data:
//! runs on the calling thread.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The RTVI protocol version this client implements (sent in `client-ready`).
pub const PROTOCOL_VERSION: &str = "2.2.0";

const LABEL: &str = "rtvi-ai";

/// An RTVI message from the bot that matters to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtviEvent {
    /// What the user said, from `user-input` (input type `transcription`).
    UserInput {
        /// The transcript, as the bot's STT wrote it.
        text: String,
        /// Whether the transcript is final (an interim one is not).
        is_final: bool,
    },
    /// The same from the older `user-transcription` message, which 1.x bots send after
    /// `user-input` (use it only when the bot sends no `user-input`).
    UserTranscription {
        /// The transcript.
        text: String,
        /// Whether the transcript is final.
        is_final: bool,
    },
    /// `user-started-speaking`: the bot's turn detection opened a user turn.
    UserStartedSpeaking,
    /// `user-stopped-speaking`: the bot's turn detection ended the user turn.
    UserStoppedSpeaking,
    /// `bot-llm-started`: the bot's reply text begins.
    ReplyStarted,
    /// A piece of the bot's reply text, from a message whose data is that text alone (any of
    /// them but `bot-output`).
    ReplyText {
        /// The message it came in.
        source: TextSource,
        /// The piece, as the bot sent it.
        text: String,
    },
    /// `bot-output`: a piece of what the bot outputs (spoken or not), with what tells its
    /// repetitions apart.
    BotOutput {
        /// The text of the segment (a sentence, a `TTSSpeakFrame`'s text, a word, …).
        text: String,
        /// The segment it belongs to (`segment_id`, sent by pipecat-ai 1.4 and later): each
        /// segment is reported again as it is spoken.
        segment_id: Option<u64>,
        /// `spoken`: the text has been spoken (the protocol 1.x field; pipecat-ai 1.4 and later
        /// still send it). Without a segment id, spoken text is a repetition.
        spoken: Option<bool>,
    },
    /// `bot-llm-stopped`: the bot's reply text is complete.
    ReplyStopped,
    /// `bot-stopped-speaking`: the bot's output audio has ended.
    BotStoppedSpeaking,
    /// `error`: the bot reports a failure.
    Error {
        /// Its description.
        message: String,
        /// Whether the bot says it cannot go on.
        fatal: bool,
    },
    /// Any other RTVI message.
    Other,
}

/// The messages that carry the bot's reply text, in the order a pipecat-ai 1.14.0 bot sends
/// them for the same words. (`bot-output` is read as [`RtviEvent::BotOutput`], with what tells
/// its repetitions apart.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextSource {
    /// `llm-raw-text`: a chunk as the LLM streamed it (protocol 2.2.0; the bot must enable it).
    LlmRawText,
    /// `bot-llm-text`: the same chunks (deprecated since pipecat-ai 1.13).
    BotLlmText,
    /// `bot-transcription`: the LLM's text again, a sentence at a time, once the sentence ends
    /// (deprecated).
    BotTranscription,
    /// `bot-output`.
    BotOutput,
    /// `tts-raw-text`: the text the TTS speaks, as it is spoken (protocol 2.2.0; the bot must
    /// enable it).
    TtsRawText,
    /// `bot-tts-text`: the same (deprecated since pipecat-ai 1.13).
    BotTtsText,
}

impl TextSource {
    /// The RTVI message type.
    pub fn message_type(self) -> &'static str {
        match self {
            TextSource::LlmRawText => "llm-raw-text",
            TextSource::BotLlmText => "bot-llm-text",
            TextSource::BotTranscription => "bot-transcription",
            TextSource::BotOutput => "bot-output",
            TextSource::TtsRawText => "tts-raw-text",
            TextSource::BotTtsText => "bot-tts-text",
        }
    }

    fn from_message_type(kind: &str) -> Option<TextSource> {
        [
            TextSource::LlmRawText,
            TextSource::BotLlmText,
            TextSource::BotTranscription,
            TextSource::TtsRawText,
            TextSource::BotTtsText,
        ]
        .into_iter()
        .find(|source| source.message_type() == kind)
    }
}

#[derive(Deserialize)]
struct Envelope {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct Transcript {
    text: String,
    #[serde(rename = "final")]
    is_final: bool,
    #[serde(default)]
    input_type: Option<String>,
}

#[derive(Deserialize)]
struct Text {
    text: String,
}

/// `bot-output` data: `text` and the fields that tell repetitions apart; the others
/// (`output_type`, `will_be_spoken`, `spoken_status`, `spoken_progress`, …) are not needed.
#[derive(Deserialize)]
struct OutputData {
    text: String,
    #[serde(default)]
    segment_id: Option<u64>,
    #[serde(default)]
    spoken: Option<bool>,
}

#[derive(Deserialize)]
struct ErrorData {
    error: String,
    #[serde(default)]
    fatal: bool,
}

/// Parses the JSON of a `MessageFrame`. Malformed JSON, a message without the RTVI label and a
/// known message whose `data` lacks its fields are `VB_ERR_PROVIDER`.
pub fn parse(json: &str) -> Result<RtviEvent> {
    let bad = |what: String| Error::provider("pipecat", what);
    let envelope: Envelope = serde_json::from_str(json).map_err(|e| {
        bad(format!(
            "a message from the bot is not an RTVI message ({e})"
        ))
    })?;
    if envelope.label != LABEL {
        return Err(bad(format!(
            "a message from the bot has label '{}', not '{LABEL}'",
            envelope.label
        )));
    }
    let data = |kind: &str| {
        let kind = kind.to_owned();
        move |e: serde_json::Error| bad(format!("RTVI '{kind}' message with bad data: {e}"))
    };
    let kind = envelope.kind.as_str();
    Ok(match kind {
        "user-input" | "user-transcription" => {
            let t: Transcript = serde_json::from_value(envelope.data).map_err(data(kind))?;
            match (kind, t.input_type.as_deref()) {
                ("user-transcription", _) => RtviEvent::UserTranscription {
                    text: t.text,
                    is_final: t.is_final,
                },
                (_, Some("transcription")) => RtviEvent::UserInput {
                    text: t.text,
                    is_final: t.is_final,
                },
                // Typed chat or a backchannel ("mhm"): not a turn of the voice conversation.
                _ => RtviEvent::Other,
            }
        }
        "user-started-speaking" => RtviEvent::UserStartedSpeaking,
        "user-stopped-speaking" => RtviEvent::UserStoppedSpeaking,
        "bot-llm-started" => RtviEvent::ReplyStarted,
        "bot-output" => {
            let o: OutputData = serde_json::from_value(envelope.data).map_err(data(kind))?;
            RtviEvent::BotOutput {
                text: o.text,
                segment_id: o.segment_id,
                spoken: o.spoken,
            }
        }
        "bot-llm-stopped" => RtviEvent::ReplyStopped,
        "bot-stopped-speaking" => RtviEvent::BotStoppedSpeaking,
        "error" => {
            let e: ErrorData = serde_json::from_value(envelope.data).map_err(data(kind))?;
            RtviEvent::Error {
                message: e.error,
                fatal: e.fatal,
            }
        }
        _ => match TextSource::from_message_type(kind) {
            Some(source) => {
                let t: Text = serde_json::from_value(envelope.data).map_err(data(kind))?;
                RtviEvent::ReplyText {
                    source,
                    text: t.text,
                }
            }
            None => RtviEvent::Other,
        },
    })
}

/// The `client-ready` message a client sends once connected (the bot answers `bot-ready`).
pub fn client_ready(request_id: u64) -> String {
    serde_json::json!({
        "label": LABEL,
        "type": "client-ready",
        "id": request_id.to_string(),
        "data": {
            "version": PROTOCOL_VERSION,
            "about": {
                "library": "voicebackend",
                "library_version": env!("CARGO_PKG_VERSION"),
            },
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VbStatus;

    #[test]
    fn transcripts_and_reply_text_are_read_from_pipecat_messages() {
        // As pipecat-ai 1.14.0 sends them.
        let input = r#"{"label": "rtvi-ai", "type": "user-input", "data": {"text": " Hello there. ", "input_type": "transcription", "timestamp": "2026-01-01T00:00:00.000+00:00", "final": true, "user_id": ""}}"#;
        assert_eq!(
            parse(input).unwrap(),
            RtviEvent::UserInput {
                text: " Hello there. ".into(),
                is_final: true
            }
        );
        let old = r#"{"label": "rtvi-ai", "type": "user-transcription", "data": {"text": "Hel", "user_id": "", "timestamp": "t", "final": false}}"#;
        assert_eq!(
            parse(old).unwrap(),
            RtviEvent::UserTranscription {
                text: "Hel".into(),
                is_final: false
            }
        );
        for (kind, event) in [
            ("user-started-speaking", RtviEvent::UserStartedSpeaking),
            ("user-stopped-speaking", RtviEvent::UserStoppedSpeaking),
            ("bot-llm-started", RtviEvent::ReplyStarted),
            ("bot-llm-stopped", RtviEvent::ReplyStopped),
            ("bot-stopped-speaking", RtviEvent::BotStoppedSpeaking),
            ("bot-started-speaking", RtviEvent::Other),
            ("bot-ready", RtviEvent::Other),
        ] {
            let json = format!(r#"{{"label": "rtvi-ai", "type": "{kind}"}}"#);
            assert_eq!(parse(&json).unwrap(), event, "{kind}");
        }
        let error = r#"{"label": "rtvi-ai", "type": "error", "data": {"error": "STT failed", "fatal": false}}"#;
        assert_eq!(
            parse(error).unwrap(),
            RtviEvent::Error {
                message: "STT failed".into(),
                fatal: false
            }
        );
    }

    #[test]
    fn each_message_with_the_bots_words_is_read_in_either_protocol_version() {
        use super::super::recorded::{LLM_BOT, PIPECAT_1_3_SPEAKING_BOT, SPEAKING_BOT, first};
        let text = |source, text: &str| RtviEvent::ReplyText {
            source,
            text: text.into(),
        };
        let output = |text: &str, segment_id, spoken| RtviEvent::BotOutput {
            text: text.into(),
            segment_id,
            spoken,
        };
        let segment_of = |line: &str| {
            let message: Value = serde_json::from_str(line).unwrap();
            message["data"]["segment_id"].as_u64()
        };
        let sentence = "You said: No, I do not think so.";
        let v2_output = first(LLM_BOT, "bot-output");
        let speaking_output = first(SPEAKING_BOT, "bot-output");
        assert!(segment_of(v2_output).is_some() && segment_of(speaking_output).is_some());
        // (message as a real bot sent it, what is read of it)
        for (line, event) in [
            (
                first(LLM_BOT, "llm-raw-text"),
                text(TextSource::LlmRawText, "You"),
            ),
            (
                first(LLM_BOT, "bot-llm-text"),
                text(TextSource::BotLlmText, "You"),
            ),
            (
                first(LLM_BOT, "bot-transcription"),
                text(TextSource::BotTranscription, sentence),
            ),
            // Protocol 2 (pipecat-ai 1.14.0): the v2 fields and the v1 `spoken` too.
            (
                v2_output,
                output(sentence, segment_of(v2_output), Some(false)),
            ),
            (
                speaking_output,
                output(
                    "You said: I am fine, thank you, how are you?",
                    segment_of(speaking_output),
                    Some(false),
                ),
            ),
            (
                first(LLM_BOT, "tts-raw-text"),
                text(TextSource::TtsRawText, sentence),
            ),
            (
                first(LLM_BOT, "bot-tts-text"),
                text(TextSource::BotTtsText, sentence),
            ),
            // Protocol 1 (pipecat-ai 1.3.0): text, spoken and aggregated_by only.
            (
                first(PIPECAT_1_3_SPEAKING_BOT, "bot-output"),
                output(
                    "You said: No, I do not think so, thank you very much.",
                    None,
                    Some(false),
                ),
            ),
            // pipecat-ai 1.3.0 answers our client-ready with a warning that is no failure.
            (
                first(PIPECAT_1_3_SPEAKING_BOT, "error-response"),
                RtviEvent::Other,
            ),
            (first(LLM_BOT, "stt-raw-text"), RtviEvent::Other),
            (first(LLM_BOT, "bot-tts-started"), RtviEvent::Other),
        ] {
            assert_eq!(parse(line).unwrap(), event, "{line}");
        }
    }

    #[test]
    fn typed_chat_is_not_a_spoken_transcript() {
        let chat = r#"{"label": "rtvi-ai", "type": "user-input", "data": {"text": "hi", "input_type": "chat", "timestamp": "t", "final": true}}"#;
        assert_eq!(parse(chat).unwrap(), RtviEvent::Other);
    }

    #[test]
    fn malformed_messages_are_provider_errors_naming_the_problem() {
        for (json, says) in [
            ("not json", "not an RTVI message"),
            (r#"{"label": "other", "type": "x"}"#, "label 'other'"),
            (
                r#"{"label": "rtvi-ai", "type": "bot-llm-text", "data": {}}"#,
                "'bot-llm-text' message with bad data",
            ),
            (
                r#"{"label": "rtvi-ai", "type": "tts-raw-text", "data": {"text": 7}}"#,
                "'tts-raw-text' message with bad data",
            ),
            (
                r#"{"label": "rtvi-ai", "type": "bot-output", "data": {"spoken": true}}"#,
                "'bot-output' message with bad data",
            ),
            (
                r#"{"label": "rtvi-ai", "type": "bot-output", "data": {"text": "Hi.", "segment_id": "a"}}"#,
                "'bot-output' message with bad data",
            ),
        ] {
            let e = parse(json).unwrap_err();
            assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER);
            assert!(e.message().contains(says), "{}", e.message());
        }
    }

    #[test]
    fn unknown_messages_are_skipped() {
        let unknown = r#"{"label": "rtvi-ai", "type": "bot-llm-marker", "data": {"text": ""}}"#;
        assert_eq!(parse(unknown).unwrap(), RtviEvent::Other);
        let future = r#"{"label": "rtvi-ai", "type": "something-new"}"#;
        assert_eq!(parse(future).unwrap(), RtviEvent::Other);
    }

    #[test]
    fn client_ready_announces_the_protocol_version() {
        let v: Value = serde_json::from_str(&client_ready(7)).unwrap();
        assert_eq!(v["label"], "rtvi-ai");
        assert_eq!(v["type"], "client-ready");
        assert_eq!(v["id"], "7");
        assert_eq!(v["data"]["version"], PROTOCOL_VERSION);
    }
}
