//! One WebSocket binary message from a Pipecat bot: a protobuf `Frame`, its audio as mono PCM,
//! and the RTVI JSON a message frame carries.
//!
//! Checks: no panic; refusals are `VB_ERR_PROVIDER` naming pipecat; a decoded frame encodes and
//! decodes back to the same frame; audio that converts has one sample per channel frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use voicebackend::provider::network::pipecat::{frames, rtvi};
use voicebackend::{Error, VbStatus};

fn refused_by_pipecat(e: &Error) {
    assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
    assert!(e.message().starts_with("pipecat: "), "{}", e.message());
}

fuzz_target!(|data: &[u8]| {
    let kind = match frames::decode(data) {
        Ok(kind) => kind,
        Err(e) => return refused_by_pipecat(&e),
    };
    let bytes = frames::Frame {
        frame: Some(kind.clone()),
    }
    .encode_to_vec();
    assert_eq!(frames::decode(&bytes).expect("re-encoded frame"), kind);
    match kind {
        frames::Kind::Audio(audio) => match audio.mono_pcm() {
            Ok((pcm, rate)) => {
                let channels = audio.num_channels.max(1) as usize;
                assert_eq!(pcm.len(), audio.audio.len() / (2 * channels));
                assert_eq!(rate, audio.sample_rate);
                assert_ne!(rate, 0);
            }
            Err(e) => refused_by_pipecat(&e),
        },
        frames::Kind::Message(message) => {
            if let Err(e) = rtvi::parse(&message.data) {
                refused_by_pipecat(&e);
            }
        }
        _ => {}
    }
});
