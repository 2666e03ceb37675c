//! Whisper's input features (the embedded Whisper STT and the Smart Turn model use them): the log-mel spectrogram (16 kHz, `n_fft` 400, hop 160, Hann window,
//! centred frames with reflect padding) over a Slaney-style mel filterbank, computed as OpenAI's
//! `whisper.audio.log_mel_spectrogram` and `librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`
//! do, for as many frames as the caller asks (the encoder may take fewer than 3000).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// Sample rate Whisper expects.
pub const SAMPLE_RATE: u32 = 16_000;
/// FFT size (25 ms).
pub const N_FFT: usize = 400;
/// Hop between frames (10 ms).
pub const HOP_LENGTH: usize = 160;
/// Frames in Whisper's 30-second window.
pub const N_FRAMES: usize = 3000;

/// Hz per mel below 1 kHz on the Slaney scale.
const F_SP: f64 = 200.0 / 3.0;
/// Where the Slaney scale turns logarithmic.
const MIN_LOG_HZ: f64 = 1000.0;

/// The mel at 1 kHz and the mel step per natural-log unit of Hz above it.
fn slaney_log_part() -> (f64, f64) {
    (MIN_LOG_HZ / F_SP, 6.4f64.ln() / 27.0)
}

/// Hz → mel on the Slaney scale (linear below 1 kHz, logarithmic above), as librosa with
/// `htk=False`.
fn hz_to_mel(hz: f64) -> f64 {
    let (min_log_mel, logstep) = slaney_log_part();
    if hz >= MIN_LOG_HZ {
        min_log_mel + (hz / MIN_LOG_HZ).ln() / logstep
    } else {
        hz / F_SP
    }
}

/// Mel → Hz, the inverse of [`hz_to_mel`].
fn mel_to_hz(mel: f64) -> f64 {
    let (min_log_mel, logstep) = slaney_log_part();
    if mel >= min_log_mel {
        MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

/// A mel filterbank: `n_mels` triangular filters over the `n_fft / 2 + 1` FFT bins, stored
/// densely (row-major, one row per filter) with each row's non-zero range for fast application.
#[derive(Debug, Clone)]
pub struct MelFilters {
    n_mels: usize,
    n_bins: usize,
    weights: Vec<f32>,
    ranges: Vec<(usize, usize)>,
}

impl MelFilters {
    /// The Slaney-normalised filterbank of `librosa.filters.mel(sr, n_fft, n_mels)` with
    /// `fmin = 0`, `fmax = sr / 2`, `htk = False`, `norm = "slaney"`.
    pub fn slaney(sample_rate: u32, n_fft: usize, n_mels: usize) -> MelFilters {
        let n_bins = n_fft / 2 + 1;
        let sr = f64::from(sample_rate);
        let fft_freqs: Vec<f64> = (0..n_bins).map(|k| k as f64 * sr / n_fft as f64).collect();
        let (mel_min, mel_max) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
        let mel_points: Vec<f64> = (0..n_mels + 2)
            .map(|i| {
                let m = mel_min + (mel_max - mel_min) * i as f64 / (n_mels + 1) as f64;
                mel_to_hz(m)
            })
            .collect();
        let mut weights = vec![0f32; n_mels * n_bins];
        let mut ranges = Vec::with_capacity(n_mels);
        for m in 0..n_mels {
            let (lo, centre, hi) = (mel_points[m], mel_points[m + 1], mel_points[m + 2]);
            let norm = 2.0 / (hi - lo);
            let row = &mut weights[m * n_bins..(m + 1) * n_bins];
            let (mut first, mut last) = (n_bins, 0);
            for (k, &f) in fft_freqs.iter().enumerate() {
                let lower = (f - lo) / (centre - lo);
                let upper = (hi - f) / (hi - centre);
                let w = lower.min(upper).max(0.0) * norm;
                if w > 0.0 {
                    row[k] = w as f32;
                    first = first.min(k);
                    last = k + 1;
                }
            }
            ranges.push(if first < last { (first, last) } else { (0, 0) });
        }
        MelFilters {
            n_mels,
            n_bins,
            weights,
            ranges,
        }
    }

    /// Number of filters (mel bins).
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Number of FFT bins each filter spans (`n_fft / 2 + 1`).
    pub fn n_bins(&self) -> usize {
        self.n_bins
    }

    /// The weights, `n_mels × n_bins`, row-major.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Applies the filterbank to one power spectrum (`n_bins` values), writing `n_mels` values
    /// spaced `stride` apart in `out`.
    pub fn apply(&self, power: &[f32], out: &mut [f32], stride: usize) {
        for (m, &(lo, hi)) in self.ranges.iter().enumerate() {
            let row = &self.weights[m * self.n_bins..(m + 1) * self.n_bins];
            let sum: f32 = row[lo..hi]
                .iter()
                .zip(&power[lo..hi])
                .map(|(w, p)| w * p)
                .sum();
            out[m * stride] = sum;
        }
    }
}

/// Computes log-mel spectrograms of 16 kHz audio for Whisper. Holds the FFT plan and window;
/// cheap to share.
pub struct MelSpectrogram {
    filters: MelFilters,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
}

/// `torch.hann_window(len)`, which is periodic: the window Whisper's features use.
pub fn hann_window(len: usize) -> Vec<f32> {
    (0..len)
        .map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / len as f64).cos()) as f32)
        .collect()
}

impl MelSpectrogram {
    /// A spectrogram with `n_mels` mel bins (80 for all but the large-v3 models).
    pub fn new(n_mels: usize) -> MelSpectrogram {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let window = hann_window(N_FFT);
        MelSpectrogram {
            filters: MelFilters::slaney(SAMPLE_RATE, N_FFT, n_mels),
            fft,
            window,
        }
    }

    /// The filterbank in use.
    pub fn filters(&self) -> &MelFilters {
        &self.filters
    }

    /// The log-mel spectrogram of `samples` (16 kHz, in [-1, 1]) followed by silence, for
    /// `n_frames` frames: `n_mels × n_frames` values, row-major (mel bin, then frame). Frame `t`
    /// is centred on sample `t × 160`, the start reflect-padded, as in OpenAI's implementation
    /// with `padding=N_SAMPLES`; values are `(max(log10(mel), peak − 8) + 4) / 4`.
    pub fn compute(&self, samples: &[f32], n_frames: usize) -> Vec<f32> {
        let n_mels = self.filters.n_mels;
        let mut out = vec![0f32; n_mels * n_frames];
        let mut frame = self.fft.make_input_vec();
        let mut spectrum: Vec<Complex<f32>> = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f32; self.filters.n_bins];
        let half = (N_FFT / 2) as isize;
        // The signal is `samples` then zeros; index -i reflects to i (numpy's "reflect" mode).
        let at = |i: isize| -> f32 {
            let i = i.unsigned_abs();
            samples.get(i).copied().unwrap_or(0.0)
        };
        let silent_from = samples.len() + N_FFT; // every frame centred past this is all zeros
        for t in 0..n_frames {
            let centre = (t * HOP_LENGTH) as isize;
            if t * HOP_LENGTH > silent_from {
                for m in 0..n_mels {
                    out[m * n_frames + t] = 0.0;
                }
                continue;
            }
            for (j, (x, w)) in frame.iter_mut().zip(&self.window).enumerate() {
                *x = at(centre - half + j as isize) * w;
            }
            if self
                .fft
                .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                .is_err()
            {
                // Unreachable: the buffers come from the plan itself.
                spectrum.fill(Complex::new(0.0, 0.0));
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            self.filters.apply(&power, &mut out[t..], n_frames);
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filterbank_has_whisper_shape_and_values() {
        let f = MelFilters::slaney(16_000, 400, 80);
        assert_eq!(f.n_mels(), 80);
        assert_eq!(f.n_bins(), 201);
        assert_eq!(f.weights().len(), 80 * 201);
        assert!(f.weights().iter().all(|&w| w >= 0.0 && w.is_finite()));
        // Reference values from OpenAI's whisper/assets/mel_filters.npz (made with librosa).
        let w = |m: usize, k: usize| f.weights()[m * 201 + k];
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 + 1e-4 * b.abs();
        for (m, k, expected) in [
            (0, 1, 0.024_862_595),
            (1, 1, 0.001_990_822),
            (1, 2, 0.022_871_772),
            (10, 10, 0.019_908_218),
            (10, 11, 0.004_954_375),
            (40, 42, 0.005_411_105),
            (40, 43, 0.014_735_566),
            (40, 44, 0.006_518_19),
            (79, 186, 0.000_366_742),
            (79, 189, 0.001_765_727),
        ] {
            assert!(
                close(w(m, k), expected),
                "weight[{m}][{k}] = {} ≠ {expected}",
                w(m, k)
            );
        }
        // Non-zero ranges as in the reference.
        assert_eq!(f.ranges[0], (1, 2));
        assert_eq!(f.ranges[40], (42, 45));
        assert_eq!(f.ranges[79], (186, 200));
        // Bin 0 (DC) and the Nyquist bin are in no filter.
        assert!((0..80).all(|m| w(m, 0) == 0.0 && w(m, 200) == 0.0));
    }

    #[test]
    fn filterbank_rows_have_unit_area() {
        // Slaney normalisation makes each triangle's area in Hz one, so each row sums to about
        // 1 / bin width (40 Hz here); the reference ranges from 0.928 to 1.080 times that.
        let f = MelFilters::slaney(16_000, 400, 80);
        let mut total = 0.0f64;
        for m in 0..80 {
            let row: f64 = f.weights()[m * 201..(m + 1) * 201]
                .iter()
                .map(|&w| f64::from(w))
                .sum();
            let area = row * 40.0;
            assert!((0.92..1.09).contains(&area), "row {m}: area {area}");
            total += row;
        }
        // Reference total: 1.9990242.
        assert!((total - 1.999_024_2).abs() < 1e-4, "total {total}");
        // Filter centres increase: each row's peak bin is at or after the previous one's.
        let peak = |m: usize| {
            (0..201)
                .max_by(|&a, &b| f.weights()[m * 201 + a].total_cmp(&f.weights()[m * 201 + b]))
                .unwrap_or(0)
        };
        assert!((1..80).all(|m| peak(m) >= peak(m - 1)));
    }

    #[test]
    fn mel_scale_round_trips() {
        for hz in [0.0, 50.0, 999.0, 1000.0, 1234.5, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn spectrogram_of_a_tone_peaks_at_its_mel_bin() {
        let mel = MelSpectrogram::new(80);
        let tone: Vec<f32> = (0..16_000)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin())
            .collect();
        let frames = 150;
        let out = mel.compute(&tone, frames);
        assert_eq!(out.len(), 80 * frames);
        // Frame 50 is in the middle of the tone: the loudest bin is the filter nearest 1 kHz.
        let column: Vec<f32> = (0..80).map(|m| out[m * frames + 50]).collect();
        let loudest = (0..80)
            .max_by(|&a, &b| column[a].total_cmp(&column[b]))
            .unwrap_or(0);
        let f = mel.filters();
        let best = (0..80)
            .max_by(|&a, &b| f.weights()[a * 201 + 25].total_cmp(&f.weights()[b * 201 + 25]))
            .unwrap_or(0);
        assert_eq!(loudest, best);
        // The peak value maps to (peak + 4) / 4 and the floor to 8 / 4 below it.
        let max = out.iter().copied().fold(f32::MIN, f32::max);
        let min = out.iter().copied().fold(f32::MAX, f32::min);
        assert!((max - min - 2.0).abs() < 1e-4, "range {min}..{max}");
        // Frames after the tone (t × 160 > 16 000 + 400) are silence, at the floor.
        assert!((0..80).all(|m| (out[m * frames + 140] - min).abs() < 1e-6));
    }

    #[test]
    fn spectrogram_matches_the_reference_implementation() {
        // A chirp; reference values from faster-whisper's FeatureExtractor (a NumPy port of
        // OpenAI's log_mel_spectrogram) with padding=480000, i.e. as Whisper transcribes.
        let chirp: Vec<f32> = (0..8000)
            .map(|i| {
                let i = f64::from(i);
                (0.3 * (2.0 * std::f64::consts::PI * (200.0 + 0.05 * i) * i / 16_000.0).sin())
                    as f32
            })
            .collect();
        let frames = 100;
        let out = MelSpectrogram::new(80).compute(&chirp, frames);
        for (bin, frame, expected) in [
            (0, 0, 1.057_463_6),
            (0, 1, 0.484_603_94),
            (5, 10, 0.232_674_3),
            (10, 20, 0.516_383_9),
            (40, 30, -0.659_798_6),
            (79, 50, -0.162_553_9),
            (20, 49, 0.295_743_6),
            (20, 52, -0.659_798_6),
            (60, 99, -0.659_798_6),
        ] {
            let got = out[bin * frames + frame];
            assert!(
                (got - expected).abs() < 2e-3,
                "mel[{bin}][{frame}] = {got}, reference {expected}"
            );
        }
        let max = out.iter().copied().fold(f32::MIN, f32::max);
        assert!((max - 1.340_201_4).abs() < 1e-3, "max {max}");
    }

    #[test]
    fn fewer_frames_are_a_prefix_of_more_when_the_peak_is_inside() {
        let mel = MelSpectrogram::new(80);
        let noise: Vec<f32> = (0..8_000u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 16) as f32 / 65_536.0 - 0.5) * 0.2)
            .collect();
        let short = mel.compute(&noise, 100);
        let long = mel.compute(&noise, 3000);
        for m in 0..80 {
            for t in 0..100 {
                assert!((short[m * 100 + t] - long[m * 3000 + t]).abs() < 1e-5);
            }
        }
    }
}
