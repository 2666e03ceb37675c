//! The host transport: audio enters through `process_audio` and leaves through `read_audio` — or,
//! with the session's `input_codec` / `output_codec` `"opus"`, as Opus packets through
//! `process_opus` and `read_opus` ([`super::host_opus`]). All four calls are realtime-safe:
//! wait-free ring copies and codec work in preallocated state, no allocation, no lock. Each end
//! admits one caller at a time (the PCM and the Opus call of one side share it); a second,
//! concurrent caller gets an error instead of a data race.

use std::time::Instant;

use crate::error::{Error, Result, VbStatus};
use crate::rt::shared::{SpscCell, realtime_section};

use super::edge::{EdgeReader, EdgeWriter, PushOutcome};
use super::host_opus::{OpusInput, OpusOutput, OpusRefusal};

/// The host's two audio endpoints of one session.
pub struct HostAudio {
    input: Option<SpscCell<Input>>,
    output: SpscCell<Output>,
    /// Why `push` is refused when there is no input (a network transport feeds the session).
    no_input: &'static str,
}

/// The input end: the ring's writer, behind a decoder when the host sends Opus.
struct Input {
    writer: EdgeWriter,
    opus: Option<OpusInput>,
}

/// The output end: where the agent's audio comes from, and the encoder when the host reads Opus.
struct Output {
    source: Source,
    opus: Option<OpusOutput>,
}

enum Source {
    /// The session's out ring: the host plays the agent.
    Edge(EdgeReader),
    /// A copy of what a network transport played.
    Monitor(rtrb::Consumer<i16>),
}

impl Source {
    fn read(&mut self, out: &mut [i16]) -> usize {
        match self {
            Source::Edge(reader) => reader.read(out),
            Source::Monitor(ring) => {
                let n = out.len().min(ring.slots());
                if let Ok(chunk) = ring.read_chunk(n) {
                    let (a, b) = chunk.as_slices();
                    out[..a.len()].copy_from_slice(a);
                    out[a.len()..n].copy_from_slice(b);
                    chunk.commit_all();
                }
                n
            }
        }
    }
}

// Why a call does not fit the session's codecs.
const PCM_IN_ON_OPUS: &str = "process_audio: this session's input_codec is \"opus\": send its audio as packets with vb_session_process_opus";
const OPUS_IN_ON_PCM: &str = "process_opus: this session's input_codec is \"pcm\" (set input_codec to \"opus\" in the session configuration to send Opus packets)";
const PCM_OUT_ON_OPUS: &str = "read_audio: this session's output_codec is \"opus\": read its audio as packets with vb_session_read_opus";
const OPUS_OUT_ON_PCM: &str = "read_opus: this session's output_codec is \"pcm\" (set output_codec to \"opus\" in the session configuration to read Opus packets)";

impl HostAudio {
    /// The host pushes and reads the session's audio as PCM.
    pub fn new(writer: EdgeWriter, reader: EdgeReader) -> Self {
        Self::with_codecs(writer, reader, None, None)
    }

    /// The host pushes and reads the session's audio: as PCM, or through `opus_in` / `opus_out`
    /// when given (then only the Opus call of that side works).
    pub fn with_codecs(
        writer: EdgeWriter,
        reader: EdgeReader,
        opus_in: Option<OpusInput>,
        opus_out: Option<OpusOutput>,
    ) -> Self {
        HostAudio {
            input: Some(SpscCell::new(Input {
                writer,
                opus: opus_in,
            })),
            output: SpscCell::new(Output {
                source: Source::Edge(reader),
                opus: opus_out,
            }),
            no_input: "",
        }
    }

    /// A network transport carries the session's audio; the host may only read `monitor`, a
    /// copy of what the transport played. `push` fails with `why`.
    pub fn monitor_only(monitor: rtrb::Consumer<i16>, why: &'static str) -> Self {
        HostAudio {
            input: None,
            output: SpscCell::new(Output {
                source: Source::Monitor(monitor),
                opus: None,
            }),
            no_input: why,
        }
    }

    /// Copies `pcm` into the input ring (see [`EdgeWriter::push`]). Realtime-safe.
    pub fn push(&self, pcm: &[i16]) -> Result<PushOutcome> {
        let input = self
            .input
            .as_ref()
            .ok_or_else(|| Error::invalid_state(self.no_input))?;
        realtime_section(|| {
            input
                .with(|input| match input.opus {
                    Some(_) => Err(Error::invalid_state(PCM_IN_ON_OPUS)),
                    None => Ok(input.writer.push(pcm)),
                })
                .unwrap_or_else(|| Err(concurrent_call()))
        })
    }

    /// Decodes one Opus packet (`None`: conceals a lost one) and copies its audio into the input
    /// ring like [`HostAudio::push`]. The inner error is a packet that did not decode (nothing
    /// was queued). Realtime-safe.
    pub fn push_opus(&self, packet: Option<&[u8]>) -> Result<Result<PushOutcome, OpusRefusal>> {
        let input = self
            .input
            .as_ref()
            .ok_or_else(|| Error::invalid_state(OPUS_IN_ON_PCM))?;
        realtime_section(|| {
            input
                .with(|input| match &mut input.opus {
                    Some(opus) => Ok(opus.decode(packet).map(|pcm| input.writer.push(pcm))),
                    None => Err(Error::invalid_state(OPUS_IN_ON_PCM)),
                })
                .unwrap_or_else(|| Err(concurrent_call()))
        })
    }

    /// Samples `push` would take right now. Realtime-safe.
    pub fn writable(&self) -> usize {
        self.input
            .as_ref()
            .and_then(|input| input.with(|input| input.writer.writable()))
            .unwrap_or(0)
    }

    /// Whether every pushed sample has been processed by the realtime thread.
    pub fn all_heard(&self) -> bool {
        self.input.as_ref().is_none_or(|input| {
            input
                .with(|input| input.writer.buffered() == 0)
                .unwrap_or(false)
        })
    }

    /// Copies up to `out.len()` samples of the agent's audio into `out`; returns how many.
    /// Realtime-safe.
    pub fn read(&self, out: &mut [i16]) -> Result<usize> {
        realtime_section(|| {
            self.output
                .with(|output| match output.opus {
                    Some(_) => Err(Error::invalid_state(PCM_OUT_ON_OPUS)),
                    None => Ok(output.source.read(out)),
                })
                .unwrap_or_else(|| Err(concurrent_call()))
        })
    }

    /// Writes the next 20 ms Opus packet of the agent's audio into `buf`; returns its length, 0
    /// when no whole frame is ready (see [`OpusOutput::read`]). The inner error is a packet that
    /// does not fit in `buf` (kept for the next call). Realtime-safe.
    pub fn read_opus(&self, buf: &mut [u8]) -> Result<Result<usize, OpusRefusal>> {
        realtime_section(|| {
            self.output
                .with(|output| match &mut output.opus {
                    Some(opus) => {
                        let source = &mut output.source;
                        Ok(opus.read(|out| source.read(out), Instant::now(), buf))
                    }
                    None => Err(Error::invalid_state(OPUS_OUT_ON_PCM)),
                })
                .unwrap_or_else(|| Err(concurrent_call()))
        })
    }
}

fn concurrent_call() -> Error {
    Error::new(
        VbStatus::VB_ERR_INVALID_STATE,
        "another thread is inside the same audio call of this session (one producer and one consumer at a time)",
    )
}
