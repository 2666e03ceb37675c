//! Built-in noise suppression (`audio.noise_suppression`): RNNoise (the `nnnoiseless` crate, pure
//! Rust) on every internal-rate frame, on the realtime thread, before the VAD.
//!
//! RNNoise takes 10 ms frames of 480 samples at 48 kHz (`f32` in the `i16` range). Each internal
//! frame is interpolated up to 48 kHz with the engine's exact-ratio FIR filters (×3 from 16 kHz;
//! ×2 then ×3 from 8 kHz; ×2 from 24 kHz), goes through a fixed FIFO that hands RNNoise whole
//! 480-sample frames, and comes back down through the matching decimators. Every buffer, the
//! RNNoise state and the filters' state are allocated by [`NoiseSuppressor::new`]; nothing is
//! allocated or locked per frame.
//!
//! Latency (see [`NoiseSuppressor::latency_ms`]): RNNoise's overlap-add gives out each 10 ms frame
//! one frame later (10 ms), the FIR filters add their group delays (1.98 ms at 16 kHz, 5.92 ms at
//! 8 kHz, whose ×2 and 2:1 steps run at 16 kHz), and a frame length that is not a multiple of 480
//! samples at 48 kHz would add the FIFO's priming, `480 − gcd(frame, 480)` samples; every frame
//! the engine allows (10/20/30 ms at 8 or 16 kHz) is a multiple, so that term is 0 in practice:
//! 12.0 ms in all at 16 kHz, 15.9 ms at 8 kHz. The filters pass 0–0.406 of the internal rate
//! (0–6.5 kHz at 16 kHz) flat; the band above it is attenuated on the way.
//!
//! One caveat of the crate: its FFT (easyfft) keeps its plans and scratch buffers in
//! thread-local maps that it fills on a thread's first frame and never frees. A thread that will
//! run suppressors calls [`prepare_thread`] once before its realtime work, so that this first
//! frame's allocations happen there. The tables outlive the thread: about 20 KB each time a
//! thread first runs a suppressor (RSS +22 KB a thread over 300 threads, against +0–3.5 KB for
//! idle ones: `measure_memory_kept_per_thread` in tests/noise_suppression.rs). With a realtime
//! thread per session (`audio.realtime_threads` 0) that is 20 KB for every session that ends;
//! with the pool, 20 KB per pool thread once.

use std::sync::OnceLock;

use nnnoiseless::{DenoiseState, RnnModel};

use crate::dsp::decimate::Decimator;
use crate::dsp::interpolate::Interpolator;

/// RNNoise's rate.
pub const RNNOISE_RATE: u32 = 48_000;
/// Samples of one RNNoise frame (10 ms at 48 kHz).
pub const RNNOISE_FRAME: usize = DenoiseState::FRAME_SIZE;

/// The RNNoise weights, shared by every session (read-only).
fn model() -> &'static RnnModel {
    static MODEL: OnceLock<RnnModel> = OnceLock::new();
    MODEL.get_or_init(RnnModel::default)
}

/// Fills the calling thread's FFT plans and scratch buffers (see the module's caveat). Not
/// realtime-safe: call it once on a thread before the realtime work that runs suppressors.
pub fn prepare_thread() {
    let mut state = DenoiseState::with_model(model());
    let input = [0.0f32; RNNOISE_FRAME];
    let mut output = [0.0f32; RNNOISE_FRAME];
    state.process_frame(&mut output, &input);
}

/// The rates between `rate` and 48 kHz, upwards (at most two exact ×2/×3 steps), or `None` when
/// 48 kHz is no such multiple of `rate`.
fn steps_to_48k(rate: u32) -> Option<Vec<u32>> {
    let mut rates = vec![rate];
    let mut current = rate;
    while current < RNNOISE_RATE {
        let factor = RNNOISE_RATE.checked_div(current)?;
        let step = if factor % 2 == 0 && factor != 3 {
            2
        } else if factor % 3 == 0 {
            3
        } else {
            return None;
        };
        current *= step;
        rates.push(current);
    }
    (current == RNNOISE_RATE && rates.len() <= 3).then_some(rates)
}

/// One session's noise suppressor for frames of a fixed length at one internal rate. Realtime
/// thread only, once built.
pub struct NoiseSuppressor {
    state: Box<DenoiseState<'static>>,
    /// Interpolators up to 48 kHz, in order.
    up: Vec<Interpolator>,
    /// Decimators back down, in order.
    down: Vec<Decimator>,
    /// Samples of one frame at 48 kHz.
    frame_48k: usize,
    /// 48 kHz input not yet denoised (less than one RNNoise frame between calls).
    fifo_in: Box<[f32]>,
    in_len: usize,
    /// Denoised 48 kHz samples not yet taken (primed with silence when frames are not multiples
    /// of 480 samples).
    fifo_out: Box<[f32]>,
    out_len: usize,
    /// Priming of `fifo_out`, in 48 kHz samples.
    priming: usize,
    /// One frame at 48 kHz, as `i16`, for the decimators.
    scratch: Box<[i16]>,
    /// The denoised frame at the internal rate.
    output: Box<[i16]>,
    latency_ms: f64,
}

impl NoiseSuppressor {
    /// A suppressor for frames of `frame_len` samples at `rate`, or `None` unless 48 kHz is
    /// `rate` times 2, 3, 4, 6 or 9 (8, 16 and 24 kHz are; so is 48 kHz itself). Allocates
    /// everything it will use. Control side.
    pub fn new(rate: u32, frame_len: usize) -> Option<Self> {
        let rates = steps_to_48k(rate)?;
        let frame_len = frame_len.max(1);
        let mut up = Vec::new();
        let mut down = Vec::new();
        let mut latency_s = RNNOISE_FRAME as f64 / f64::from(RNNOISE_RATE);
        let mut chunk = frame_len;
        for pair in rates.windows(2) {
            let interpolator = Interpolator::new(pair[0], pair[1], chunk)?;
            latency_s += interpolator.delay_output_samples() / f64::from(pair[1]);
            up.push(interpolator);
            chunk *= (pair[1] / pair[0]) as usize;
        }
        let frame_48k = chunk;
        for pair in rates.windows(2).rev() {
            let decimator = Decimator::new(pair[1], pair[0], chunk)?;
            latency_s += decimator.delay_input_samples() / f64::from(pair[1]);
            down.push(decimator);
            chunk /= (pair[1] / pair[0]) as usize;
        }
        let priming = RNNOISE_FRAME - gcd(frame_48k, RNNOISE_FRAME);
        latency_s += priming as f64 / f64::from(RNNOISE_RATE);
        Some(NoiseSuppressor {
            state: DenoiseState::with_model(model()),
            up,
            down,
            frame_48k,
            fifo_in: vec![0.0; RNNOISE_FRAME - 1 + frame_48k].into_boxed_slice(),
            in_len: 0,
            fifo_out: vec![0.0; priming + frame_48k + RNNOISE_FRAME].into_boxed_slice(),
            out_len: priming,
            priming,
            scratch: vec![0; frame_48k].into_boxed_slice(),
            output: vec![0; frame_len].into_boxed_slice(),
            latency_ms: latency_s * 1000.0,
        })
    }

    /// The delay from a sound in the input to the same sound in the output, in ms.
    pub fn latency_ms(&self) -> f64 {
        self.latency_ms
    }

    /// The FIFO's share of [`NoiseSuppressor::latency_ms`], in 48 kHz samples (0 when frames are
    /// multiples of 10 ms).
    pub fn priming_samples(&self) -> usize {
        self.priming
    }

    /// Denoises one frame (`frame.len()` must be the length given to `new`; a shorter frame is
    /// treated as ending in silence, a longer one is cut) and returns the denoised frame, delayed
    /// by [`NoiseSuppressor::latency_ms`]. Realtime-safe: no allocation, no lock.
    pub fn process(&mut self, frame: &[i16]) -> &[i16] {
        let n = self.output.len();
        // Up to 48 kHz, into the input FIFO.
        let mut upsampled: &[i16] = &frame[..frame.len().min(n)];
        for interpolator in &mut self.up {
            upsampled = interpolator.process(upsampled);
        }
        let take = upsampled.len().min(self.frame_48k);
        for (dst, &src) in self.fifo_in[self.in_len..self.in_len + take]
            .iter_mut()
            .zip(upsampled)
        {
            *dst = f32::from(src);
        }
        // A short frame: silence for the rest, so that the geometry holds.
        self.fifo_in[self.in_len + take..self.in_len + self.frame_48k].fill(0.0);
        self.in_len += self.frame_48k;

        // Whole RNNoise frames through the model, into the output FIFO.
        let mut start = 0;
        while self.in_len - start >= RNNOISE_FRAME {
            let input = &self.fifo_in[start..start + RNNOISE_FRAME];
            let output = &mut self.fifo_out[self.out_len..self.out_len + RNNOISE_FRAME];
            self.state.process_frame(output, input);
            self.out_len += RNNOISE_FRAME;
            start += RNNOISE_FRAME;
        }
        self.fifo_in.copy_within(start..self.in_len, 0);
        self.in_len -= start;

        // One frame's worth out of the output FIFO (the priming guarantees it is there), down to
        // the internal rate.
        for (dst, &src) in self
            .scratch
            .iter_mut()
            .zip(&self.fifo_out[..self.frame_48k])
        {
            *dst = src.round().clamp(-32768.0, 32767.0) as i16;
        }
        self.fifo_out.copy_within(self.frame_48k..self.out_len, 0);
        self.out_len -= self.frame_48k;
        let mut downsampled: &[i16] = &self.scratch;
        for decimator in &mut self.down {
            downsampled = decimator.process(downsampled);
        }
        let m = downsampled.len().min(n);
        self.output[..m].copy_from_slice(&downsampled[..m]);
        self.output[m..].fill(0);
        &self.output
    }

    /// The frame [`NoiseSuppressor::process`] returned last.
    pub fn output(&self) -> &[i16] {
        &self.output
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_to_48k_are_exact_factors_of_two_and_three() {
        assert_eq!(steps_to_48k(16_000), Some(vec![16_000, 48_000]));
        assert_eq!(steps_to_48k(8_000), Some(vec![8_000, 16_000, 48_000]));
        assert_eq!(steps_to_48k(24_000), Some(vec![24_000, 48_000]));
        assert_eq!(steps_to_48k(48_000), Some(vec![48_000]));
        assert_eq!(steps_to_48k(44_100), None);
        assert_eq!(steps_to_48k(0), None);
        assert!(NoiseSuppressor::new(44_100, 441).is_none());
    }

    #[test]
    fn latency_is_rnnoise_frame_plus_the_filters() {
        let at_16k = NoiseSuppressor::new(16_000, 320).unwrap();
        assert_eq!(at_16k.priming_samples(), 0);
        assert!(
            (at_16k.latency_ms() - 11.98).abs() < 0.05,
            "{}",
            at_16k.latency_ms()
        );
        let at_8k = NoiseSuppressor::new(8_000, 80).unwrap();
        assert_eq!(at_8k.priming_samples(), 0);
        assert!(
            (at_8k.latency_ms() - 15.92).abs() < 0.05,
            "{}",
            at_8k.latency_ms()
        );
        // 25 ms at 16 kHz is 1200 samples at 48 kHz: 240 samples (5 ms) of priming.
        let odd = NoiseSuppressor::new(16_000, 400).unwrap();
        assert_eq!(odd.priming_samples(), 240);
        assert!(
            (odd.latency_ms() - 16.98).abs() < 0.05,
            "{}",
            odd.latency_ms()
        );
    }

    #[test]
    fn every_geometry_returns_whole_frames_and_silence_stays_silent() {
        for (rate, frame) in [
            (8_000, 80),
            (8_000, 240),
            (16_000, 160),
            (16_000, 320),
            (16_000, 480),
            (16_000, 400),
            (24_000, 480),
            (48_000, 333),
        ] {
            let mut ns = NoiseSuppressor::new(rate, frame).unwrap();
            for _ in 0..50 {
                let out = ns.process(&vec![0; frame]);
                assert_eq!(out.len(), frame, "{rate} Hz, {frame}");
                assert!(out.iter().all(|&s| s == 0), "{rate} Hz, {frame}");
            }
        }
    }
}
