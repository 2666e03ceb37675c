//! Silero VAD v5 (ONNX): the speech probability of each 512-sample window at 16 kHz, given the
//! 64 samples before it and a recurrent state of 2 × 128 values per stream. Windows of many
//! streams (sessions) run as one batch. Inference-pool threads only.

use std::path::Path;

use ort::session::Session;
use ort::value::TensorRef;

use crate::error::{Error, Result};

/// Samples in one window (32 ms at 16 kHz).
pub const WINDOW: usize = 512;
/// Samples of the previous window fed before each window.
pub const CONTEXT: usize = 64;
/// Values of one stream's recurrent state (2 × 128).
pub const STATE: usize = 2 * 128;

/// One stream's memory between windows.
#[derive(Clone)]
pub struct SileroStream {
    /// The recurrent state, `[2][128]`.
    pub state: [f32; STATE],
    /// The last [`CONTEXT`] samples of the previous window.
    pub context: [f32; CONTEXT],
}

impl Default for SileroStream {
    fn default() -> Self {
        SileroStream {
            state: [0.0; STATE],
            context: [0.0; CONTEXT],
        }
    }
}

/// A loaded model plus the batch buffers it reuses.
pub struct Silero {
    session: Session,
    input: Vec<f32>,
    state: Vec<f32>,
}

impl Silero {
    /// Loads the model (one intra-op thread: the pool's threads are the parallelism).
    pub fn load(path: &Path) -> Result<Silero> {
        let session = super::runtime::open_session(path, "inference.silero_model")?;
        Ok(Silero {
            session,
            input: Vec::new(),
            state: Vec::new(),
        })
    }

    /// Runs one window of each stream: `windows[i]` (float samples in [-1, 1]) with
    /// `streams[i]`, whose state and context move on; returns the probabilities in `out`.
    pub fn run(
        &mut self,
        windows: &[&[f32; WINDOW]],
        streams: &mut [&mut SileroStream],
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let batch = windows.len();
        out.clear();
        if batch == 0 {
            return Ok(());
        }
        self.input.clear();
        for (w, s) in windows.iter().zip(streams.iter()) {
            self.input.extend_from_slice(&s.context);
            self.input.extend_from_slice(&w[..]);
        }
        // State layout [2, batch, 128]: the first half of every stream, then the second halves.
        self.state.clear();
        for half in 0..2 {
            for s in streams.iter() {
                self.state
                    .extend_from_slice(&s.state[half * 128..(half + 1) * 128]);
            }
        }
        let failed = |e: ort::Error| Error::internal(format!("silero vad: {e}"));
        let input = TensorRef::from_array_view(([batch, CONTEXT + WINDOW], &self.input[..]))
            .map_err(failed)?;
        let state =
            TensorRef::from_array_view(([2, batch, 128], &self.state[..])).map_err(failed)?;
        let sr = ort::value::Tensor::from_array(((), vec![16000i64])).map_err(failed)?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => input, "state" => state, "sr" => sr])
            .map_err(failed)?;
        let (_, probs) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(failed)?;
        let (_, next) = outputs["stateN"]
            .try_extract_tensor::<f32>()
            .map_err(failed)?;
        if probs.len() != batch || next.len() != 2 * batch * 128 {
            return Err(Error::internal("silero vad: unexpected output shape"));
        }
        out.extend_from_slice(probs);
        for (i, (w, s)) in windows.iter().zip(streams.iter_mut()).enumerate() {
            for half in 0..2 {
                let from = (half * batch + i) * 128;
                s.state[half * 128..(half + 1) * 128].copy_from_slice(&next[from..from + 128]);
            }
            s.context.copy_from_slice(&w[WINDOW - CONTEXT..]);
        }
        Ok(())
    }
}
