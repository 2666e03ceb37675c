//! The host transport's Opus ends, for hosts that carry a session's audio over their own
//! transport (session keys `input_codec` / `output_codec` `"opus"`): [`OpusInput`] decodes the
//! host's packets into PCM for the input ring, [`OpusOutput`] encodes the agent's audio from the
//! out ring into 20 ms packets.
//!
//! Both are built with the session (every buffer and the codec state are allocated then, once)
//! and used inside the host's audio calls, on the host's thread, under the same one-caller-at-a-
//! time rule as the PCM calls ([`super::host`]). Decoding and encoding allocate nothing and take
//! no lock (see [`super::media::opus`]); a refusal is an [`OpusRefusal`], a plain value.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::media::opus::{
    EncoderSettings, MAX_PACKET, OpusDecoder, OpusEncoder, OpusFailure, frame_20ms, max_frame,
};
use crate::config::{Codec, SessionConfig};
use crate::error::Result;
use crate::rt::shared::EngineCounters;

/// How long a partial frame of agent audio waits for more before it is completed with silence
/// and sent: the end of a reply is sent, not held back until the next one. Audio arrives far
/// more often than this while the agent speaks (playout keeps the out ring filled ahead).
const TAIL_WAIT: Duration = Duration::from_millis(40);

/// Why an Opus call did nothing, known without allocating (the C calls report it with a static
/// message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusRefusal {
    /// The packet did not decode; nothing was queued.
    Undecodable(OpusFailure),
    /// The caller's buffer cannot hold the next packet; the packet is kept for the next call.
    BufferTooSmall,
    /// The encoder failed (a bug: its frames and buffer are always valid); the frame is lost.
    EncoderFailed(OpusFailure),
}

/// The decoders and encoders a host session's configuration asks for: `(input, output)`, `None`
/// on a PCM side. Built at the session's own rates (validated to be Opus rates).
pub fn host_opus_ends(
    session: &SessionConfig,
    counters: Arc<EngineCounters>,
) -> Result<(Option<OpusInput>, Option<OpusOutput>)> {
    let input = match session.input_codec {
        Codec::Opus => Some(OpusInput::new(session.input_sample_rate, counters)?),
        Codec::Pcm => None,
    };
    let output = match session.output_codec {
        Codec::Opus => {
            let defaults = EncoderSettings::default();
            let settings = EncoderSettings {
                complexity: session.opus_complexity.unwrap_or(defaults.complexity),
                bitrate: session.opus_bitrate.unwrap_or(defaults.bitrate),
                ..defaults
            };
            Some(OpusOutput::new(session.output_sample_rate, settings)?)
        }
        Codec::Pcm => None,
    };
    Ok((input, output))
}

/// Decodes the host's Opus packets, or conceals a lost one, into PCM at the session's input
/// rate. One thread at a time (the input's producer).
pub struct OpusInput {
    decoder: OpusDecoder,
    /// Room for the longest packet (120 ms).
    pcm: Box<[i16]>,
    /// Samples of the last packet: how much a lost packet's concealment fills in.
    last_samples: usize,
    /// Samples of 20 ms (counting concealed frames for health).
    frame: usize,
    counters: Arc<EngineCounters>,
}

impl OpusInput {
    /// A decoder to PCM at `rate` (one of the Opus rates); `counters` gets the packets decoded,
    /// lost and concealed (`media_*` in health).
    pub fn new(rate: u32, counters: Arc<EngineCounters>) -> Result<Self> {
        Ok(OpusInput {
            decoder: OpusDecoder::at_rate(rate)?,
            pcm: vec![0; max_frame(rate)].into_boxed_slice(),
            last_samples: frame_20ms(rate),
            frame: frame_20ms(rate),
            counters,
        })
    }

    /// Decodes `packet`, or conceals one lost packet (as long as the last one, 20 ms before any
    /// came) when it is `None` or empty (as libopus takes an empty one), and returns the audio. A
    /// packet that does not decode is refused and changes nothing. In-band FEC is not used: it
    /// needs the packet after the lost one, which this call never holds. Allocation-free.
    pub fn decode(&mut self, packet: Option<&[u8]>) -> Result<&[i16], OpusRefusal> {
        let n = match packet.filter(|p| !p.is_empty()) {
            Some(packet) => {
                let n = self
                    .decoder
                    .decode(packet, &mut self.pcm)
                    .map_err(OpusRefusal::Undecodable)?;
                self.last_samples = n;
                self.counters
                    .media_packets_received
                    .fetch_add(1, Ordering::Relaxed);
                n
            }
            None => {
                let n = self
                    .decoder
                    .conceal(&mut self.pcm[..self.last_samples])
                    .map_err(OpusRefusal::Undecodable)?;
                self.counters.add_media(0, 1, n.div_ceil(self.frame) as u64);
                n
            }
        };
        Ok(&self.pcm[..n])
    }
}

/// Encodes the agent's audio at the session's output rate into one 20 ms Opus packet at a time.
/// One thread at a time (the output's consumer).
pub struct OpusOutput {
    encoder: OpusEncoder,
    /// The frame being gathered (20 ms) and how much of it is filled.
    frame: Box<[i16]>,
    filled: usize,
    /// An encoded packet the caller's buffer could not take yet (`pending` bytes).
    packet: Box<[u8]>,
    pending: usize,
    /// When agent audio last came in.
    last_audio: Option<Instant>,
}

impl OpusOutput {
    /// An encoder of audio at `rate` (one of the Opus rates) with `settings`.
    pub fn new(rate: u32, settings: EncoderSettings) -> Result<Self> {
        Ok(OpusOutput {
            encoder: OpusEncoder::at_rate(rate, settings)?,
            frame: vec![0; frame_20ms(rate)].into_boxed_slice(),
            filled: 0,
            packet: vec![0; MAX_PACKET].into_boxed_slice(),
            pending: 0,
            last_audio: None,
        })
    }

    /// Writes the next packet into `buf` and returns its length; 0 when no whole frame is ready.
    /// `source` fills a slice with agent audio and returns how much it wrote (the out ring).
    /// A frame the agent's audio ends in is completed with silence once nothing more came for
    /// [`TAIL_WAIT`] (`now` is the caller's clock). A packet that does not fit in `buf` is kept
    /// for the next call ([`OpusRefusal::BufferTooSmall`]); [`MAX_PACKET`] bytes always suffice.
    /// Allocation-free.
    pub fn read(
        &mut self,
        source: impl FnOnce(&mut [i16]) -> usize,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<usize, OpusRefusal> {
        if self.pending == 0 && !self.encode_next(source, now)? {
            return Ok(0);
        }
        let n = self.pending;
        let Some(out) = buf.get_mut(..n) else {
            return Err(OpusRefusal::BufferTooSmall);
        };
        out.copy_from_slice(&self.packet[..n]);
        self.pending = 0;
        Ok(n)
    }

    /// Gathers audio into the frame and encodes it once it is whole (or its tail has waited
    /// long enough); whether a packet is now pending.
    fn encode_next(
        &mut self,
        source: impl FnOnce(&mut [i16]) -> usize,
        now: Instant,
    ) -> Result<bool, OpusRefusal> {
        let n = source(&mut self.frame[self.filled..]);
        if n > 0 {
            self.filled += n;
            self.last_audio = Some(now);
        }
        if self.filled == 0 {
            return Ok(false);
        }
        if self.filled < self.frame.len() {
            let waited = self
                .last_audio
                .map_or(Duration::MAX, |at| now.saturating_duration_since(at));
            if waited < TAIL_WAIT {
                return Ok(false);
            }
            self.frame[self.filled..].fill(0);
        }
        self.filled = 0;
        self.pending = self
            .encoder
            .encode(&self.frame, &mut self.packet)
            .map_err(OpusRefusal::EncoderFailed)?;
        Ok(self.pending > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, rate: u32, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| ((i as f32 * hz * std::f32::consts::TAU / rate as f32).sin() * 8000.0) as i16)
            .collect()
    }

    fn rms(pcm: &[i16]) -> f64 {
        (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
    }

    /// Reads from `audio` as the out ring would.
    fn take_from(audio: &mut &[i16]) -> impl FnOnce(&mut [i16]) -> usize {
        move |out: &mut [i16]| {
            let n = out.len().min(audio.len());
            out[..n].copy_from_slice(&audio[..n]);
            *audio = &audio[n..];
            n
        }
    }

    #[test]
    fn agent_audio_round_trips_through_20_ms_packets_at_every_opus_rate() {
        for rate in [8000, 16000, 24000, 48000] {
            let source = tone(300.0, rate, frame_20ms(rate) * 25 + 7);
            let mut output = OpusOutput::new(rate, EncoderSettings::default()).unwrap();
            let mut input = OpusInput::new(rate, Arc::default()).unwrap();
            let mut left = &source[..];
            let mut buf = [0u8; MAX_PACKET];
            let mut heard = Vec::new();
            let start = Instant::now();
            // Odd-sized pieces, as the out ring may hold them.
            while !left.is_empty() {
                let piece = 333.min(left.len());
                let mut ring = &left[..piece];
                let n = output.read(take_from(&mut ring), start, &mut buf).unwrap();
                left = &left[piece - ring.len()..];
                if n > 0 {
                    assert!(n < 200, "{n} bytes for 20 ms at 32 kb/s");
                    heard.extend_from_slice(input.decode(Some(&buf[..n])).unwrap());
                }
            }
            // 25 whole frames went out; the 7-sample tail waits for more audio, then goes out
            // padded with silence.
            let frame = frame_20ms(rate);
            assert_eq!(heard.len(), 25 * frame, "{rate} Hz");
            let mut nothing: &[i16] = &[];
            assert_eq!(output.read(take_from(&mut nothing), start, &mut buf), Ok(0));
            let later = start + TAIL_WAIT;
            let n = output
                .read(take_from(&mut nothing), later, &mut buf)
                .unwrap();
            assert!(n > 0, "the tail went out at {rate} Hz");
            assert_eq!(input.decode(Some(&buf[..n])).unwrap().len(), frame);
            assert_eq!(output.read(take_from(&mut nothing), later, &mut buf), Ok(0));
            let (src, got) = (rms(&source[frame * 5..]), rms(&heard[frame * 5..]));
            assert!(
                (got / src - 1.0).abs() < 0.3,
                "{rate} Hz: rms {got} vs {src}"
            );
        }
    }

    #[test]
    fn a_packet_too_big_for_the_buffer_is_kept_for_the_next_call() {
        let rate = 16000;
        let mut output = OpusOutput::new(rate, EncoderSettings::default()).unwrap();
        let audio = tone(200.0, rate, frame_20ms(rate) * 2);
        let mut ring = &audio[..];
        let now = Instant::now();
        let mut small = [0u8; 4];
        assert_eq!(
            output.read(take_from(&mut ring), now, &mut small),
            Err(OpusRefusal::BufferTooSmall)
        );
        // The second frame stays in the ring while the first packet waits.
        assert_eq!(ring.len(), frame_20ms(rate));
        let mut buf = [0u8; MAX_PACKET];
        let first = output.read(take_from(&mut ring), now, &mut buf).unwrap();
        assert!(first > 4);
        assert_eq!(ring.len(), frame_20ms(rate), "the kept packet came first");
        let second = output.read(take_from(&mut ring), now, &mut buf).unwrap();
        assert!(second > 0 && ring.is_empty());
        let mut decoder = OpusInput::new(rate, Arc::default()).unwrap();
        assert_eq!(decoder.decode(Some(&buf[..second])).unwrap().len(), 320);
    }

    #[test]
    fn a_lost_packet_is_concealed_as_long_as_the_last_and_counted() {
        let rate = 48000;
        let counters = Arc::new(EngineCounters::default());
        let mut input = OpusInput::new(rate, counters.clone()).unwrap();
        // Before any packet: 20 ms (of silence).
        assert_eq!(input.decode(None).unwrap().len(), 960);
        let mut encoder = OpusEncoder::at_rate(rate, EncoderSettings::default()).unwrap();
        let source = tone(440.0, rate, 2880 * 4);
        let mut packet = [0u8; MAX_PACKET];
        for frame in source.chunks(2880) {
            let n = encoder.encode(frame, &mut packet).unwrap();
            assert_eq!(input.decode(Some(&packet[..n])).unwrap().len(), 2880);
        }
        let concealed = input.decode(None).unwrap();
        assert_eq!(concealed.len(), 2880, "as long as the last packet (60 ms)");
        assert!(rms(concealed) > 500.0, "filled in from what came before");
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(load(&counters.media_packets_received), 4);
        assert_eq!(load(&counters.media_packets_lost), 2);
        assert_eq!(load(&counters.media_frames_concealed), 1 + 3);
    }

    #[test]
    fn a_packet_that_does_not_decode_is_refused_without_a_trace() {
        let counters = Arc::new(EngineCounters::default());
        let mut input = OpusInput::new(16000, counters.clone()).unwrap();
        for garbage in [&[0x03u8, 0x00][..], &[0xff; 3]] {
            match input.decode(Some(garbage)) {
                Err(OpusRefusal::Undecodable(failure)) => assert!(failure.code() < 0),
                other => panic!("{garbage:?}: {other:?}"),
            }
        }
        assert_eq!(counters.media_packets_received.load(Ordering::Relaxed), 0);
        // An empty packet is a lost one (20 ms before any came), not 120 ms of concealment.
        assert_eq!(input.decode(Some(&[])).unwrap().len(), 320);
        assert_eq!(counters.media_packets_lost.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn only_opus_rates_make_codecs() {
        assert!(OpusInput::new(44100, Arc::default()).is_err());
        assert!(OpusOutput::new(32000, EncoderSettings::default()).is_err());
        let config = SessionConfig {
            input_codec: Codec::Opus,
            output_sample_rate: 24000,
            output_codec: Codec::Opus,
            opus_bitrate: Some(16000),
            ..SessionConfig::default()
        };
        let (input, output) = host_opus_ends(&config, Arc::default()).unwrap();
        assert!(input.is_some() && output.is_some());
        let (input, output) = host_opus_ends(&SessionConfig::default(), Arc::default()).unwrap();
        assert!(input.is_none() && output.is_none());
    }
}
