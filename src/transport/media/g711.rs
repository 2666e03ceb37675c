//! G.711 (ITU-T, 1972): the telephone network's 8 kHz logarithmic codecs, μ-law (PCMU, North
//! America and Japan) and A-law (PCMA, the rest of the world). One byte per sample, 64 kbit/s.
//!
//! Written from the ITU-T recommendation, following the reference implementation in ITU-T G.191's
//! Software Tool Library (`g711.c`): μ-law compresses a 14-bit magnitude in 8 segments (bias 33),
//! A-law a 12-bit magnitude in 8 segments (the first two of equal step); negative samples use
//! the one's complement, so −32768 needs no special case; even bits of A-law codes are inverted
//! (`^ 0x55`), all bits of μ-law codes (`^ 0xFF`). Decoding returns the middle of each
//! quantization interval, scaled to 16 bits.
//!
//! No crate was taken for this: the two codecs are forty lines, and a table-driven decoder
//! (512 bytes built at compile time) is as fast as any.
//!
//! Everything here is allocation-free and branch-light: any thread, the realtime thread included.

/// Which G.711 law a stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// μ-law (`audio/x-mulaw`, RTP payload type 0, `PCMU`).
    MuLaw,
    /// A-law (`audio/x-alaw`, RTP payload type 8, `PCMA`).
    ALaw,
}

/// The only rate G.711 has.
pub const G711_RATE: u32 = 8000;

/// The μ-law code of digital silence (what a decoder turns into 0).
pub const MULAW_SILENCE: u8 = 0xFF;
/// The A-law code closest to silence (decodes to +8).
pub const ALAW_SILENCE: u8 = 0xD5;

impl Law {
    /// The code a silent sample becomes.
    pub fn silence(self) -> u8 {
        match self {
            Law::MuLaw => MULAW_SILENCE,
            Law::ALaw => ALAW_SILENCE,
        }
    }

    /// Encodes `pcm` into `out` (one byte per sample; `out` at least as long as `pcm`). Returns
    /// the bytes written.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) -> usize {
        let n = pcm.len().min(out.len());
        match self {
            Law::MuLaw => {
                for (o, &s) in out.iter_mut().zip(&pcm[..n]) {
                    *o = mulaw_encode(s);
                }
            }
            Law::ALaw => {
                for (o, &s) in out.iter_mut().zip(&pcm[..n]) {
                    *o = alaw_encode(s);
                }
            }
        }
        n
    }

    /// Decodes `codes` into `out` (one sample per byte). Returns the samples written.
    pub fn decode(self, codes: &[u8], out: &mut [i16]) -> usize {
        let n = codes.len().min(out.len());
        let table = match self {
            Law::MuLaw => &MULAW_TABLE,
            Law::ALaw => &ALAW_TABLE,
        };
        for (o, &c) in out.iter_mut().zip(&codes[..n]) {
            *o = table[usize::from(c)];
        }
        n
    }
}

/// One sample to μ-law.
pub fn mulaw_encode(sample: i16) -> u8 {
    let negative = sample < 0;
    // 14-bit magnitude (one's complement for negatives), biased by 33, clipped.
    let magnitude = (if negative { !sample } else { sample }) >> 2;
    let biased = (magnitude as u16 + 33).min(0x1FFF);
    // Segment 1–8: the position of the highest set bit above bit 5.
    let segment = 16 - (biased >> 6).leading_zeros() as u16 + 1;
    let segment = segment.min(8);
    let high = 8 - segment;
    let low = 0x0F - ((biased >> segment) & 0x0F);
    let code = ((high << 4) | low) as u8;
    if negative { code } else { code | 0x80 }
}

/// One μ-law code to a sample.
pub const fn mulaw_decode(code: u8) -> i16 {
    let inverted = !code;
    let exponent = ((inverted >> 4) & 0x07) as i32;
    let mantissa = (inverted & 0x0F) as i32;
    let step = 4 << (exponent + 1);
    let magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
    if code < 0x80 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// One sample to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let negative = sample < 0;
    // 12-bit magnitude (one's complement for negatives).
    let mut magnitude = ((if negative { !sample } else { sample }) >> 4) as u16;
    if magnitude > 15 {
        let mut exponent = 1u16;
        while magnitude > 16 + 15 {
            magnitude >>= 1;
            exponent += 1;
        }
        magnitude = magnitude - 16 + (exponent << 4);
    }
    let code = if negative {
        magnitude
    } else {
        magnitude | 0x80
    } as u8;
    code ^ 0x55
}

/// One A-law code to a sample.
pub const fn alaw_decode(code: u8) -> i16 {
    let bits = (code ^ 0x55) & 0x7F;
    let exponent = (bits >> 4) as i32;
    let mut mantissa = (bits & 0x0F) as i32;
    if exponent > 0 {
        mantissa += 16;
    }
    mantissa = (mantissa << 4) + 8;
    if exponent > 1 {
        mantissa <<= exponent - 1;
    }
    if code > 127 {
        mantissa as i16
    } else {
        -mantissa as i16
    }
}

/// Every code of `law` decoded, built at compile time.
const fn table(law: Law) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = match law {
            Law::MuLaw => mulaw_decode(code as u8),
            Law::ALaw => alaw_decode(code as u8),
        };
        code += 1;
    }
    table
}

static MULAW_TABLE: [i16; 256] = table(Law::MuLaw);
static ALAW_TABLE: [i16; 256] = table(Law::ALaw);

// Cross-checked once against an independent implementation, CPython's `audioop` (Sun's g711.c):
// decoding is identical for all 256 codes of both laws, A-law encoding for all 65,536 inputs;
// μ-law encoding differs on 508 negative inputs that sit on a decision level (audioop shifts the
// two's-complement sample right before taking its magnitude, G.191 takes the one's complement
// first), by one code, never with a larger error.
#[cfg(test)]
mod tests {
    use super::*;

    /// Code points given by the recommendation's tables (and by every reference decoder):
    /// the ends of the range, both zeros, and a value in each law's first segments.
    #[test]
    fn known_code_points() {
        // μ-law: 0xFF and 0x7F are +0 and −0; 0x80 / 0x00 the largest magnitude (8031 × 4).
        assert_eq!(mulaw_decode(0xFF), 0);
        assert_eq!(mulaw_decode(0x7F), 0);
        assert_eq!(mulaw_decode(0x80), 32124);
        assert_eq!(mulaw_decode(0x00), -32124);
        assert_eq!(mulaw_decode(0xFE), 8);
        assert_eq!(mulaw_decode(0xEF), 132);
        assert_eq!(mulaw_encode(0), 0xFF);
        assert_eq!(mulaw_encode(-1), 0x7F);
        assert_eq!(mulaw_encode(i16::MAX), 0x80);
        assert_eq!(mulaw_encode(i16::MIN), 0x00);
        // A-law: 0xD5 / 0x55 are ±8 (no zero code); 0xAA / 0x2A the largest magnitude (4032 × 8).
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    /// Every code decodes to a value that encodes back to the same code (the decoder returns
    /// the middle of each interval): both laws are exact on their own output. μ-law's two zeros
    /// (0xFF, 0x7F) both decode to 0, which encodes as +0.
    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            let back = mulaw_encode(mulaw_decode(code));
            assert!(
                back == code || (code == 0x7F && back == 0xFF),
                "μ {code:#04x}"
            );
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A {code:#04x}");
        }
    }

    /// Round trip of every 16-bit value: the error stays within half a quantization step of the
    /// segment (G.711's design: about 3 % of the magnitude in the upper segments), and the
    /// mapping is monotonic.
    #[test]
    fn round_trip_error_is_bounded_and_monotonic() {
        for (name, encode, decode) in [
            (
                "μ",
                mulaw_encode as fn(i16) -> u8,
                mulaw_decode as fn(u8) -> i16,
            ),
            ("A", alaw_encode, alaw_decode),
        ] {
            let mut previous = i32::MIN;
            for sample in i16::MIN..=i16::MAX {
                let back = i32::from(decode(encode(sample)));
                let x = i32::from(sample);
                let error = (back - x).abs();
                // Half a step: the step is at most 1/16 of the segment's lower end (1024 in the
                // top segments, 8–16 in the lowest), so |x| / 32 plus a little for the bias; the
                // clipped ends (32767 → 32124 / 32256) fit too.
                let bound = x.abs() / 32 + 24;
                assert!(error <= bound, "{name}: {sample} → {back}");
                assert!(back >= previous, "{name}: not monotonic at {sample}");
                previous = back;
            }
        }
    }

    /// A 1 kHz tone through each law keeps a signal-to-noise ratio near G.711's ~38 dB.
    #[test]
    fn a_tone_keeps_its_signal_to_noise_ratio() {
        let tone: Vec<i16> = (0..8000)
            .map(|i| ((i as f64 * 1000.0 * std::f64::consts::TAU / 8000.0).sin() * 16000.0) as i16)
            .collect();
        for law in [Law::MuLaw, Law::ALaw] {
            let mut codes = vec![0u8; tone.len()];
            let mut back = vec![0i16; tone.len()];
            assert_eq!(law.encode(&tone, &mut codes), tone.len());
            assert_eq!(law.decode(&codes, &mut back), tone.len());
            let signal: f64 = tone.iter().map(|&s| f64::from(s).powi(2)).sum();
            let noise: f64 = tone
                .iter()
                .zip(&back)
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum();
            let snr = 10.0 * (signal / noise).log10();
            assert!(snr > 35.0, "{law:?}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn silence_codes_decode_to_near_zero() {
        let mut out = [1i16; 2];
        Law::MuLaw.decode(&[Law::MuLaw.silence()], &mut out);
        assert_eq!(out[0], 0);
        Law::ALaw.decode(&[Law::ALaw.silence()], &mut out);
        assert_eq!(out[0], 8);
    }
}
