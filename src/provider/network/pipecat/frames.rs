//! Pipecat's wire format: one protobuf `Frame` per WebSocket binary message.
//!
//! Hand-written prost messages matching `pipecat/frames/frames.proto` of pipecat-ai 1.14.0
//! (package `pipecat`, the schema its `ProtobufFrameSerializer` uses), field numbers as there:
//!
//! ```text
//! message TextFrame          { uint64 id = 1; string name = 2; string text = 3; }
//! message AudioRawFrame      { uint64 id = 1; string name = 2; bytes audio = 3;
//!                              uint32 sample_rate = 4; uint32 num_channels = 5; optional uint64 pts = 6; }
//! message TranscriptionFrame { uint64 id = 1; string name = 2; string text = 3;
//!                              string user_id = 4; string timestamp = 5; }
//! message MessageFrame       { string data = 1; }          // a JSON transport message (RTVI)
//! message InterruptionFrame  { uint64 id = 1; string name = 2; }
//! message Frame { oneof frame { TextFrame text = 1; AudioRawFrame audio = 2;
//!                 TranscriptionFrame transcription = 3; MessageFrame message = 4;
//!                 InterruptionFrame interruption = 5; } }
//! ```
//!
//! Audio is 16-bit signed little-endian PCM, channels interleaved. Pure data: runs on whichever
//! thread calls it (the session's I/O task).

use prost::Message as _;

use crate::error::{Error, Result};

/// `pipecat.TextFrame`: text pushed through a pipeline.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TextFrame {
    /// Frame id on the sender's side.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Frame name on the sender's side.
    #[prost(string, tag = "2")]
    pub name: String,
    /// The text.
    #[prost(string, tag = "3")]
    pub text: String,
}

/// `pipecat.AudioRawFrame`: a chunk of PCM audio.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AudioRawFrame {
    /// Frame id on the sender's side.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Frame name on the sender's side.
    #[prost(string, tag = "2")]
    pub name: String,
    /// 16-bit signed little-endian PCM, channels interleaved.
    #[prost(bytes = "vec", tag = "3")]
    pub audio: Vec<u8>,
    /// Samples per second (per channel).
    #[prost(uint32, tag = "4")]
    pub sample_rate: u32,
    /// Interleaved channels.
    #[prost(uint32, tag = "5")]
    pub num_channels: u32,
    /// Presentation timestamp, when the sender sets one.
    #[prost(uint64, optional, tag = "6")]
    pub pts: Option<u64>,
}

/// `pipecat.TranscriptionFrame`: what an STT service heard.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TranscriptionFrame {
    /// Frame id on the sender's side.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Frame name on the sender's side.
    #[prost(string, tag = "2")]
    pub name: String,
    /// The transcript.
    #[prost(string, tag = "3")]
    pub text: String,
    /// Who spoke.
    #[prost(string, tag = "4")]
    pub user_id: String,
    /// When (ISO 8601).
    #[prost(string, tag = "5")]
    pub timestamp: String,
}

/// `pipecat.MessageFrame`: a transport message, JSON in `data` (RTVI messages travel here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MessageFrame {
    /// The message as JSON text.
    #[prost(string, tag = "1")]
    pub data: String,
}

/// `pipecat.InterruptionFrame`: the sender stopped (or asks to stop) the bot's output.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InterruptionFrame {
    /// Frame id on the sender's side.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Frame name on the sender's side.
    #[prost(string, tag = "2")]
    pub name: String,
}

/// `pipecat.Frame`: what each WebSocket binary message holds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    /// The one frame carried.
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5")]
    pub frame: Option<Kind>,
}

/// The `oneof frame` of [`Frame`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// `text = 1`.
    #[prost(message, tag = "1")]
    Text(TextFrame),
    /// `audio = 2`.
    #[prost(message, tag = "2")]
    Audio(AudioRawFrame),
    /// `transcription = 3`.
    #[prost(message, tag = "3")]
    Transcription(TranscriptionFrame),
    /// `message = 4`.
    #[prost(message, tag = "4")]
    Message(MessageFrame),
    /// `interruption = 5`.
    #[prost(message, tag = "5")]
    Interruption(InterruptionFrame),
}

/// Encodes mono `pcm` at `sample_rate` as a `Frame { audio }`.
pub fn encode_audio(pcm: &[i16], sample_rate: u32) -> Vec<u8> {
    let audio = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    encode(Kind::Audio(AudioRawFrame {
        audio,
        sample_rate,
        num_channels: 1,
        ..AudioRawFrame::default()
    }))
}

/// Encodes a `Frame { interruption }` (asks the bot to stop its output).
pub fn encode_interruption() -> Vec<u8> {
    encode(Kind::Interruption(InterruptionFrame::default()))
}

/// Encodes a `Frame { message }` carrying `json`.
pub fn encode_message(json: String) -> Vec<u8> {
    encode(Kind::Message(MessageFrame { data: json }))
}

fn encode(kind: Kind) -> Vec<u8> {
    Frame { frame: Some(kind) }.encode_to_vec()
}

/// Decodes one WebSocket binary message. A message that is not a `Frame`, or a `Frame` with no
/// field of the oneof set (a frame kind newer than this schema), is `VB_ERR_PROVIDER`.
pub fn decode(bytes: &[u8]) -> Result<Kind> {
    let frame = Frame::decode(bytes).map_err(|e| {
        Error::provider(
            "pipecat",
            format!(
                "a {}-byte message from the bot is not a Pipecat frame: {e}",
                bytes.len()
            ),
        )
    })?;
    frame.frame.ok_or_else(|| {
        Error::provider(
            "pipecat",
            "a frame from the bot carries none of the frame kinds of frames.proto",
        )
    })
}

impl AudioRawFrame {
    /// The audio as mono samples (channels averaged) and its rate. Odd byte counts, a zero
    /// rate or zero channels are `VB_ERR_PROVIDER`.
    pub fn mono_pcm(&self) -> Result<(Vec<i16>, u32)> {
        let channels = self.num_channels.max(1) as usize;
        if self.sample_rate == 0 {
            return Err(Error::provider(
                "pipecat",
                "an audio frame from the bot has sample_rate 0",
            ));
        }
        if self.audio.len() % (2 * channels) != 0 {
            return Err(Error::provider(
                "pipecat",
                format!(
                    "an audio frame from the bot has {} bytes, not whole 16-bit samples of {channels} channel(s)",
                    self.audio.len()
                ),
            ));
        }
        let samples = self
            .audio
            .chunks_exact(2)
            .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])));
        let pcm = if channels == 1 {
            samples.map(|s| s as i16).collect()
        } else {
            let all: Vec<i32> = samples.collect();
            all.chunks_exact(channels)
                .map(|frame| (frame.iter().sum::<i32>() / channels as i32) as i16)
                .collect()
        };
        Ok((pcm, self.sample_rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VbStatus;

    #[test]
    fn audio_round_trips_with_the_field_numbers_of_frames_proto() {
        let bytes = encode_audio(&[1, -2, 300], 16000);
        // Frame.audio is field 2 (length-delimited): tag byte (2 << 3) | 2.
        assert_eq!(bytes[0], 0x12);
        let Kind::Audio(frame) = decode(&bytes).unwrap() else {
            panic!("not audio")
        };
        // AudioRawFrame.audio = 3, sample_rate = 4, num_channels = 5.
        assert_eq!(frame.audio, vec![1, 0, 0xfe, 0xff, 0x2c, 0x01]);
        assert_eq!((frame.sample_rate, frame.num_channels), (16000, 1));
        assert_eq!(frame.mono_pcm().unwrap(), (vec![1, -2, 300], 16000));
    }

    #[test]
    fn interruption_and_message_use_fields_5_and_4() {
        assert_eq!(encode_interruption(), vec![0x2a, 0x00]);
        let bytes = encode_message("{}".into());
        assert_eq!(bytes, vec![0x22, 0x04, 0x0a, 0x02, b'{', b'}']);
        assert_eq!(
            decode(&bytes).unwrap(),
            Kind::Message(MessageFrame { data: "{}".into() })
        );
    }

    #[test]
    fn stereo_audio_is_averaged_to_mono() {
        let frame = AudioRawFrame {
            audio: [100i16, 300, -50, -150]
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect(),
            sample_rate: 24000,
            num_channels: 2,
            ..AudioRawFrame::default()
        };
        assert_eq!(frame.mono_pcm().unwrap(), (vec![200, -100], 24000));
    }

    #[test]
    fn garbage_and_empty_frames_are_provider_errors() {
        let e = decode(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER);
        assert!(
            e.message().contains("not a Pipecat frame"),
            "{}",
            e.message()
        );
        let e = decode(&[]).unwrap_err();
        assert!(
            e.message().contains("none of the frame kinds"),
            "{}",
            e.message()
        );
        let odd = AudioRawFrame {
            audio: vec![1, 2, 3],
            sample_rate: 16000,
            num_channels: 1,
            ..AudioRawFrame::default()
        };
        assert_eq!(
            odd.mono_pcm().unwrap_err().status(),
            VbStatus::VB_ERR_PROVIDER
        );
    }
}
