//! Real Pipecat bots, replayed: the RTVI messages of `tests/pipecat/rtvi/` (see its README)
//! through [`BotOutput`], and what the host sees of them.

use super::bot_output::BotOutput;
use super::frames::{Kind, MessageFrame};
use crate::provider::S2sEvent;

/// pipecat-ai 1.14.0, a stand-in LLM streaming a two-sentence answer word by word; the bot
/// sends all six messages that carry reply text.
pub(super) const LLM_BOT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/pipecat/rtvi/llm-raw-text.jsonl"
));

/// pipecat-ai 1.14.0 without an LLM: the answer is a `TTSSpeakFrame`.
pub(super) const SPEAKING_BOT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/pipecat/rtvi/speak-raw-text.jsonl"
));

/// pipecat-ai 1.3.0 (RTVI protocol 1.4.0) without an LLM: `bot-output` with the v1 fields.
pub(super) const PIPECAT_1_3_SPEAKING_BOT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/pipecat/rtvi/speak-pipecat-1.3.jsonl"
));

/// The first message of type `kind` in `recording`.
pub(super) fn first(recording: &'static str, kind: &str) -> &'static str {
    let needle = format!(r#""type": "{kind}""#);
    recording
        .lines()
        .find(|line| line.contains(&needle))
        .unwrap_or_else(|| panic!("no {kind} in the recording"))
}

/// What the host sees of `recording` without the messages of the types in `without` (a bot
/// that does not send them): the user's transcripts, the reply text it gets and the message
/// that brought it out (`VB_EVENT_AGENT_RESPONSE` is published at the end of the reply's text or
/// of the reply, whichever comes first, as the session pipeline does), and the reply's end.
fn host_view(recording: &str, without: &[&str]) -> Vec<String> {
    let mut bot = BotOutput::default();
    let mut view = Vec::new();
    let mut text = String::new();
    let mut published = false;
    for line in recording.lines() {
        let message: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = message["type"].as_str().unwrap();
        if without.contains(&kind) {
            continue;
        }
        let frame = Kind::Message(MessageFrame {
            data: line.to_owned(),
        });
        let Some(event) = bot.on_frame(frame) else {
            continue;
        };
        let reply_ends = matches!(event, S2sEvent::ResponseDone);
        match event {
            S2sEvent::UserTranscript(t) => view.push(format!("transcript: {t}")),
            S2sEvent::ResponseText(piece) if published => {
                view.push(format!("text after the reply was published: {piece}"))
            }
            S2sEvent::ResponseText(piece) => text.push_str(&piece),
            S2sEvent::ResponseTextDone | S2sEvent::ResponseDone => {
                if !published && !text.is_empty() {
                    view.push(format!("reply at {kind}: {}", std::mem::take(&mut text)));
                    published = true;
                }
            }
            other => view.push(format!("{other:?} at {kind}")),
        }
        if reply_ends {
            view.push(format!("done at {kind}"));
            published = false;
        }
    }
    view
}

/// Messages of a bot whose LLM reports nothing (`bot_llm_enabled` off, no raw text).
const NO_LLM_MESSAGES: [&str; 5] = [
    "llm-raw-text",
    "bot-llm-started",
    "bot-llm-text",
    "bot-transcription",
    "bot-llm-stopped",
];

#[test]
fn an_llm_bot_gives_its_llm_text_once_and_each_other_message_stands_in_for_the_one_before() {
    let transcript = "transcript: No, I do not think so. Thank you very much.";
    let reply =
        |at: &str| format!("reply at {at}: You said: No, I do not think so. Thank you very much.");
    let done = "done at bot-stopped-speaking";
    let no_llm_text_and = |more: &[&'static str]| [&NO_LLM_MESSAGES[..], more].concat();
    // (message types left out, what the host sees). The bot sends all six messages that carry
    // the reply's words; each row leaves out the one the row above took the text from.
    let table: Vec<(Vec<&str>, Vec<String>)> = vec![
        // llm-raw-text, streamed word by word: complete at bot-llm-stopped, before the bot speaks.
        (
            vec![],
            vec![transcript.into(), reply("bot-llm-stopped"), done.into()],
        ),
        // Pipecat's default: bot-llm-text, the same chunks.
        (
            vec!["llm-raw-text"],
            vec![transcript.into(), reply("bot-llm-stopped"), done.into()],
        ),
        // bot-transcription: the same words, a sentence at a time.
        (
            vec!["llm-raw-text", "bot-llm-text"],
            vec![transcript.into(), reply("bot-llm-stopped"), done.into()],
        ),
        // An LLM that reports nothing (bot_llm_enabled off): bot-output, two segments, each
        // announced then completed; the text is whole once the bot stops speaking.
        (
            no_llm_text_and(&[]),
            vec![
                transcript.into(),
                reply("bot-stopped-speaking"),
                done.into(),
            ],
        ),
        // tts-raw-text, a sentence at a time.
        (
            no_llm_text_and(&["bot-output"]),
            vec![
                transcript.into(),
                reply("bot-stopped-speaking"),
                done.into(),
            ],
        ),
        // bot-tts-text, the same.
        (
            no_llm_text_and(&["bot-output", "tts-raw-text"]),
            vec![
                transcript.into(),
                reply("bot-stopped-speaking"),
                done.into(),
            ],
        ),
        // No message with the reply's words: no reply text (and, audio left out of the
        // recordings, no reply at all).
        (
            no_llm_text_and(&["bot-output", "tts-raw-text", "bot-tts-text"]),
            vec![transcript.into()],
        ),
    ];
    for (without, expected) in table {
        assert_eq!(
            host_view(LLM_BOT, &without),
            expected,
            "without {without:?}"
        );
    }
}

#[test]
fn a_bot_without_an_llm_gives_its_spoken_text_once_with_either_protocol_version() {
    let done = "done at bot-stopped-speaking";
    let v2 = (
        "transcript: I am fine, thank you, how are you?",
        "reply at bot-stopped-speaking: You said: I am fine, thank you, how are you?",
    );
    let v1 = (
        "transcript: No, I do not think so, thank you very much.",
        "reply at bot-stopped-speaking: You said: No, I do not think so, thank you very much.",
    );
    // (recording, message types left out, what the host sees).
    let table: Vec<(&str, Vec<&str>, [&str; 3])> = vec![
        // Protocol 2 (pipecat-ai 1.14.0): bot-output, one segment, new then completed; then
        // tts-raw-text and bot-tts-text with the same words.
        (SPEAKING_BOT, vec![], [v2.0, v2.1, done]),
        (SPEAKING_BOT, vec!["bot-output"], [v2.0, v2.1, done]),
        (
            SPEAKING_BOT,
            vec!["bot-output", "tts-raw-text"],
            [v2.0, v2.1, done],
        ),
        // Protocol 1 (pipecat-ai 1.3.0): bot-output spoken false, then spoken true; then
        // bot-tts-text.
        (PIPECAT_1_3_SPEAKING_BOT, vec![], [v1.0, v1.1, done]),
        (
            PIPECAT_1_3_SPEAKING_BOT,
            vec!["bot-output"],
            [v1.0, v1.1, done],
        ),
    ];
    for (recording, without, expected) in table {
        assert_eq!(
            host_view(recording, &without),
            expected,
            "without {without:?}"
        );
    }
}
