//! What a Pipecat bot sends a session: WebSocket binary messages, each a protobuf `Frame` (audio,
//! interruptions, RTVI JSON in message frames), through what the session's connection makes of
//! them (`BotOutput`: transcripts, the reply's text from whichever RTVI messages carry it, audio,
//! the end of replies), interleaved with the session's barge-ins, the wait for the bot to confirm
//! them running out, and lost connections.
//!
//! Input: records, each a u16 little-endian header — the top two bits the step (0: a message of
//! the low 14 bits' length follows, 1: barge-in, 2: confirmation timeout, 3: connection lost).
//!
//! Checks: no panic; every message that decodes re-encodes to the same frame, and audio that
//! converts has one sample per channel frame; refusals are `VB_ERR_PROVIDER` naming pipecat; each
//! barge-in is answered by one end of response, and nothing of the cancelled reply (audio, text,
//! its end) reaches the session until the bot confirms the interruption.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use voicebackend::fuzzing::pipecat::{Step, bot_messages};
use voicebackend::provider::S2sEvent;
use voicebackend::provider::network::pipecat::frames::{self, Kind};
use voicebackend::{Error, VbStatus};

fn refused_by_pipecat(e: &Error) {
    assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER, "{}", e.message());
    assert!(e.message().starts_with("pipecat: "), "{}", e.message());
}

fuzz_target!(|data: &[u8]| {
    let mut steps = Vec::new();
    let mut rest = data;
    while let Some((header, tail)) = rest.split_first_chunk::<2>() {
        let header = u16::from_le_bytes(*header);
        rest = tail;
        steps.push(match header >> 14 {
            0 => {
                let len = usize::from(header & 0x3fff).min(rest.len());
                let (message, tail) = rest.split_at(len);
                rest = tail;
                Step::Message(message)
            }
            1 => Step::Cancel,
            2 => Step::AckTimeout,
            _ => Step::ConnectionLost,
        });
        if steps.len() == 64 {
            break;
        }
    }
    // Each message on its own: decoding, re-encoding, audio.
    for step in &steps {
        let Step::Message(bytes) = step else {
            continue;
        };
        let kind = match frames::decode(bytes) {
            Ok(kind) => kind,
            Err(e) => {
                refused_by_pipecat(&e);
                continue;
            }
        };
        let again = frames::Frame {
            frame: Some(kind.clone()),
        }
        .encode_to_vec();
        assert_eq!(frames::decode(&again).expect("re-encoded frame"), kind);
        if let Kind::Audio(audio) = &kind {
            if let Ok((pcm, rate)) = audio.mono_pcm() {
                let channels = audio.num_channels.max(1) as usize;
                assert_eq!(pcm.len(), audio.audio.len() / (2 * channels));
                assert_eq!(rate, audio.sample_rate);
                assert_ne!(rate, 0);
            }
        }
    }
    // The conversation: what the session hears.
    let events = bot_messages(&steps);
    assert_eq!(events.len(), steps.len());
    let mut unconfirmed = 0u32;
    for (step, event) in steps.iter().zip(&events) {
        match step {
            Step::Cancel => {
                assert!(matches!(event, Some(S2sEvent::ResponseDone)), "{event:?}");
                unconfirmed += 1;
                continue;
            }
            Step::AckTimeout | Step::ConnectionLost => unconfirmed = 0,
            Step::Message(bytes) => {
                let confirms = matches!(frames::decode(bytes), Ok(Kind::Interruption(_)));
                if confirms && unconfirmed > 0 {
                    assert!(event.is_none(), "a confirmation became {event:?}");
                    unconfirmed -= 1;
                    continue;
                }
            }
        }
        match event {
            Some(S2sEvent::Error(e)) if matches!(step, Step::Message(_)) => refused_by_pipecat(e),
            Some(
                S2sEvent::AudioAtRate(..)
                | S2sEvent::ResponseText(_)
                | S2sEvent::ResponseTextDone
                | S2sEvent::ResponseDone
                | S2sEvent::Interrupted,
            ) if unconfirmed > 0 && matches!(step, Step::Message(_)) => {
                panic!("the cancelled reply went on: {event:?}")
            }
            _ => {}
        }
    }
});
