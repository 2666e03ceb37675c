//! Fuzzing entry (feature `fuzzing`): the server's messages through one reply's handling,
//! [`ReplyRun::on_text`], exactly as a connection hands them over.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{ElevenLabsTts, Flow, ReplyRun, WordChunker};
use crate::error::Result;
use crate::provider::ProviderSetup;
use crate::provider::tts::TtsRequest;

/// What one connection of a reply made of the server's messages.
#[derive(Debug)]
pub struct Outcome {
    /// The answer to each message: `"continue"`, `"finished"` or `"abandoned"`, or the error
    /// (which ends the reply in the library; here the next message is read anyway).
    pub answers: Vec<Result<&'static str>>,
    /// The audio handed on, every chunk joined.
    pub audio: Vec<i16>,
    /// Characters of the reply text sent.
    pub sent: usize,
    /// Characters whose audio has arrived, per the alignments.
    pub spoken: usize,
    /// Whether a byte of a sample split across messages is held back.
    pub odd_byte: bool,
}

/// Feeds `messages` (one text frame each) to a reply that has sent `sent_text` so far.
pub fn server_messages(sent_text: &str, messages: &[&str]) -> Outcome {
    let config = serde_json::json!({"api_key": "xi-fuzz-key", "voice_id": "fuzzvoice"});
    let tts = ElevenLabsTts::new(&ProviderSetup::new(&config)).expect("a valid configuration");
    let (_text_tx, text) = mpsc::unbounded_channel();
    // Room for every message's audio: a send never waits.
    let (audio, mut audio_rx) = mpsc::channel(messages.len().max(1));
    let mut run = ReplyRun {
        shared: Arc::clone(&tts.shared),
        request: TtsRequest { text, audio },
        text_open: true,
        words: WordChunker::default(),
        sent: sent_text.chars().collect(),
        spoken: 0,
        unaligned_audio: false,
        odd_byte: None,
    };
    let answers = messages
        .iter()
        .map(|m| {
            crate::fuzzing::block_on(run.on_text(m)).map(|flow| match flow {
                Flow::Continue => "continue",
                Flow::Finished => "finished",
                Flow::Abandoned => "abandoned",
            })
        })
        .collect();
    let mut pcm = Vec::new();
    while let Ok(chunk) = audio_rx.try_recv() {
        pcm.extend(chunk);
    }
    Outcome {
        answers,
        audio: pcm,
        sent: run.sent.len(),
        spoken: run.spoken,
        odd_byte: run.odd_byte.is_some(),
    }
}
