//! Fuzzing entry (feature `fuzzing`): what an OpenAI-compatible server answers, through the code
//! that reads it — an error answer's body, a plain transcription, and a streamed one (server-sent
//! events split into pieces as the network delivers them).

use std::sync::OnceLock;

use reqwest::StatusCode;
use tokio::sync::mpsc;

use super::super::sse::SseReader;
use super::{OpenAiStt, TranscriptionStream, transcription};
use crate::error::{Error, Result};
use crate::provider::ProviderSetup;
use crate::provider::stt::{SttResult, SttSink};

/// The API key of the endpoint these functions use: no error message may show it.
pub const KEY: &str = "sk-fuzz-0123456789abcdef";

/// One provider for every call (its HTTP client is costly to make).
fn stt() -> &'static OpenAiStt {
    static STT: OnceLock<OpenAiStt> = OnceLock::new();
    STT.get_or_init(|| {
        let config = serde_json::json!({"api_key": KEY, "base_url": "http://127.0.0.1:9"});
        OpenAiStt::new(&ProviderSetup::new(&config)).expect("a valid configuration")
    })
}

/// The error for an answer with HTTP `status` and `body`; `None` when `status` is not an HTTP
/// status code (100–999).
pub fn answer_error(status: u16, body: &[u8]) -> Option<Error> {
    let status = StatusCode::from_u16(status).ok()?;
    Some(stt().inner.endpoint.answer_error(status, body))
}

/// The transcript of a plain JSON answer.
pub fn plain_transcription(body: &[u8]) -> Result<String> {
    transcription(&stt().inner.endpoint, body)
}

/// The `data` of the events in a server-sent event stream that arrives in `pieces`.
pub fn sse_events(pieces: &[&[u8]]) -> Vec<String> {
    let mut reader = SseReader::default();
    pieces.iter().flat_map(|p| reader.push(p)).collect()
}

/// A streamed transcription arriving in `pieces`: the partials reported, and the transcript (or
/// the error) if the stream gave one before it ended.
pub fn streamed_transcription(pieces: &[&[u8]]) -> (Vec<String>, Option<Result<String>>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink = SttSink::new(1, tx);
    let mut stream = TranscriptionStream::default();
    let mut outcome = None;
    for piece in pieces {
        match stream.push(&stt().inner.endpoint, piece, &sink) {
            Ok(None) => {}
            Ok(Some(text)) => {
                outcome = Some(Ok(text));
                break;
            }
            Err(e) => {
                outcome = Some(Err(e));
                break;
            }
        }
    }
    let mut partials = Vec::new();
    while let Ok((_, SttResult::Partial(text))) = rx.try_recv() {
        partials.push(text);
    }
    (partials, outcome)
}
