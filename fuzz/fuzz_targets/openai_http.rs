//! What an OpenAI-compatible HTTP server answers: the body of an error answer, a plain
//! transcription, and a streamed transcription (server-sent events) in pieces as the network
//! delivers them.
//!
//! Input: a mode byte. Mode 0: the HTTP status (u16 little-endian) and the error body. Mode 1: a
//! transcription body. Mode 2: a count of cuts (≤ 7), the cuts (u16 little-endian each: offsets
//! into the stream), then the event stream, delivered in the pieces the cuts make.
//!
//! Checks: no panic; an error never shows the API key and has the documented status; refusals of
//! answers are `VB_ERR_PROVIDER` naming openai; a stream gives the same events, partials and
//! transcript however it is cut into pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::fuzzing::openai::{
    KEY, answer_error, plain_transcription, sse_events, streamed_transcription,
};
use voicebackend::{Error, VbStatus};

fn outcome(result: &Option<Result<String, Error>>) -> Option<Result<String, (VbStatus, String)>> {
    result
        .as_ref()
        .map(|r| r.clone().map_err(|e| (e.status(), e.message().to_owned())))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            let Some((status, body)) = rest.split_first_chunk::<2>() else {
                return;
            };
            let status = u16::from_le_bytes(*status);
            let Some(e) = answer_error(status, body) else {
                return;
            };
            assert!(!e.message().contains(KEY), "the key in: {}", e.message());
            assert!(e.message().starts_with("openai: "), "{}", e.message());
            let expected = match status {
                401 | 403 => Some(VbStatus::VB_ERR_UNAUTHORIZED),
                500..=599 => Some(VbStatus::VB_ERR_CONNECTION_FAILED),
                429 => None, // rate limited (retried) or out of quota (not)
                _ => Some(VbStatus::VB_ERR_PROVIDER),
            };
            if let Some(expected) = expected {
                assert_eq!(e.status(), expected, "HTTP {status}: {}", e.message());
            }
        }
        1 => {
            if let Err(e) = plain_transcription(rest) {
                assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
                assert!(e.message().starts_with("openai: "), "{}", e.message());
            }
        }
        2 => {
            let Some((&cuts, rest)) = rest.split_first() else {
                return;
            };
            let cuts = usize::from(cuts % 8);
            if rest.len() < 2 * cuts {
                return;
            }
            let (offsets, stream) = rest.split_at(2 * cuts);
            let mut offsets: Vec<usize> = offsets
                .chunks_exact(2)
                .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])).min(stream.len()))
                .collect();
            offsets.sort_unstable();
            let mut pieces = Vec::new();
            let mut start = 0;
            for end in offsets.into_iter().chain([stream.len()]) {
                pieces.push(&stream[start..end]);
                start = end;
            }
            let whole = [stream];
            assert_eq!(
                sse_events(&pieces),
                sse_events(&whole),
                "events depend on how the stream was cut ({} pieces)",
                pieces.len()
            );
            let (partials, result) = streamed_transcription(&pieces);
            let (whole_partials, whole_result) = streamed_transcription(&whole);
            assert_eq!(partials, whole_partials);
            assert_eq!(outcome(&result), outcome(&whole_result));
            if let Some(Err(e)) = &result {
                assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
            }
        }
        _ => {}
    }
});
