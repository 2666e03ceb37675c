//! What the agent tells a LiveKit room besides its voice: the session's events as captions
//! (`lk.transcription` text streams: header, chunk, trailer `DataPacket`s) and `lk.agent.state`.
//! The texts are transcripts and replies, so they come from speech, a server or a model.
//!
//! Input: the agent's identity on the first line, then one event per line: a kind byte, a state
//! byte, a byte whose low bit says whether the user's and agent's tracks are known, the text.
//!
//! Checks: no panic; every caption is three packets from the agent that decode, with one stream
//! id, LiveKit's topic and attributes, the whole text in the chunk and its length in the header;
//! a user's partials and their final share one segment, a new turn gets a new one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livekit_protocol as proto;
use prost::Message;
use proto::data_packet::Value;
use voicebackend::event::{Event, VbEventKind, VbSessionState};
use voicebackend::transport::livekit::data::{
    Captions, Outgoing, TRANSCRIPTION_TOPIC, agent_state,
};

const KINDS: [VbEventKind; 5] = [
    VbEventKind::VB_EVENT_TRANSCRIPT_PARTIAL,
    VbEventKind::VB_EVENT_TRANSCRIPT_FINAL,
    VbEventKind::VB_EVENT_AGENT_RESPONSE,
    VbEventKind::VB_EVENT_STATE_CHANGED,
    VbEventKind::VB_EVENT_SPEECH_STARTED,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let identity = lines.next().unwrap_or_default();
    let mut captions = Captions::new(identity);
    let mut user_segment: Option<String> = None;
    let mut segments = std::collections::HashSet::new();
    for (i, line) in lines.enumerate() {
        let bytes = line.as_bytes();
        if bytes.len() < 3 || !line.is_char_boundary(3) {
            continue;
        }
        let kind = KINDS[usize::from(bytes[0]) % KINDS.len()];
        let state = VbSessionState::from_u8(bytes[1] % 6);
        let tracks = bytes[2] & 1 == 1;
        let words = &line[3..];
        let event = Event::new(kind, i as u64 * 20_000, state).with_text(words);
        let now_ms = 1_700_000_000_000 + i as i64 * 20;
        let (user_track, agent_track) = if tracks {
            (Some("TR_user"), Some("TR_agent"))
        } else {
            (None, None)
        };
        match captions.on_event(&event, now_ms, user_track, agent_track) {
            None => {}
            Some(Outgoing::State(shown)) => assert_eq!(agent_state(state), Some(shown)),
            Some(Outgoing::Data(packets)) => {
                assert_eq!(packets.len(), 3);
                let decoded: Vec<proto::DataPacket> = packets
                    .iter()
                    .map(|p| proto::DataPacket::decode(&p[..]).expect("a packet we encoded"))
                    .collect();
                assert!(decoded.iter().all(|p| p.participant_identity == identity));
                let Some(Value::StreamHeader(header)) = &decoded[0].value else {
                    panic!("the first packet is not a header");
                };
                let Some(Value::StreamChunk(chunk)) = &decoded[1].value else {
                    panic!("the second packet is not a chunk");
                };
                let Some(Value::StreamTrailer(trailer)) = &decoded[2].value else {
                    panic!("the third packet is not a trailer");
                };
                assert_eq!(header.topic, TRANSCRIPTION_TOPIC);
                assert_eq!(chunk.stream_id, header.stream_id);
                assert_eq!(trailer.stream_id, header.stream_id);
                assert_eq!(chunk.content, words.as_bytes());
                assert_eq!(header.total_length, Some(words.len() as u64));
                let is_final = kind != VbEventKind::VB_EVENT_TRANSCRIPT_PARTIAL;
                let attribute = |name: &str| header.attributes.get(name).map(String::as_str);
                assert_eq!(
                    attribute("lk.transcription_final"),
                    Some(if is_final { "true" } else { "false" })
                );
                let segment = attribute("lk.segment_id").expect("a segment id").to_owned();
                if kind == VbEventKind::VB_EVENT_AGENT_RESPONSE {
                    assert!(segments.insert(segment), "an agent segment id used twice");
                } else {
                    match &user_segment {
                        Some(open) => assert_eq!(&segment, open, "a turn's segment changed"),
                        None => assert!(segments.insert(segment.clone()), "a segment id reused"),
                    }
                    user_segment = (!is_final).then_some(segment);
                }
            }
        }
        if kind == VbEventKind::VB_EVENT_TRANSCRIPT_FINAL {
            user_segment = None; // ended, even when nothing was heard (no caption then)
        }
    }
});
