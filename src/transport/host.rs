//! The host transport: audio enters through `process_audio` and leaves through `read_audio`.
//! Both calls are realtime-safe: wait-free ring copies, no allocation, no lock. Each end admits
//! one caller at a time; a second, concurrent caller gets an error instead of a data race.

use crate::error::{Error, Result, VbStatus};
use crate::rt::shared::{SpscCell, realtime_section};

use super::edge::{EdgeReader, EdgeWriter, PushOutcome};

/// The host's two audio endpoints of one session.
pub struct HostAudio {
    input: Option<SpscCell<EdgeWriter>>,
    output: SpscCell<Output>,
    /// Why `push` is refused when there is no input (a network transport feeds the session).
    no_input: &'static str,
}

enum Output {
    /// The session's out ring: the host plays the agent.
    Edge(EdgeReader),
    /// A copy of what a network transport played.
    Monitor(rtrb::Consumer<i16>),
}

impl HostAudio {
    /// The host pushes and reads the session's audio.
    pub fn new(writer: EdgeWriter, reader: EdgeReader) -> Self {
        HostAudio {
            input: Some(SpscCell::new(writer)),
            output: SpscCell::new(Output::Edge(reader)),
            no_input: "",
        }
    }

    /// A network transport carries the session's audio; the host may only read `monitor`, a
    /// copy of what the transport played. `push` fails with `why`.
    pub fn monitor_only(monitor: rtrb::Consumer<i16>, why: &'static str) -> Self {
        HostAudio {
            input: None,
            output: SpscCell::new(Output::Monitor(monitor)),
            no_input: why,
        }
    }

    /// Copies `pcm` into the input ring (see [`EdgeWriter::push`]). Realtime-safe.
    pub fn push(&self, pcm: &[i16]) -> Result<PushOutcome> {
        let input = self
            .input
            .as_ref()
            .ok_or_else(|| Error::invalid_state(self.no_input))?;
        realtime_section(|| input.with(|w| w.push(pcm)).ok_or_else(concurrent_call))
    }

    /// Samples `push` would take right now. Realtime-safe.
    pub fn writable(&self) -> usize {
        self.input
            .as_ref()
            .and_then(|input| input.with(|w| w.writable()))
            .unwrap_or(0)
    }

    /// Whether every pushed sample has been processed by the realtime thread.
    pub fn all_heard(&self) -> bool {
        self.input
            .as_ref()
            .is_none_or(|input| input.with(|w| w.buffered() == 0).unwrap_or(false))
    }

    /// Copies up to `out.len()` samples of the agent's audio into `out`; returns how many.
    /// Realtime-safe.
    pub fn read(&self, out: &mut [i16]) -> Result<usize> {
        realtime_section(|| {
            self.output
                .with(|output| match output {
                    Output::Edge(reader) => reader.read(out),
                    Output::Monitor(ring) => {
                        let n = out.len().min(ring.slots());
                        if let Ok(chunk) = ring.read_chunk(n) {
                            let (a, b) = chunk.as_slices();
                            out[..a.len()].copy_from_slice(a);
                            out[a.len()..n].copy_from_slice(b);
                            chunk.commit_all();
                        }
                        n
                    }
                })
                .ok_or_else(concurrent_call)
        })
    }
}

fn concurrent_call() -> Error {
    Error::new(
        VbStatus::VB_ERR_INVALID_STATE,
        "another thread is inside the same audio call of this session (one producer and one consumer at a time)",
    )
}
