//! RTVI, the JSON message protocol Pipecat bots speak to their clients inside `MessageFrame`s
//! (`{"label": "rtvi-ai", "type": …, "id": …, "data": {…}}`; pipecat-ai 1.14.0 implements
//! protocol 2.2.0 in `pipecat/processors/frameworks/rtvi/models.py`).
//!
//! Only what a voice session needs is read: the user's turns and transcripts, the bot's reply
//! text, when the bot stops speaking and the errors it reports. Other messages (`bot-ready`, metrics,
//! `bot-output`, …) are recognised as RTVI and skipped. Pure data: runs on the calling thread.

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
    /// `bot-llm-text`: a piece of the bot's reply text.
    ReplyText(String),
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
        "bot-llm-text" => {
            let t: Text = serde_json::from_value(envelope.data).map_err(data(kind))?;
            RtviEvent::ReplyText(t.text)
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
        _ => RtviEvent::Other,
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
        let text = r#"{"label": "rtvi-ai", "type": "bot-llm-text", "data": {"text": "You said: Hello there."}}"#;
        assert_eq!(
            parse(text).unwrap(),
            RtviEvent::ReplyText("You said: Hello there.".into())
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
        ] {
            let e = parse(json).unwrap_err();
            assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER);
            assert!(e.message().contains(says), "{}", e.message());
        }
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
