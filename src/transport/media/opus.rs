//! Opus, mono, over the system's libopus (Debian `libopus-dev`, linked through `audiopus_sys`): an
//! encoder for the agent's voice and a decoder for the user's, with packet-loss concealment and
//! in-band FEC. Network transports run at 48 kHz (WebRTC's and LiveKit's rate); the host's Opus
//! calls at the session's own rate (any of [`OPUS_RATES`]).
//!
//! Both are allocated once; `encode`, `decode`, `conceal` and `recover` allocate nothing and take
//! no lock (libopus works in the state it was created with, on the stack), so they may run on any
//! thread, the realtime thread included. Their failure is an [`OpusFailure`], a plain code, so
//! that even a packet that does not decode costs no allocation.

use std::ffi::CStr;
use std::fmt;
use std::ptr::NonNull;

use audiopus_sys as ffi;

pub use crate::config::OPUS_RATES;
use crate::error::{Error, Result};

/// The rate every Opus stream of a network transport uses (WebRTC's and LiveKit's).
pub const OPUS_RATE: u32 = 48_000;
/// Samples of one 20 ms frame at 48 kHz.
pub const FRAME_20MS: usize = 960;
/// The longest frame an Opus packet holds: 120 ms at 48 kHz.
pub const MAX_FRAME: usize = 5760;
/// Bytes enough for any packet the encoder makes at the bitrates used here.
pub const MAX_PACKET: usize = 1500;

/// Samples of one 20 ms frame at `rate`.
pub fn frame_20ms(rate: u32) -> usize {
    rate as usize / 50
}

/// Samples of the longest frame an Opus packet holds (120 ms) at `rate`.
pub fn max_frame(rate: u32) -> usize {
    rate as usize * 120 / 1000
}

// libopus request codes (opus_defines.h).
const OPUS_APPLICATION_VOIP: i32 = 2048;
const OPUS_SET_BITRATE_REQUEST: i32 = 4002;
const OPUS_SET_COMPLEXITY_REQUEST: i32 = 4010;
const OPUS_SET_INBAND_FEC_REQUEST: i32 = 4012;
const OPUS_SET_PACKET_LOSS_PERC_REQUEST: i32 = 4014;
const OPUS_SET_SIGNAL_REQUEST: i32 = 4024;
const OPUS_SIGNAL_VOICE: i32 = 3001;

fn opus_error(what: &'static str, code: i32) -> Error {
    OpusFailure { what, code }.into()
}

/// libopus's negative error code, with what was being done: kept as is (no message formatted)
/// so that a failure on a realtime path allocates nothing. It becomes an [`Error`] through
/// `From` (`?`), as `VB_ERR_INTERNAL` naming libopus's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusFailure {
    what: &'static str,
    code: i32,
}

impl OpusFailure {
    /// libopus's reason (its static text, e.g. "corrupted stream").
    pub fn reason(self) -> &'static CStr {
        // SAFETY: opus_strerror returns a pointer to a static, NUL-terminated string for any code.
        unsafe { CStr::from_ptr(ffi::opus_strerror(self.code)) }
    }

    /// The code libopus returned (negative).
    pub fn code(self) -> i32 {
        self.code
    }
}

impl fmt::Display for OpusFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "opus: {}: {}",
            self.what,
            self.reason().to_string_lossy()
        )
    }
}

impl From<OpusFailure> for Error {
    fn from(failure: OpusFailure) -> Self {
        Error::internal(failure.to_string())
    }
}

/// Checks that libopus can run at `rate` (one of [`OPUS_RATES`]).
fn check_rate(rate: u32) -> Result<()> {
    if OPUS_RATES.contains(&rate) {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "opus: {rate} Hz is not one of the rates Opus runs at {OPUS_RATES:?}"
        )))
    }
}

/// How the agent's voice is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    /// 0–10: CPU spent for quality (complexity 5 costs about 0.1 ms per 20 ms frame here).
    pub complexity: u8,
    /// Target bitrate in bits per second.
    pub bitrate: u32,
    /// Add in-band FEC so that a receiver can rebuild one lost packet from the next.
    pub fec: bool,
    /// The loss the receiver's network is expected to have, in percent (FEC needs it above 0).
    pub expected_loss_percent: u8,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        EncoderSettings {
            complexity: 5,
            bitrate: 32_000,
            fec: true,
            expected_loss_percent: 10,
        }
    }
}

/// An Opus encoder for mono voice.
pub struct OpusEncoder {
    state: NonNull<ffi::OpusEncoder>,
}

// SAFETY: the encoder state is plain memory owned by this value; libopus keeps no thread
// affinity, and `&mut self` on every use serializes access.
unsafe impl Send for OpusEncoder {}

impl OpusEncoder {
    /// A VoIP encoder of 48 kHz audio with `settings`.
    pub fn new(settings: EncoderSettings) -> Result<Self> {
        Self::at_rate(OPUS_RATE, settings)
    }

    /// A VoIP encoder of audio at `rate` (one of [`OPUS_RATES`]) with `settings`.
    pub fn at_rate(rate: u32, settings: EncoderSettings) -> Result<Self> {
        check_rate(rate)?;
        let mut error = 0;
        // SAFETY: valid rate/channels/application; `error` is a valid out-pointer.
        let raw =
            unsafe { ffi::opus_encoder_create(rate as i32, 1, OPUS_APPLICATION_VOIP, &mut error) };
        let state = NonNull::new(raw)
            .filter(|_| error == 0)
            .ok_or_else(|| opus_error("creating the encoder", error))?;
        let encoder = OpusEncoder { state };
        encoder.ctl(
            OPUS_SET_COMPLEXITY_REQUEST,
            i32::from(settings.complexity.min(10)),
        )?;
        encoder.ctl(OPUS_SET_BITRATE_REQUEST, settings.bitrate as i32)?;
        encoder.ctl(OPUS_SET_SIGNAL_REQUEST, OPUS_SIGNAL_VOICE)?;
        encoder.ctl(OPUS_SET_INBAND_FEC_REQUEST, i32::from(settings.fec))?;
        encoder.ctl(
            OPUS_SET_PACKET_LOSS_PERC_REQUEST,
            i32::from(settings.expected_loss_percent.min(100)),
        )?;
        Ok(encoder)
    }

    fn ctl(&self, request: i32, value: i32) -> Result<()> {
        // SAFETY: the state is valid; these requests take one opus_int32 argument.
        let code = unsafe { ffi::opus_encoder_ctl(self.state.as_ptr(), request, value) };
        if code < 0 {
            return Err(opus_error("configuring the encoder", code));
        }
        Ok(())
    }

    /// Encodes one frame (2.5–60 ms: 120 … 2880 samples at 48 kHz) into `packet`; returns the
    /// packet's length. Allocation-free, also when it fails.
    pub fn encode(&mut self, pcm: &[i16], packet: &mut [u8]) -> Result<usize, OpusFailure> {
        // SAFETY: the state is valid; `pcm` holds `pcm.len()` samples of one channel and
        // `packet` has `packet.len()` writable bytes, as passed.
        let n = unsafe {
            ffi::opus_encode(
                self.state.as_ptr(),
                pcm.as_ptr(),
                pcm.len() as i32,
                packet.as_mut_ptr(),
                packet.len().min(i32::MAX as usize) as i32,
            )
        };
        if n < 0 {
            return Err(OpusFailure {
                what: "encoding",
                code: n,
            });
        }
        Ok(n as usize)
    }
}

impl Drop for OpusEncoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_encoder_create and destroyed once.
        unsafe { ffi::opus_encoder_destroy(self.state.as_ptr()) }
    }
}

/// An Opus decoder to mono PCM.
pub struct OpusDecoder {
    state: NonNull<ffi::OpusDecoder>,
}

// SAFETY: as for the encoder.
unsafe impl Send for OpusDecoder {}

impl OpusDecoder {
    /// A decoder to mono 48 kHz.
    pub fn new() -> Result<Self> {
        Self::at_rate(OPUS_RATE)
    }

    /// A decoder to mono PCM at `rate` (one of [`OPUS_RATES`]): any Opus packet decodes at any
    /// of them.
    pub fn at_rate(rate: u32) -> Result<Self> {
        check_rate(rate)?;
        let mut error = 0;
        // SAFETY: valid rate/channels; `error` is a valid out-pointer.
        let raw = unsafe { ffi::opus_decoder_create(rate as i32, 1, &mut error) };
        let state = NonNull::new(raw)
            .filter(|_| error == 0)
            .ok_or_else(|| opus_error("creating the decoder", error))?;
        Ok(OpusDecoder { state })
    }

    fn run(
        &mut self,
        packet: Option<&[u8]>,
        pcm: &mut [i16],
        fec: bool,
    ) -> Result<usize, OpusFailure> {
        let (data, len) = match packet {
            Some(p) => (p.as_ptr(), p.len().min(i32::MAX as usize) as i32),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: the state is valid; `data` is NULL (concealment) or points at `len` bytes;
        // `pcm` has room for `pcm.len()` samples of one channel.
        let n = unsafe {
            ffi::opus_decode(
                self.state.as_ptr(),
                data,
                len,
                pcm.as_mut_ptr(),
                pcm.len().min(i32::MAX as usize) as i32,
                i32::from(fec),
            )
        };
        if n < 0 {
            return Err(OpusFailure {
                what: "decoding",
                code: n,
            });
        }
        Ok(n as usize)
    }

    /// Decodes `packet` into `pcm` (room for [`max_frame`] samples at the decoder's rate is
    /// always enough); returns the samples written. A packet that does not decode is an error
    /// and changes nothing a listener would hear. Allocation-free, also when it fails.
    pub fn decode(&mut self, packet: &[u8], pcm: &mut [i16]) -> Result<usize, OpusFailure> {
        self.run(Some(packet), pcm, false)
    }

    /// Conceals one lost frame of `pcm.len()` samples (a multiple of 2.5 ms) from what came
    /// before. Allocation-free.
    pub fn conceal(&mut self, pcm: &mut [i16]) -> Result<usize, OpusFailure> {
        self.run(None, pcm, false)
    }

    /// Rebuilds the lost frame before `next` from the FEC data `next` carries (`pcm.len()` is
    /// the lost frame's length); conceals when `next` has none. Allocation-free.
    pub fn recover(&mut self, next: &[u8], pcm: &mut [i16]) -> Result<usize, OpusFailure> {
        self.run(Some(next), pcm, true)
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create and destroyed once.
        unsafe { ffi::opus_decoder_destroy(self.state.as_ptr()) }
    }
}

/// Samples in one packet, from its header (without decoding), or an error for a packet that is
/// not Opus or holds no audio.
pub fn packet_samples(packet: &[u8]) -> Result<usize> {
    if packet.is_empty() {
        return Err(Error::invalid_argument("opus: an empty packet"));
    }
    // SAFETY: `packet` is a valid slice of `packet.len()` bytes.
    let n = unsafe {
        ffi::opus_packet_get_nb_samples(
            packet.as_ptr(),
            packet.len().min(i32::MAX as usize) as i32,
            OPUS_RATE as i32,
        )
    };
    if n < 0 {
        return Err(opus_error("reading a packet header", n));
    }
    if n == 0 || n as usize > MAX_FRAME {
        return Err(Error::invalid_argument(format!(
            "opus: a packet of {n} samples (1 to {MAX_FRAME} at 48 kHz)"
        )));
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| ((i as f32 * hz * std::f32::consts::TAU / 48_000.0).sin() * 8000.0) as i16)
            .collect()
    }

    fn rms(pcm: &[i16]) -> f64 {
        (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
    }

    #[test]
    fn a_tone_survives_encoding_and_loss_is_concealed() {
        let mut encoder = OpusEncoder::new(EncoderSettings::default()).unwrap();
        let mut decoder = OpusDecoder::new().unwrap();
        let source = tone(440.0, FRAME_20MS * 50);
        let mut packets = Vec::new();
        for frame in source.chunks(FRAME_20MS) {
            let mut packet = [0u8; MAX_PACKET];
            let n = encoder.encode(frame, &mut packet).unwrap();
            assert!(n > 0 && n < 200, "{n} bytes for 20 ms at 32 kb/s");
            packets.push(packet[..n].to_vec());
        }
        assert_eq!(packet_samples(&packets[0]).unwrap(), FRAME_20MS);
        let mut out = vec![0i16; MAX_FRAME];
        let mut heard = Vec::new();
        for (i, packet) in packets.iter().enumerate() {
            let n = if i == 30 {
                decoder.conceal(&mut out[..FRAME_20MS]).unwrap()
            } else if i == 40 {
                decoder
                    .recover(&packets[41], &mut out[..FRAME_20MS])
                    .unwrap()
            } else {
                decoder.decode(packet, &mut out).unwrap()
            };
            assert_eq!(n, FRAME_20MS);
            heard.extend_from_slice(&out[..n]);
        }
        let (src, got) = (
            rms(&source[FRAME_20MS * 5..]),
            rms(&heard[FRAME_20MS * 5..]),
        );
        assert!((got / src - 1.0).abs() < 0.25, "rms {got} vs {src}");
        for lost in [30, 40] {
            let frame = &heard[lost * FRAME_20MS..(lost + 1) * FRAME_20MS];
            assert!(
                rms(frame) > src * 0.3,
                "frame {lost} was filled in, not silent"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let mut decoder = OpusDecoder::new().unwrap();
        let mut out = vec![0i16; MAX_FRAME];
        // TOC code 3 (arbitrary frame count) with a frame count of 0 is invalid.
        assert!(decoder.decode(&[0x03, 0x00], &mut out).is_err());
        assert!(packet_samples(&[0x03, 0x00]).is_err());
        assert!(packet_samples(&[]).is_err());
        assert!(decoder.decode(&[0xff; 3], &mut out).is_err());
    }
}
