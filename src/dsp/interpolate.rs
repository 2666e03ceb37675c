//! Exact-ratio interpolation (1:2 and 1:3) with the decimators' filters, for reply audio on the
//! I/O side: 24 kHz TTS → 48 kHz, 16 kHz → 48 kHz or 32 kHz, 8 kHz → 24 or 16 kHz.
//!
//! An L-times interpolator inserts L − 1 zeros between input samples and low-passes at the input's
//! Nyquist frequency; in polyphase form each output sample is the dot product of one of L
//! branches of the filter (every L-th tap, times L) with the last `taps / L` input samples, so it
//! costs `taps / L` multiply-adds per output sample and no multiplication by the zeros. The
//! filters are [`super::decimate`]'s (passband 0–0.406 of the input rate within ±0.25 dB, images
//! above half the input rate attenuated by ≥ 68 dB); group delay `(taps − 1) / 2` output samples:
//! 0.99 ms for 16 → 48 kHz, 0.66 ms for 24 → 48 kHz.

use super::decimate::{Kernel, run, taps_for};

/// Taps per branch: 96 / 3 and 64 / 2.
const BRANCH: usize = 32;

/// Converts one rate to an exact multiple of it (×2 or ×3) without allocating after
/// construction. Each call takes up to `max_chunk` samples and returns `factor` times as many.
pub struct Interpolator {
    factor: usize,
    /// The branches, each reversed (oldest input first) and scaled by the factor, one after the
    /// other.
    branches: Box<[i16]>,
    /// The last `BRANCH − 1` input samples, then room for one chunk.
    buf: Box<[i16]>,
    max_chunk: usize,
    /// One branch's outputs for a chunk.
    scratch: Box<[i16]>,
    out: Box<[i16]>,
    kernel: Kernel,
}

impl Interpolator {
    /// An interpolator from `from_rate` to `to_rate` for chunks of up to `max_chunk` samples, or
    /// `None` unless `to_rate` is exactly 2 or 3 times `from_rate`.
    pub fn new(from_rate: u32, to_rate: u32, max_chunk: usize) -> Option<Interpolator> {
        if from_rate == 0 || to_rate % from_rate != 0 {
            return None;
        }
        let factor = (to_rate / from_rate) as usize;
        let taps = taps_for(factor)?;
        debug_assert_eq!(taps.len(), BRANCH * factor);
        let mut branches = vec![0i16; taps.len()].into_boxed_slice();
        for p in 0..factor {
            for i in 0..BRANCH {
                // Output L·m + p = Σ_j h[p + L·j] · L · x[m − j]; the window is oldest first.
                let tap = taps[p + factor * (BRANCH - 1 - i)];
                branches[p * BRANCH + i] = tap * factor as i16;
            }
        }
        let max_chunk = max_chunk.max(1);
        Some(Interpolator {
            factor,
            branches,
            buf: vec![0; BRANCH - 1 + max_chunk].into_boxed_slice(),
            max_chunk,
            scratch: vec![0; max_chunk].into_boxed_slice(),
            out: vec![0; max_chunk * factor].into_boxed_slice(),
            kernel: Kernel::best(),
        })
    }

    /// The group delay in output samples (`(taps − 1) / 2`).
    pub fn delay_output_samples(&self) -> f64 {
        (BRANCH * self.factor - 1) as f64 / 2.0
    }

    /// Upper bound of the samples one call returns.
    pub fn max_output(&self) -> usize {
        self.out.len()
    }

    /// Converts `input` (at most `max_chunk` samples; more are ignored) into `factor` times as
    /// many samples. No allocation.
    pub fn process(&mut self, input: &[i16]) -> &[i16] {
        let history = BRANCH - 1;
        let n = input.len().min(self.max_chunk);
        self.buf[history..history + n].copy_from_slice(&input[..n]);
        for p in 0..self.factor {
            let branch: &[i16; BRANCH] = match self.branches[p * BRANCH..][..BRANCH].try_into() {
                Ok(branch) => branch,
                Err(_) => return &[],
            };
            run::<BRANCH>(self.kernel, branch, &self.buf, 0, 1, &mut self.scratch[..n]);
            for (m, &y) in self.scratch[..n].iter().enumerate() {
                self.out[m * self.factor + p] = y;
            }
        }
        self.buf.copy_within(n..n + history, 0);
        &self.out[..n * self.factor]
    }

    #[cfg(test)]
    fn branches(&self) -> &[i16] {
        &self.branches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, amplitude: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amplitude * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate)).sin()) as i16
            })
            .collect()
    }

    fn rms(y: &[i16]) -> f64 {
        (y.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / y.len() as f64).sqrt()
    }

    #[test]
    fn branches_cannot_overflow_the_accumulator() {
        for (from, to) in [(16000, 48000), (24000, 48000)] {
            let i = Interpolator::new(from, to, 480).unwrap();
            for branch in i.branches().chunks(BRANCH) {
                // As for the decimator's tables: |acc| ≤ l1 · 2^15 < 2^31 − 2^13.
                let l1: i32 = branch.iter().map(|&t| i32::from(t).abs()).sum();
                assert!(l1 < 1 << 16, "{from} -> {to}: {l1}");
            }
        }
    }

    #[test]
    fn passband_is_flat_and_images_are_rejected() {
        // 1 s of a tone at the input rate, converted in 10 ms chunks; the first 100 ms skipped.
        for (from, to) in [(16000u32, 48000u32), (24000, 48000), (8000, 16000)] {
            let mut worst_pass: f64 = 0.0;
            let mut worst_image = f64::MAX;
            let top = f64::from(from) * 0.40625;
            for k in 1..=20 {
                let hz = top * f64::from(k) / 20.0;
                let input = tone(from, hz, 10000.0, from as usize);
                let mut i = Interpolator::new(from, to, from as usize / 100).unwrap();
                let mut out = Vec::new();
                for chunk in input.chunks(from as usize / 100) {
                    out.extend_from_slice(i.process(chunk));
                }
                assert_eq!(out.len(), input.len() * (to / from) as usize);
                let steady = &out[to as usize / 10..];
                let gain = 20.0 * (rms(steady) / (10000.0 / 2f64.sqrt())).log10();
                worst_pass = worst_pass.max(gain.abs());
                // Everything but the tone itself is image (or noise): remove the tone by
                // least squares (the 2×2 normal equations: the window need not hold whole
                // cycles) and measure what is left.
                let w = |j: usize| std::f64::consts::TAU * hz * j as f64 / f64::from(to);
                let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for (j, &y) in steady.iter().enumerate() {
                    let (s, c) = w(j).sin_cos();
                    ss += s * s;
                    sc += s * c;
                    cc += c * c;
                    ys += f64::from(y) * s;
                    yc += f64::from(y) * c;
                }
                let det = ss * cc - sc * sc;
                let (a, b) = ((ys * cc - yc * sc) / det, (yc * ss - ys * sc) / det);
                let n = steady.len() as f64;
                let residue: f64 = steady
                    .iter()
                    .enumerate()
                    .map(|(j, &y)| {
                        let (s, c) = w(j).sin_cos();
                        (f64::from(y) - a * s - b * c).powi(2)
                    })
                    .sum::<f64>()
                    / n;
                let image_db = 20.0 * (10000.0 / 2f64.sqrt() / residue.sqrt()).log10();
                worst_image = worst_image.min(image_db);
            }
            println!(
                "{from} -> {to}: passband 0-{top} Hz within ±{worst_pass:.3} dB, images and noise {worst_image:.1} dB down"
            );
            assert!(worst_pass <= 0.3, "{from} -> {to}: {worst_pass} dB");
            assert!(worst_image >= 60.0, "{from} -> {to}: {worst_image} dB");
        }
    }

    #[test]
    fn delay_is_half_the_filter() {
        let i = Interpolator::new(16000, 48000, 160).unwrap();
        assert_eq!(i.delay_output_samples(), 47.5);
        assert!(Interpolator::new(16000, 44100, 160).is_none());
        assert!(Interpolator::new(48000, 16000, 160).is_none());
    }
}
