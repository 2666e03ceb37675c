//! What the agent tells the room besides its voice, in the conventions LiveKit's own frontends
//! read (so that captions and the agent's state show with no glue):
//!
//! - transcripts of both sides as *text streams* on topic `lk.transcription` — a header, the
//!   text, a trailer, as `DataPacket`s on the publisher's `_reliable` channel — with attributes
//!   `lk.segment_id` (one per user turn or reply), `lk.transcribed_track_id` (the track the words
//!   were spoken on) and `lk.transcription_final`;
//! - the agent's state in its participant attribute `lk.agent.state`.

use std::collections::HashMap;

use livekit_protocol as proto;
use prost::Message as _;
use proto::data_stream::{self, header::ContentHeader};

use crate::event::VbSessionState;

/// The topic LiveKit's frontends read transcripts from.
pub const TRANSCRIPTION_TOPIC: &str = "lk.transcription";

/// One transcript segment to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript<'a> {
    /// The same for every update of one segment (partials, then the final).
    pub segment_id: &'a str,
    /// The track the words were spoken on.
    pub track_sid: &'a str,
    /// Whether this is the segment's last word.
    pub is_final: bool,
    /// The text.
    pub text: &'a str,
}

/// The three `DataPacket`s (header, chunk, trailer) of one text stream carrying `transcript`,
/// from the participant `identity`, encoded. `stream_id` must be unique per stream; `now_ms` is
/// the sender's clock.
pub fn transcript_stream(
    identity: &str,
    stream_id: &str,
    now_ms: i64,
    transcript: &Transcript,
) -> [Vec<u8>; 3] {
    let attributes = HashMap::from([
        ("lk.segment_id".to_owned(), transcript.segment_id.to_owned()),
        (
            "lk.transcribed_track_id".to_owned(),
            transcript.track_sid.to_owned(),
        ),
        (
            "lk.transcription_final".to_owned(),
            transcript.is_final.to_string(),
        ),
    ]);
    let packet = |value| proto::DataPacket {
        participant_identity: identity.to_owned(),
        value: Some(value),
        ..proto::DataPacket::default()
    };
    let header = data_stream::Header {
        stream_id: stream_id.to_owned(),
        timestamp: now_ms,
        topic: TRANSCRIPTION_TOPIC.to_owned(),
        mime_type: "text/plain".to_owned(),
        total_length: Some(transcript.text.len() as u64),
        attributes: attributes.clone(),
        content_header: Some(ContentHeader::TextHeader(data_stream::TextHeader {
            operation_type: data_stream::OperationType::Create as i32,
            ..data_stream::TextHeader::default()
        })),
        ..data_stream::Header::default()
    };
    let chunk = data_stream::Chunk {
        stream_id: stream_id.to_owned(),
        chunk_index: 0,
        content: transcript.text.as_bytes().to_vec(),
        ..data_stream::Chunk::default()
    };
    let trailer = data_stream::Trailer {
        stream_id: stream_id.to_owned(),
        reason: String::new(),
        attributes,
    };
    [
        packet(proto::data_packet::Value::StreamHeader(header)).encode_to_vec(),
        packet(proto::data_packet::Value::StreamChunk(chunk)).encode_to_vec(),
        packet(proto::data_packet::Value::StreamTrailer(trailer)).encode_to_vec(),
    ]
}

/// The `lk.agent.state` value of a session state (`None`: nothing to show).
pub fn agent_state(state: VbSessionState) -> Option<&'static str> {
    match state {
        VbSessionState::VB_STATE_IDLE => Some("initializing"),
        VbSessionState::VB_STATE_LISTENING => Some("listening"),
        VbSessionState::VB_STATE_PROCESSING => Some("thinking"),
        VbSessionState::VB_STATE_SPEAKING => Some("speaking"),
        VbSessionState::VB_STATE_STOPPED | VbSessionState::VB_STATE_ERROR => None,
    }
}

/// What the room should learn from one session event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Encoded `DataPacket`s for the publisher's `_reliable` channel, in order.
    Data(Vec<Vec<u8>>),
    /// The agent's new `lk.agent.state`.
    State(&'static str),
}

/// Turns the session's events into captions and states for the room.
#[derive(Debug, Default)]
pub struct Captions {
    identity: String,
    /// The segment of the user's turn being transcribed (partials so far), if any.
    user_segment: Option<String>,
    segments: u64,
    streams: u64,
    state: Option<&'static str>,
}

impl Captions {
    /// Captions sent as the participant `identity`.
    pub fn new(identity: &str) -> Captions {
        Captions {
            identity: identity.to_owned(),
            ..Captions::default()
        }
    }

    /// What to tell the room about `event`: the user's partial and final transcripts (on
    /// `user_track`), the agent's reply (on `agent_track`), state changes.
    pub fn on_event(
        &mut self,
        event: &crate::event::Event,
        now_ms: i64,
        user_track: Option<&str>,
        agent_track: Option<&str>,
    ) -> Option<Outgoing> {
        use crate::event::VbEventKind as K;
        match event.kind {
            K::VB_EVENT_TRANSCRIPT_PARTIAL | K::VB_EVENT_TRANSCRIPT_FINAL => {
                let text = event.text.as_deref().unwrap_or_default();
                let is_final = event.kind == K::VB_EVENT_TRANSCRIPT_FINAL;
                let segment = match self.user_segment.clone() {
                    Some(segment) => segment,
                    None => self.new_segment("user"),
                };
                self.user_segment = (!is_final).then(|| segment.clone());
                if text.trim().is_empty() && is_final {
                    return None; // nothing was heard
                }
                Some(self.stream(
                    now_ms,
                    &segment,
                    user_track.unwrap_or_default(),
                    is_final,
                    text,
                ))
            }
            K::VB_EVENT_AGENT_RESPONSE => {
                let text = event.text.as_deref().unwrap_or_default();
                let segment = self.new_segment("agent");
                Some(self.stream(
                    now_ms,
                    &segment,
                    agent_track.unwrap_or_default(),
                    true,
                    text,
                ))
            }
            K::VB_EVENT_STATE_CHANGED => {
                let state = agent_state(event.state)?;
                if self.state == Some(state) {
                    return None;
                }
                self.state = Some(state);
                Some(Outgoing::State(state))
            }
            _ => None,
        }
    }

    fn new_segment(&mut self, who: &str) -> String {
        self.segments += 1;
        format!("{who}-{}", self.segments)
    }

    fn stream(
        &mut self,
        now_ms: i64,
        segment_id: &str,
        track_sid: &str,
        is_final: bool,
        text: &str,
    ) -> Outgoing {
        self.streams += 1;
        let stream_id = format!("{}-{}-{}", self.identity, now_ms, self.streams);
        let packets = transcript_stream(
            &self.identity,
            &stream_id,
            now_ms,
            &Transcript {
                segment_id,
                track_sid,
                is_final,
                text,
            },
        );
        Outgoing::Data(packets.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_is_a_text_stream_with_livekits_attributes() {
        let [header, chunk, trailer] = transcript_stream(
            "agent",
            "s1",
            7,
            &Transcript {
                segment_id: "seg",
                track_sid: "TR_x",
                is_final: true,
                text: "hello there",
            },
        );
        let decode = |b: &[u8]| proto::DataPacket::decode(b).unwrap();
        let Some(proto::data_packet::Value::StreamHeader(h)) = decode(&header).value else {
            panic!("a header first");
        };
        assert_eq!(
            (h.topic.as_str(), h.stream_id.as_str()),
            ("lk.transcription", "s1")
        );
        assert_eq!(h.attributes["lk.transcribed_track_id"], "TR_x");
        assert_eq!(h.attributes["lk.transcription_final"], "true");
        let Some(proto::data_packet::Value::StreamChunk(c)) = decode(&chunk).value else {
            panic!("then the text");
        };
        assert_eq!(c.content, b"hello there");
        let packet = decode(&trailer);
        assert_eq!(packet.participant_identity, "agent");
        assert!(matches!(
            packet.value,
            Some(proto::data_packet::Value::StreamTrailer(_))
        ));
    }

    #[test]
    fn a_users_partials_and_final_share_one_segment_and_states_are_sent_once() {
        use crate::event::{Event, VbEventKind as K};
        let mut captions = Captions::new("agent");
        let event = |kind, text: &str| {
            Event::new(kind, 0, VbSessionState::VB_STATE_LISTENING).with_text(text)
        };
        let segment_of = |out: Option<Outgoing>| match out {
            Some(Outgoing::Data(packets)) => {
                let Some(proto::data_packet::Value::StreamHeader(h)) =
                    proto::DataPacket::decode(&packets[0][..]).unwrap().value
                else {
                    panic!("a header");
                };
                (
                    h.attributes["lk.segment_id"].clone(),
                    h.attributes["lk.transcription_final"].clone(),
                )
            }
            other => panic!("{other:?}"),
        };
        let first = segment_of(captions.on_event(
            &event(K::VB_EVENT_TRANSCRIPT_PARTIAL, "hel"),
            1,
            Some("TR_u"),
            None,
        ));
        let last = segment_of(captions.on_event(
            &event(K::VB_EVENT_TRANSCRIPT_FINAL, "hello"),
            2,
            Some("TR_u"),
            None,
        ));
        assert_eq!(first.0, last.0);
        assert_eq!((first.1.as_str(), last.1.as_str()), ("false", "true"));
        let reply = segment_of(captions.on_event(
            &event(K::VB_EVENT_AGENT_RESPONSE, "hi"),
            3,
            None,
            Some("TR_a"),
        ));
        assert_ne!(reply.0, last.0);
        let speaking = Event::new(
            K::VB_EVENT_STATE_CHANGED,
            4,
            VbSessionState::VB_STATE_SPEAKING,
        );
        assert_eq!(
            captions.on_event(&speaking, 4, None, None),
            Some(Outgoing::State("speaking"))
        );
        assert_eq!(captions.on_event(&speaking, 5, None, None), None);
    }

    #[test]
    fn states_map_to_livekits_agent_states() {
        assert_eq!(
            agent_state(VbSessionState::VB_STATE_PROCESSING),
            Some("thinking")
        );
        assert_eq!(agent_state(VbSessionState::VB_STATE_STOPPED), None);
    }
}
