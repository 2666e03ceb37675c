//! Smart Turn v3 (ONNX): the probability that a user's turn is complete, from the last 8 s of
//! its audio as Whisper log-mel features (80 mels × 800 frames), computed as Pipecat's
//! `LocalSmartTurnAnalyzerV3` does (`_whisper_features.py`: the audio left-padded with zeros to
//! 8 s, normalized to zero mean and unit variance, reflect-padded at both ends, the last frame
//! dropped). Inference-pool threads only.

use std::path::Path;
use std::sync::Arc;

use ort::session::Session;
use ort::value::TensorRef;
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use crate::dsp::mel::{HOP_LENGTH, MelFilters, N_FFT, SAMPLE_RATE, hann_window};
use crate::error::{Error, Result};

/// Samples the model sees: 8 s at 16 kHz.
pub const SAMPLES: usize = 8 * SAMPLE_RATE as usize;
/// Mel bins.
pub const N_MELS: usize = 80;
/// Feature frames.
pub const FRAMES: usize = 800;

/// Computes the model's input features; reuses its buffers.
pub struct Features {
    filters: MelFilters,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    audio: Vec<f32>,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    power: Vec<f32>,
}

impl Default for Features {
    fn default() -> Self {
        Self::new()
    }
}

impl Features {
    /// Plans the FFT and builds the filterbank.
    pub fn new() -> Features {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let window = hann_window(N_FFT);
        Features {
            filters: MelFilters::slaney(SAMPLE_RATE, N_FFT, N_MELS),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            frame: fft.make_input_vec(),
            fft,
            window,
            audio: vec![0.0; SAMPLES],
            power: vec![0.0; N_FFT / 2 + 1],
        }
    }

    /// Writes the `N_MELS × FRAMES` features (row-major, mel bin then frame) of `pcm` (16 kHz;
    /// only its last 8 s count) into `out`.
    pub fn compute(&mut self, pcm: &[i16], out: &mut [f32]) {
        assert_eq!(out.len(), N_MELS * FRAMES);
        let pcm = &pcm[pcm.len().saturating_sub(SAMPLES)..];
        let pad = SAMPLES - pcm.len();
        self.audio[..pad].fill(0.0);
        for (a, &s) in self.audio[pad..].iter_mut().zip(pcm) {
            *a = f32::from(s) / 32768.0;
        }
        let n = SAMPLES as f64;
        let mean = self.audio.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = self
            .audio
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        let scale = 1.0 / (var + 1e-7).sqrt();
        for a in self.audio.iter_mut() {
            *a = ((f64::from(*a) - mean) * scale) as f32;
        }
        let last = SAMPLES as isize - 1;
        let half = (N_FFT / 2) as isize;
        for t in 0..FRAMES {
            let centre = (t * HOP_LENGTH) as isize;
            for (j, (x, w)) in self.frame.iter_mut().zip(&self.window).enumerate() {
                let mut i = centre - half + j as isize;
                // numpy's "reflect" padding at both ends.
                if i < 0 {
                    i = -i;
                } else if i > last {
                    i = 2 * last - i;
                }
                *x = self.audio[i as usize] * w;
            }
            if self
                .fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
                .is_err()
            {
                // Unreachable: the buffers come from the plan itself.
                self.spectrum.fill(Complex::new(0.0, 0.0));
            }
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = c.norm_sqr();
            }
            self.filters.apply(&self.power, &mut out[t..], FRAMES);
        }
        let mut peak = f32::NEG_INFINITY;
        for v in out.iter_mut() {
            *v = v.max(1e-10).log10();
            peak = peak.max(*v);
        }
        let floor = peak - 8.0;
        for v in out.iter_mut() {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
    }
}

/// A loaded model.
pub struct SmartTurn {
    session: Session,
}

impl SmartTurn {
    /// Loads the model (one intra-op thread, as Pipecat's default `cpu_count=1`).
    pub fn load(path: &Path) -> Result<SmartTurn> {
        let session = super::runtime::open_session(path, "inference.smart_turn_model")?;
        Ok(SmartTurn { session })
    }

    /// The probability that each turn is complete; `features` holds `batch` feature blocks of
    /// [`Features::compute`] back to back.
    pub fn run(&mut self, features: &[f32], out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        let batch = features.len() / (N_MELS * FRAMES);
        if batch == 0 {
            return Ok(());
        }
        let failed = |e: ort::Error| Error::internal(format!("smart turn: {e}"));
        let input =
            TensorRef::from_array_view(([batch, N_MELS, FRAMES], features)).map_err(failed)?;
        let outputs = self
            .session
            .run(ort::inputs!["input_features" => input])
            .map_err(failed)?;
        let (_, probs) = outputs["logits"]
            .try_extract_tensor::<f32>()
            .map_err(failed)?;
        if probs.len() != batch {
            return Err(Error::internal("smart turn: unexpected output shape"));
        }
        out.extend_from_slice(probs);
        Ok(())
    }
}
