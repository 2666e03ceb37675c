//! A whole conversation through the Rust API on the test providers.
#![cfg(feature = "test-providers")]

mod common;

use common::*;
use voicebackend::{VbEventKind as K, VbSessionState as S};

#[test]
fn a_full_turn_goes_from_speech_to_reply_audio_at_the_host_rate() {
    let backend = test_backend("");
    let session = session_at(&backend, 48000);
    push_all(&session, &utterance(150.0, 1200, 48000), 48000);
    let events = events_until(&session, |e| e.kind == K::VB_EVENT_TURN_METRICS);
    println!("{:#?}", kinds(&events));
    let finals = texts(&events, K::VB_EVENT_TRANSCRIPT_FINAL);
    assert_eq!(finals.len(), 1);
    assert!(finals[0].starts_with("pitch 150 hz for "), "{finals:?}");
    let reply = texts(&events, K::VB_EVENT_AGENT_RESPONSE);
    assert_eq!(reply, [format!("you said {}", finals[0])]);
    let metrics = events.last().unwrap().metrics;
    assert!(metrics.stt_final_us <= metrics.tts_first_audio_us);
    assert!(metrics.tts_first_audio_us <= metrics.first_output_audio_us);
    assert!(metrics.first_output_audio_us > 0);
    let _ = S::VB_STATE_SPEAKING;
}
