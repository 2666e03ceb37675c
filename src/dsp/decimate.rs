//! Exact-ratio decimation (3:1 and 2:1) with linear-phase FIR filters, for the realtime loop's
//! input conversion: 48 kHz → 16 kHz, 32 kHz → 16 kHz, 24 kHz → 8 kHz and 16 kHz → 8 kHz (and any
//! other pair of rates in those ratios; [`super::interpolate`] uses the same filters upwards).
//!
//! A [`Decimator`] computes only the output samples it keeps: each one is a dot product of the
//! filter with the last `taps` input samples (the polyphase form's branches summed in one pass),
//! so an M:1 decimator costs `taps` multiply-adds per *output* sample. Samples stay int16 and the
//! taps are Q14 integers: the dot product runs 8 (SSE2) or 16 (AVX2, chosen at construction when
//! the CPU has it) multiply-adds per instruction with exact 32-bit accumulation.
//!
//! The filters are equiripple designs (`scripts/design-decimators.py`) for a 16 kHz output
//! (they scale with the rates): passband 0–6.5 kHz (0.406 of the output rate) within ±0.25 dB,
//! stopband from 8 kHz, the output's Nyquist frequency, so that nothing folds back into the band;
//! measured by the unit tests (`decimate_tests.rs`):
//!
//! | ratio | taps | passband ripple 0–6.5 kHz | alias rejection ≥ 8 kHz | group delay |
//! |---|---|---|---|---|
//! | 3:1 | 96 | ±0.25 dB | ≥ 68 dB | 47.5 input samples: 0.99 ms at 48 kHz |
//! | 2:1 | 64 | ±0.18 dB | ≥ 71 dB | 31.5 input samples: 0.98 ms at 32 kHz |

/// 3:1, 96 taps, Q14: passband −0.234/+0.227 dB to 6.5 kHz, stopband −68.26 dB from 8 kHz
/// (at 48 → 16 kHz). Symmetric (linear phase).
pub(super) const TAPS_3: [i16; 96] = [
    4, 10, 18, 21, 10, -17, -53, -79, -78, -45, 4, 40, 37, -5, -55, -73, -37, 33, 85, 74, -2, -91,
    -119, -53, 69, 154, 123, -17, -168, -203, -72, 145, 279, 200, -67, -332, -367, -89, 338, 579,
    370, -249, -877, -950, -98, 1560, 3404, 4614, 4614, 3404, 1560, -98, -950, -877, -249, 370,
    579, 338, -89, -367, -332, -67, 200, 279, 145, -72, -203, -168, -17, 123, 154, 69, -53, -119,
    -91, -2, 74, 85, 33, -37, -73, -55, -5, 37, 40, 4, -45, -78, -79, -53, -17, 10, 21, 18, 10, 4,
];

/// 2:1, 64 taps, Q14: passband −0.176/+0.173 dB to 6.5 kHz, stopband −71.62 dB from 8 kHz
/// (at 32 → 16 kHz). Symmetric (linear phase).
pub(super) const TAPS_2: [i16; 64] = [
    11, 45, 80, 67, -5, -62, -25, 60, 60, -48, -99, 14, 134, 45, -150, -126, 134, 222, -72, -316,
    -49, 387, 236, -406, -500, 332, 867, -86, -1449, -623, 3042, 6634, 6634, 3042, -623, -1449,
    -86, 867, 332, -500, -406, 236, 387, -49, -316, -72, 222, 134, -126, -150, 45, 134, 14, -99,
    -48, 60, 60, -25, -62, -5, 67, 80, 45, 11,
];

/// Fractional bits of the taps.
pub(super) const Q: u32 = 14;
/// The longest table (the SIMD kernels keep every tap in a register).
const MAX_TAPS: usize = 96;

/// Converts one rate to an exact divisor of it (3:1 or 2:1) without allocating after
/// construction. Feed it chunks of at most `max_chunk` samples; each call returns the output
/// samples those inputs complete (exactly `len / factor` for chunks that are multiples of the
/// factor, and the remainder carries over).
pub struct Decimator {
    factor: usize,
    /// The last `taps − 1` input samples, then room for one chunk.
    buf: Box<[i16]>,
    /// Position, in the next chunk, of the input sample that completes the next output. It
    /// starts at `factor − 1`, so that a chunk's last sample completes its last output (no
    /// input waits for the next chunk when chunks are multiples of the factor).
    phase: usize,
    max_chunk: usize,
    out: Box<[i16]>,
    kernel: Kernel,
}

/// The dot-product implementation, chosen once at construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// Plain Rust (other architectures, and the reference the tests compare with).
    #[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
    Portable,
    /// SSE2 `pmaddwd`: part of every x86-64 CPU.
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// AVX2 `vpmaddwd`, when the CPU has it.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    pub(super) fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                Kernel::Avx2
            } else {
                Kernel::Sse2
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Kernel::Portable
        }
    }
}

impl Decimator {
    /// A decimator from `from_rate` to `to_rate` for chunks of up to `max_chunk` samples, or
    /// `None` unless `from_rate` is exactly 3 or 2 times `to_rate`.
    pub fn new(from_rate: u32, to_rate: u32, max_chunk: usize) -> Option<Decimator> {
        if to_rate == 0 || from_rate % to_rate != 0 {
            return None;
        }
        let factor = (from_rate / to_rate) as usize;
        let taps = taps_for(factor)?.len();
        let max_chunk = max_chunk.max(1);
        Some(Decimator {
            factor,
            buf: vec![0; taps - 1 + max_chunk].into_boxed_slice(),
            phase: factor - 1,
            max_chunk,
            out: vec![0; max_chunk.div_ceil(factor)].into_boxed_slice(),
            kernel: Kernel::best(),
        })
    }

    /// The decimation factor (3 or 2).
    pub fn factor(&self) -> usize {
        self.factor
    }

    /// Upper bound of the samples one call returns.
    pub fn max_output(&self) -> usize {
        self.out.len()
    }

    /// The filter's group delay in input samples (`(taps − 1) / 2`; linear phase, so every
    /// frequency is delayed by the same time).
    pub fn delay_input_samples(&self) -> f64 {
        (self.taps().len() - 1) as f64 / 2.0
    }

    /// Converts `input` (at most `max_chunk` samples; more are ignored) and returns the output
    /// samples it completes. Realtime-safe: no allocation, no panicking path.
    pub fn process(&mut self, input: &[i16]) -> &[i16] {
        let taps = self.taps();
        let history = taps.len() - 1;
        let take = input.len().min(self.max_chunk);
        self.buf[history..history + take].copy_from_slice(&input[..take]);
        // The output completed by chunk sample `t` is the dot product of the taps with
        // `buf[t..t + taps]` (its newest sample is `buf[history + t]`).
        let count = if take > self.phase {
            (take - self.phase).div_ceil(self.factor)
        } else {
            0
        };
        let out = &mut self.out[..count];
        let start = self.phase;
        match self.factor {
            3 => run::<96>(self.kernel, &TAPS_3, &self.buf, start, self.factor, out),
            _ => run::<64>(self.kernel, &TAPS_2, &self.buf, start, self.factor, out),
        }
        self.phase = self.phase + count * self.factor - take;
        self.buf.copy_within(take..take + history, 0);
        &self.out[..count]
    }

    fn taps(&self) -> &'static [i16] {
        taps_for(self.factor).unwrap_or(&TAPS_2)
    }

    /// Forces the portable kernel (tests compare it with the SIMD ones).
    #[cfg(test)]
    fn portable(mut self) -> Self {
        self.kernel = Kernel::Portable;
        self
    }
}

pub(super) fn taps_for(factor: usize) -> Option<&'static [i16]> {
    match factor {
        3 => Some(&TAPS_3),
        2 => Some(&TAPS_2),
        _ => None,
    }
}

/// `out[j] = (taps · buf[start + j·step ..][..N]) / 2^Q`, rounded and saturated, for as many `j`
/// as both `out` and `buf` allow.
pub(super) fn run<const N: usize>(
    kernel: Kernel,
    taps: &[i16; N],
    buf: &[i16],
    start: usize,
    step: usize,
    out: &mut [i16],
) {
    const { assert!(N <= MAX_TAPS && N % 16 == 0) };
    // Outputs whose window lies inside `buf`: checked here once, so the kernels cannot read
    // past it (and nothing below can panic).
    let fits = if buf.len() >= start + N {
        (buf.len() - start - N) / step + 1
    } else {
        0
    };
    let n = out.len().min(fits);
    let out = &mut out[..n];
    match kernel {
        Kernel::Portable => portable(taps, buf, start, step, out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: every window `start + j·step .. + N` for `j < out.len()` lies inside `buf`
        // (`fits` above), and `N` is a multiple of 16 (the tables).
        Kernel::Sse2 => unsafe { x86::sse2(taps, buf, start, step, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, and `Kernel::Avx2` is only chosen when the CPU has AVX2.
        Kernel::Avx2 => unsafe { x86::avx2(taps, buf, start, step, out) },
    }
}

/// Rounds a Q14 accumulator to a sample.
#[inline(always)]
fn to_sample(acc: i32) -> i16 {
    ((acc + (1 << (Q - 1))) >> Q).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

fn portable<const N: usize>(
    taps: &[i16; N],
    buf: &[i16],
    start: usize,
    step: usize,
    out: &mut [i16],
) {
    for (j, o) in out.iter_mut().enumerate() {
        let window = &buf[start + j * step..][..N];
        let acc: i32 = taps
            .iter()
            .zip(window)
            .map(|(&h, &x)| i32::from(h) * i32::from(x))
            .sum();
        *o = to_sample(acc);
    }
}

/// With |taps| summing to under 2^16 (both tables: 32734 and 32772; the interpolator's scaled
/// branches: tested) the accumulator, and every partial sum of it, stays under
/// 2^16 · 2^15 − 2^15 < 2^31 − 2^13, rounding included: 32-bit sums cannot overflow.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{MAX_TAPS, to_sample};

    /// # Safety
    /// Every window `buf[start + j·step ..][..N]` for `j < out.len()` must lie inside `buf`, and
    /// `N` must be a multiple of 16. (SSE2 is part of every x86-64 CPU.)
    #[target_feature(enable = "sse2")]
    #[inline(never)]
    pub(super) unsafe fn sse2<const N: usize>(
        taps: &[i16; N],
        buf: &[i16],
        start: usize,
        step: usize,
        out: &mut [i16],
    ) {
        // The taps stay in registers across the outputs (N / 8 of them).
        let mut t = [_mm_setzero_si128(); MAX_TAPS / 8];
        for (k, v) in t.iter_mut().take(N / 8).enumerate() {
            // SAFETY: `k * 8 + 8 <= N`: inside `taps`; unaligned load.
            *v = unsafe { _mm_loadu_si128(taps.as_ptr().add(k * 8).cast()) };
        }
        for (j, o) in out.iter_mut().enumerate() {
            // SAFETY: the window of output `j` is inside `buf` (the caller's contract), and
            // every load below reads 8 samples of it.
            let acc = unsafe {
                let p = buf.as_ptr().add(start + j * step);
                let mut a0 = _mm_setzero_si128();
                let mut a1 = _mm_setzero_si128();
                let mut k = 0;
                while k < N / 8 {
                    let x0 = _mm_loadu_si128(p.add(k * 8).cast());
                    let x1 = _mm_loadu_si128(p.add(k * 8 + 8).cast());
                    a0 = _mm_add_epi32(a0, _mm_madd_epi16(t[k], x0));
                    a1 = _mm_add_epi32(a1, _mm_madd_epi16(t[k + 1], x1));
                    k += 2;
                }
                let a = _mm_add_epi32(a0, a1);
                let a = _mm_add_epi32(a, _mm_shuffle_epi32::<0b01_00_11_10>(a));
                let a = _mm_add_epi32(a, _mm_shuffle_epi32::<0b10_11_00_01>(a));
                _mm_cvtsi128_si32(a)
            };
            *o = to_sample(acc);
        }
    }

    /// # Safety
    /// As [`sse2`], and the CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    pub(super) unsafe fn avx2<const N: usize>(
        taps: &[i16; N],
        buf: &[i16],
        start: usize,
        step: usize,
        out: &mut [i16],
    ) {
        let mut t = [_mm256_setzero_si256(); MAX_TAPS / 16];
        for (k, v) in t.iter_mut().take(N / 16).enumerate() {
            // SAFETY: `k * 16 + 16 <= N`: inside `taps`; unaligned load.
            *v = unsafe { _mm256_loadu_si256(taps.as_ptr().add(k * 16).cast()) };
        }
        for (j, o) in out.iter_mut().enumerate() {
            // SAFETY: the window of output `j` is inside `buf` (the caller's contract), and
            // every load below reads 16 samples of it.
            let acc = unsafe {
                let p = buf.as_ptr().add(start + j * step);
                let mut a0 = _mm256_setzero_si256();
                let mut a1 = _mm256_setzero_si256();
                let mut k = 0;
                while k + 1 < N / 16 {
                    let x0 = _mm256_loadu_si256(p.add(k * 16).cast());
                    let x1 = _mm256_loadu_si256(p.add(k * 16 + 16).cast());
                    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(t[k], x0));
                    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(t[k + 1], x1));
                    k += 2;
                }
                if k < N / 16 {
                    let x0 = _mm256_loadu_si256(p.add(k * 16).cast());
                    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(t[k], x0));
                }
                let a = _mm256_add_epi32(a0, a1);
                let a = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
                let a = _mm_add_epi32(a, _mm_shuffle_epi32::<0b01_00_11_10>(a));
                let a = _mm_add_epi32(a, _mm_shuffle_epi32::<0b10_11_00_01>(a));
                _mm_cvtsi128_si32(a)
            };
            *o = to_sample(acc);
        }
    }
}

#[cfg(test)]
#[path = "decimate_tests.rs"]
mod tests;
