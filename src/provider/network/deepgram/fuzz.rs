//! Fuzzing entry (feature `fuzzing`; the tests use it too): the server's messages through one
//! turn's result handling, [`TurnRun::on_text`], exactly as a connection hands them over.

use tokio::sync::mpsc;

use super::{DeepgramStt, TurnRun};
use crate::error::Result;
use crate::provider::ProviderSetup;
use crate::provider::stt::{SttResult, SttSink, speech_ring};

/// What one connection of a turn made of the server's messages.
#[derive(Debug)]
pub struct Outcome {
    /// The answer to each message (an error ends the turn in the library; here the next message
    /// is read anyway, to reach more states).
    pub answers: Vec<Result<()>>,
    /// The turn's final segments.
    pub finals: Vec<String>,
    /// Samples of the turn's audio covered by final results.
    pub covered: usize,
    /// The partial transcripts reported, in order.
    pub partials: Vec<String>,
}

/// Feeds `messages` (one text frame each) to a turn at `rate` whose audio holds `audio_len`
/// samples, of which `base` were covered when the connection opened (`base` is capped at
/// `audio_len`, as the library keeps it).
pub fn server_messages(
    messages: &[&str],
    rate: u32,
    audio_len: usize,
    base: usize,
    interim_results: bool,
) -> Outcome {
    let config = serde_json::json!({"api_key": "dg-fuzz-key", "interim_results": interim_results});
    let stt = DeepgramStt::new(&ProviderSetup::new(&config)).expect("a valid configuration");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_writer, audio_rx) = speech_ring(1);
    let base = base.min(audio_len);
    let mut run = TurnRun {
        url: stt.url(rate),
        rate,
        audio_rx,
        fresh: Vec::new(),
        audio_open: true,
        audio: vec![0; audio_len],
        finals: Vec::new(),
        covered: base,
        last_partial: String::new(),
        sink: SttSink::new(1, tx),
        shared: stt.shared.clone(),
    };
    let answers = messages.iter().map(|m| run.on_text(m, base)).collect();
    let mut partials = Vec::new();
    while let Ok((_, result)) = rx.try_recv() {
        if let SttResult::Partial(text) = result {
            partials.push(text);
        }
    }
    Outcome {
        answers,
        finals: run.finals,
        covered: run.covered,
        partials,
    }
}
