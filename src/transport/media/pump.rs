//! The 20 ms media clock of a WebRTC session, shared by the LiveKit participant and direct
//! browser calls: each tick takes one frame of the peer's audio out of the jitter buffer into the
//! session's input ring, and one frame of the agent's audio out of the session's out ring into
//! the Opus encoder and onto the peer connection's audio line (nothing while the agent is silent;
//! a barge-in empties the out ring, so the line falls silent within a frame). Until the line can
//! carry audio, the agent's audio waits in the out ring (a greeting said at once is heard whole,
//! not lost to the handshake).
//!
//! Owned by the transport's task on the I/O runtime; nothing here blocks or locks.

use std::time::Instant;

use super::jitter::{JitterBuffer, JitterStats, Pulled};
use super::opus::{EncoderSettings, FRAME_20MS, MAX_PACKET, OpusEncoder};
use super::peer::{Peer, level_dbov};
use crate::error::Result;
use crate::transport::MediaEdge;

/// One session's media clock: its jitter buffer and its encoder.
pub struct Pump {
    jitter: JitterBuffer,
    reported: JitterStats,
    encoder: OpusEncoder,
    /// Ticks so far (the agent's RTP time is ticks × 960).
    ticks: u64,
    /// Whether the previous tick sent audio (the next one after a pause starts a talkspurt).
    sending: bool,
}

impl Pump {
    /// A clock whose encoder runs at `opus_complexity` (0–10).
    pub fn new(opus_complexity: u8) -> Result<Pump> {
        Ok(Pump {
            jitter: JitterBuffer::new()?,
            reported: JitterStats::default(),
            encoder: OpusEncoder::new(EncoderSettings {
                complexity: opus_complexity,
                ..EncoderSettings::default()
            })?,
            ticks: 0,
            sending: false,
        })
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// One Opus packet of the peer's audio, as it arrived.
    pub fn push(&mut self, seq: u16, ts: u32, payload: &[u8], at: Instant) {
        self.jitter.push(seq, ts, payload, at);
    }

    /// The peer's audio starts anew (a new peer connection: new SSRC, sequence and timestamps).
    pub fn restart_input(&mut self, edge: &MediaEdge) -> Result<()> {
        self.count_media(edge);
        self.jitter = JitterBuffer::new()?;
        self.reported = JitterStats::default();
        self.sending = false;
        Ok(())
    }

    /// One tick: a frame of the peer in, a frame of the agent out on `peer`'s audio line.
    /// `false` when the line cannot carry audio yet (the agent's audio waits).
    pub fn tick(&mut self, edge: &mut MediaEdge, peer: &mut Peer) -> Result<bool> {
        self.ticks += 1;
        let mut frame = [0i16; FRAME_20MS];
        if self.jitter.pull(&mut frame)? == Pulled::Audio {
            edge.writer.push(&frame);
        }
        self.count_media(edge);
        if !peer.can_send_audio() {
            self.sending = false;
            return Ok(false);
        }
        let n = edge.reader.read(&mut frame);
        if n == 0 {
            self.sending = false;
            return Ok(true);
        }
        frame[n..].fill(0);
        let mut packet = [0u8; MAX_PACKET];
        let len = self.encoder.encode(&frame, &mut packet)?;
        let rtp_time = self.ticks * FRAME_20MS as u64;
        self.sending =
            peer.write_audio(&packet[..len], rtp_time, level_dbov(&frame), !self.sending)?;
        // What was played is what the host may record.
        let monitor = &mut edge.monitor;
        if let Ok(chunk) = monitor.write_chunk_uninit(n.min(monitor.slots())) {
            chunk.fill_from_iter(frame[..n].iter().copied());
        }
        Ok(true)
    }

    /// Adds what the jitter buffer saw since last time to the engine's health counters.
    fn count_media(&mut self, edge: &MediaEdge) {
        let now = self.jitter.stats();
        let before = std::mem::replace(&mut self.reported, now);
        edge.counters.add_media(
            now.received.saturating_sub(before.received),
            now.lost.saturating_sub(before.lost),
            (now.concealed + now.recovered).saturating_sub(before.concealed + before.recovered),
        );
    }
}
