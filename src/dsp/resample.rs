//! Sample-rate conversion at the edges of a session (rubato, windowed sinc).
//!
//! [`ChunkResampler`] converts fixed-size chunks without allocating. [`FrameResampler`] picks the
//! cheapest good converter for a pair of rates: the exact-ratio FIR decimator ([`Decimator`],
//! 48 → 16 kHz and the like) or interpolator ([`Interpolator`], 24 → 48 kHz and the like) when
//! the rates allow it, else a `ChunkResampler`; the realtime thread uses it for the host's input
//! frames. [`StreamResampler`] wraps it for chunks of any size on the I/O side (reply audio from
//! TTS to the host's output rate, whole clips).

use super::decimate::Decimator;
use super::interpolate::Interpolator;
use rubato::{
    Resampler as _, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
};

/// Converts chunks of exactly `chunk_len` samples from one rate to another. No allocation after
/// construction; equal rates pass samples through unchanged.
pub struct ChunkResampler {
    inner: Option<SincFixedIn<f32>>,
    chunk_len: usize,
    input: [Vec<f32>; 1],
    output: [Vec<f32>; 1],
    output_i16: Vec<i16>,
}

impl ChunkResampler {
    /// A resampler from `from_rate` to `to_rate` taking chunks of `chunk_len` samples.
    pub fn new(from_rate: u32, to_rate: u32, chunk_len: usize) -> Self {
        let ratio = f64::from(to_rate) / f64::from(from_rate);
        let inner = (from_rate != to_rate).then(|| {
            let params = SincInterpolationParameters {
                sinc_len: 64,
                f_cutoff: 0.915,
                oversampling_factor: 128,
                interpolation: SincInterpolationType::Linear,
                window: WindowFunction::BlackmanHarris2,
            };
            SincFixedIn::new(ratio, 1.0, params, chunk_len, 1)
                .expect("rates and chunk length are validated")
        });
        let max_out = inner.as_ref().map_or(chunk_len, |r| r.output_frames_max());
        ChunkResampler {
            inner,
            chunk_len,
            input: [vec![0.0; chunk_len]],
            output: [vec![0.0; max_out]],
            output_i16: vec![0; max_out],
        }
    }

    /// Samples each call of [`ChunkResampler::process`] takes.
    pub fn chunk_len(&self) -> usize {
        self.chunk_len
    }

    /// Upper bound of the samples one call returns.
    pub fn max_output(&self) -> usize {
        self.output_i16.len()
    }

    /// Converts one chunk (`input.len() == chunk_len`) and returns the converted samples, whose
    /// count varies by one or two around `chunk_len × ratio`. Realtime-safe.
    pub fn process(&mut self, input: &[i16]) -> &[i16] {
        debug_assert_eq!(input.len(), self.chunk_len);
        let Some(inner) = self.inner.as_mut() else {
            self.output_i16[..input.len()].copy_from_slice(input);
            return &self.output_i16[..input.len()];
        };
        for (dst, &src) in self.input[0].iter_mut().zip(input) {
            *dst = f32::from(src) / 32768.0;
        }
        let written = match inner.process_into_buffer(&self.input, &mut self.output, None) {
            Ok((_, written)) => written,
            Err(_) => 0, // unreachable: buffer sizes are fixed at construction
        };
        for (dst, &src) in self.output_i16.iter_mut().zip(&self.output[0][..written]) {
            *dst = (src * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        &self.output_i16[..written]
    }
}

/// Converts chunks of (at most) `chunk_len` samples from one rate to another without allocating
/// after construction.
pub enum FrameResampler {
    /// Exactly 3:1 or 2:1 (48 → 16 kHz, 32 → 16 kHz, …): a polyphase FIR, about 1 ms of delay.
    Decimate(Decimator),
    /// Exactly 1:2 or 1:3 (24 → 48 kHz, 16 → 48 kHz, …): a polyphase FIR, under 1 ms of delay.
    Interpolate(Interpolator),
    /// Any other pair of rates (or equal rates: a copy): rubato's windowed sinc.
    Sinc(ChunkResampler),
}

impl FrameResampler {
    /// The decimator or interpolator when the rates are in an exact ratio of 2 or 3, else the
    /// sinc resampler.
    pub fn new(from_rate: u32, to_rate: u32, chunk_len: usize) -> Self {
        if let Some(decimator) = Decimator::new(from_rate, to_rate, chunk_len) {
            return FrameResampler::Decimate(decimator);
        }
        if let Some(interpolator) = Interpolator::new(from_rate, to_rate, chunk_len) {
            return FrameResampler::Interpolate(interpolator);
        }
        FrameResampler::Sinc(ChunkResampler::new(from_rate, to_rate, chunk_len))
    }

    /// Upper bound of the samples one call returns.
    pub fn max_output(&self) -> usize {
        match self {
            FrameResampler::Decimate(d) => d.max_output(),
            FrameResampler::Interpolate(i) => i.max_output(),
            FrameResampler::Sinc(s) => s.max_output(),
        }
    }

    /// Converts one chunk (exactly `chunk_len` samples for the sinc resampler). Realtime-safe.
    pub fn process(&mut self, input: &[i16]) -> &[i16] {
        match self {
            FrameResampler::Decimate(d) => d.process(input),
            FrameResampler::Interpolate(i) => i.process(input),
            FrameResampler::Sinc(s) => s.process(input),
        }
    }
}

/// Converts a stream of chunks of any size, buffering up to one chunk. For the I/O side only
/// (it allocates the returned vectors).
pub struct StreamResampler {
    chunker: FrameResampler,
    chunk: usize,
    pending: Vec<i16>,
}

impl StreamResampler {
    /// Chunk length used internally: 10 ms of input.
    pub fn new(from_rate: u32, to_rate: u32) -> Self {
        let chunk = (from_rate / 100).max(1) as usize;
        StreamResampler {
            chunker: FrameResampler::new(from_rate, to_rate, chunk),
            chunk,
            pending: Vec::with_capacity(chunk),
        }
    }

    /// Converts `input`, returning what is complete so far.
    pub fn push(&mut self, input: &[i16]) -> Vec<i16> {
        let mut out = Vec::with_capacity(input.len() * 3 + 16);
        self.pending.extend_from_slice(input);
        let chunk = self.chunk;
        let mut start = 0;
        while self.pending.len() - start >= chunk {
            out.extend_from_slice(self.chunker.process(&self.pending[start..start + chunk]));
            start += chunk;
        }
        self.pending.drain(..start);
        out
    }

    /// Converts a whole clip from `from_rate` to `to_rate` (a copy when the rates are equal).
    pub fn convert(pcm: &[i16], from_rate: u32, to_rate: u32) -> Vec<i16> {
        if from_rate == to_rate {
            return pcm.to_vec();
        }
        let mut resampler = StreamResampler::new(from_rate, to_rate);
        let mut out = resampler.push(pcm);
        out.extend(resampler.finish());
        out
    }

    /// Pads the last partial chunk with silence and returns the rest of the converted audio,
    /// trimmed to the length the input implies.
    pub fn finish(&mut self) -> Vec<i16> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let chunk = self.chunk;
        let real = self.pending.len();
        self.pending.resize(chunk, 0);
        let converted = self.chunker.process(&self.pending);
        let keep = (converted.len() * real).div_ceil(chunk);
        let out = converted[..keep].to_vec();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((i as f32 * hz * std::f32::consts::TAU / rate as f32).sin() * 10000.0) as i16)
            .collect()
    }

    #[test]
    fn equal_rates_pass_through() {
        let mut r = ChunkResampler::new(16000, 16000, 320);
        let input = tone(16000, 440.0, 320);
        assert_eq!(r.process(&input), &input[..]);
    }

    #[test]
    fn downsampling_keeps_length_ratio_and_tone_energy() {
        let mut r = ChunkResampler::new(48000, 16000, 960);
        let input = tone(48000, 440.0, 960 * 50);
        let mut out = Vec::new();
        for chunk in input.chunks(960) {
            out.extend_from_slice(r.process(chunk));
        }
        // Only the first chunk is shorter: the filter starts half its 64 taps in.
        let expected = 320 * 50;
        assert!(
            out.len().abs_diff(expected) <= 32,
            "{} vs {expected}",
            out.len()
        );
        let rms = |s: &[i16]| {
            (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        let (a, b) = (rms(&input[4800..]), rms(&out[1600..]));
        assert!((a - b).abs() / a < 0.05, "rms {a} vs {b}");
    }

    #[test]
    fn out_of_band_tone_is_filtered_when_downsampling() {
        // 12 kHz is above the 8 kHz Nyquist limit of 16 kHz audio: it must not alias back in.
        let mut r = ChunkResampler::new(48000, 16000, 960);
        let input = tone(48000, 12000.0, 960 * 20);
        let mut peak = 0i16;
        for (i, chunk) in input.chunks(960).enumerate() {
            let out = r.process(chunk);
            if i > 2 {
                peak = peak.max(out.iter().map(|s| s.saturating_abs()).max().unwrap_or(0));
            }
        }
        assert!(peak < 300, "aliased peak {peak}");
    }

    #[test]
    fn frame_resampler_decimates_exact_ratios_only() {
        assert!(matches!(
            FrameResampler::new(48000, 16000, 960),
            FrameResampler::Decimate(_)
        ));
        assert!(matches!(
            FrameResampler::new(44100, 16000, 882),
            FrameResampler::Sinc(_)
        ));
        let mut r = FrameResampler::new(48000, 16000, 960);
        let input = tone(48000, 440.0, 960);
        assert_eq!(r.process(&input).len(), 320);
    }

    #[test]
    fn stream_resampler_accepts_any_chunk_sizes() {
        let mut r = StreamResampler::new(22050, 48000);
        let input = tone(22050, 300.0, 22050);
        let mut out = Vec::new();
        for chunk in input.chunks(777) {
            out.extend(r.push(chunk));
        }
        out.extend(r.finish());
        assert!(out.len().abs_diff(48000) < 200, "{}", out.len());
    }
}
