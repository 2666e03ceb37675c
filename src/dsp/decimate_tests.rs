//! The decimators' quality, measured on tones, next to the sinc resampler the engine used before
//! (rubato `SincFixedIn`, `ChunkResampler`'s settings), and the kernels' agreement.

use super::*;
use crate::dsp::resample::ChunkResampler;

/// Output samples skipped while the filters fill, and the window measured after them: 8000
/// samples at 16 kHz hold a whole number of cycles of every tone on a 2 Hz grid.
const SKIP: usize = 1600;
const WINDOW: usize = 8000;

fn tone(rate: u32, hz: f64, amplitude: f64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            (amplitude * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate)).sin()) as i16
        })
        .collect()
}

/// Anything that turns chunks of `chunk` input samples into output samples.
trait Converter {
    fn convert(&mut self, input: &[i16]) -> &[i16];
}

impl Converter for Decimator {
    fn convert(&mut self, input: &[i16]) -> &[i16] {
        self.process(input)
    }
}

impl Converter for ChunkResampler {
    fn convert(&mut self, input: &[i16]) -> &[i16] {
        self.process(input)
    }
}

/// Converts `input` in chunks; also returns how many outputs the first chunk gave.
fn run_all(c: &mut dyn Converter, input: &[i16], chunk: usize) -> (Vec<i16>, usize) {
    let mut out = Vec::new();
    let mut first = None;
    for piece in input.chunks_exact(chunk) {
        let got = c.convert(piece);
        first.get_or_insert(got.len());
        out.extend_from_slice(got);
    }
    (out, first.unwrap_or(0))
}

/// Amplitude and phase (radians) of the `hz` component of `y` sampled at `rate`, relative to
/// `sin(2π·hz·j / rate)`, over a window holding a whole number of cycles.
fn fit(y: &[i16], hz: f64, rate: f64) -> (f64, f64) {
    let (mut s, mut c) = (0.0, 0.0);
    for (j, &v) in y.iter().enumerate() {
        let w = std::f64::consts::TAU * hz * j as f64 / rate;
        s += f64::from(v) * w.sin();
        c += f64::from(v) * w.cos();
    }
    let n = y.len() as f64;
    let (a, b) = (2.0 * s / n, 2.0 * c / n);
    ((a * a + b * b).sqrt(), b.atan2(a))
}

fn rms(y: &[i16]) -> f64 {
    (y.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / y.len() as f64).sqrt()
}

struct Quality {
    /// Lowest and highest gain from 100 Hz to 6.5 kHz, dB.
    pass: (f64, f64),
    /// Weakest attenuation of a tone from 8 kHz up to the input's Nyquist frequency (everything in
    /// the output counted: the folded tone and any noise), dB, and the tone that got it.
    alias: (f64, f64),
    /// Input samples between the last input sample of a chunk and the time its last output
    /// sample represents.
    latency_samples: f64,
}

/// Measures a converter from `rate` to 16 kHz on tones of amplitude 8000 (passband) and 20000
/// (above 8 kHz), converting 20 ms chunks.
fn measure(make: &dyn Fn() -> Box<dyn Converter>, rate: u32) -> Quality {
    let factor = f64::from(rate) / 16000.0;
    let chunk = rate as usize / 50;
    let n_in = ((SKIP + WINDOW) as f64 * factor) as usize + 2 * chunk;
    let mut pass = (f64::MAX, f64::MIN);
    for hz in (100..=6500).step_by(100) {
        let (out, _) = run_all(
            &mut *make(),
            &tone(rate, f64::from(hz), 8000.0, n_in),
            chunk,
        );
        let (amplitude, _) = fit(&out[SKIP..SKIP + WINDOW], f64::from(hz), 16000.0);
        let db = 20.0 * (amplitude / 8000.0).log10();
        pass = (pass.0.min(db), pass.1.max(db));
    }
    let mut alias = (f64::MAX, 0.0);
    let nyquist = rate / 2;
    for hz in (8000..nyquist).step_by(100) {
        let (out, _) = run_all(
            &mut *make(),
            &tone(rate, f64::from(hz), 20000.0, n_in),
            chunk,
        );
        let db = 20.0 * (20000.0 / 2f64.sqrt() / rms(&out[SKIP..SKIP + WINDOW])).log10();
        if db < alias.0 {
            alias = (db, f64::from(hz));
        }
    }
    // Latency: output j represents input time factor·j − d (d from the phase of a 200 Hz
    // tone, one period = 240 input samples at 48 kHz); a chunk's last output comes out with
    // the chunk's last input sample.
    let hz = 200.0;
    let (out, first) = run_all(&mut *make(), &tone(rate, hz, 8000.0, n_in), chunk);
    let (_, phase) = fit(&out[SKIP..SKIP + WINDOW], hz, 16000.0);
    // Output j ≈ sin(ω(factor·j − d)), ω per input sample; the fit counts j from SKIP, so its
    // phase is ω(factor·SKIP − d). d is taken within half a period of 0 (both are well under).
    let omega = std::f64::consts::TAU * hz / f64::from(rate);
    let period = f64::from(rate) / hz;
    let d = factor * SKIP as f64 - phase / omega;
    let d = (d + period / 2.0).rem_euclid(period) - period / 2.0;
    let last_output = first as f64 - 1.0; // of the first chunk; later chunks add exactly 320
    let latency = (chunk as f64 - 1.0) - (factor * last_output - d);
    Quality {
        pass,
        alias,
        latency_samples: latency,
    }
}

#[test]
fn quality_3_to_1_and_2_to_1_against_rubato_sinc() {
    for rate in [48000u32, 32000] {
        let fir = measure(
            &|| Box::new(Decimator::new(rate, 16000, rate as usize / 50).unwrap()),
            rate,
        );
        let sinc = measure(
            &|| Box::new(ChunkResampler::new(rate, 16000, rate as usize / 50)),
            rate,
        );
        let ms = |samples: f64| samples * 1000.0 / f64::from(rate);
        for (name, q) in [("FIR decimator", &fir), ("rubato sinc", &sinc)] {
            println!(
                "{rate} -> 16000 {name}: passband 0.1-6.5 kHz {:+.3} / {:+.3} dB; alias rejection \
                 >= 8 kHz: worst {:.1} dB (at {} Hz); latency {:.1} input samples = {:.3} ms",
                q.pass.0,
                q.pass.1,
                q.alias.0,
                q.alias.1,
                q.latency_samples,
                ms(q.latency_samples)
            );
        }
        assert!(
            fir.pass.0 >= -0.3 && fir.pass.1 <= 0.3,
            "{rate}: passband {:?}",
            fir.pass
        );
        assert!(
            fir.alias.0 >= 65.0,
            "{rate}: alias rejection {:?}",
            fir.alias
        );
        assert!(
            fir.alias.0 > sinc.alias.0,
            "{rate}: the decimator rejects aliases better than the sinc"
        );
        assert!(
            ms(fir.latency_samples) < 1.1,
            "{rate}: latency {} ms",
            ms(fir.latency_samples)
        );
    }
}

#[test]
fn group_delay_is_half_the_filter() {
    for (rate, taps) in [(48000u32, 96.0), (32000, 64.0)] {
        let d = Decimator::new(rate, 16000, 960).unwrap();
        assert_eq!(d.delay_input_samples(), (taps - 1.0) / 2.0);
    }
}

#[test]
fn only_exact_3_to_1_and_2_to_1_ratios_are_taken() {
    assert!(Decimator::new(48000, 16000, 960).is_some());
    assert!(Decimator::new(32000, 16000, 640).is_some());
    assert!(Decimator::new(24000, 8000, 480).is_some());
    assert!(Decimator::new(16000, 8000, 320).is_some());
    assert!(Decimator::new(48000, 24000, 480).is_some());
    for (from, to) in [
        (44100, 16000),
        (48000, 8000),
        (16000, 16000),
        (16000, 48000),
        (1, 0),
    ] {
        assert!(Decimator::new(from, to, 960).is_none(), "{from} -> {to}");
    }
}

#[test]
fn taps_are_symmetric_and_cannot_overflow_the_accumulator() {
    for taps in [&TAPS_3[..], &TAPS_2[..]] {
        assert!(taps.iter().eq(taps.iter().rev()), "linear phase");
        assert!(taps.len() % 16 == 0 && taps.len() <= MAX_TAPS);
        // Bounds the accumulator (see the `x86` module): |acc| ≤ l1 · 2^15 < 2^31 − 2^13.
        let l1: i32 = taps.iter().map(|&t| i32::from(t).abs()).sum();
        assert!(l1 < 1 << 16, "{l1}");
    }
}

#[test]
fn chunk_sizes_do_not_change_the_output() {
    let input: Vec<i16> = (0..48000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 17) as i16)
        .collect();
    for (rate, factor) in [(48000, 3), (32000, 2)] {
        let mut whole = Decimator::new(rate, 16000, 960).unwrap();
        let (reference, _) = run_all(&mut whole, &input, 960);
        assert_eq!(reference.len(), input.len() / factor);
        for chunk in [1, 7, 320, 959] {
            let mut d = Decimator::new(rate, 16000, 960).unwrap();
            let mut out = Vec::new();
            for piece in input.chunks(chunk) {
                out.extend_from_slice(d.process(piece));
            }
            assert_eq!(out, reference, "{rate} Hz in chunks of {chunk}");
        }
    }
}

#[test]
fn simd_kernels_agree_with_the_portable_one() {
    // Full-scale noise, so that large sums are exercised too.
    let input: Vec<i16> = (0..9600u32)
        .map(|i| (i.wrapping_mul(2_246_822_519).rotate_left(7) >> 16) as i16)
        .chain(std::iter::repeat_n(i16::MIN, 960))
        .chain(std::iter::repeat_n(i16::MAX, 960))
        .collect();
    for rate in [48000, 32000] {
        let mut best = Decimator::new(rate, 16000, 960).unwrap();
        let mut portable = Decimator::new(rate, 16000, 960).unwrap().portable();
        assert_eq!(
            run_all(&mut best, &input, 960).0,
            run_all(&mut portable, &input, 960).0
        );
        #[cfg(target_arch = "x86_64")]
        {
            let mut sse2 = Decimator::new(rate, 16000, 960).unwrap();
            sse2.kernel = Kernel::Sse2;
            let mut portable = Decimator::new(rate, 16000, 960).unwrap().portable();
            assert_eq!(
                run_all(&mut sse2, &input, 960).0,
                run_all(&mut portable, &input, 960).0
            );
        }
    }
}
