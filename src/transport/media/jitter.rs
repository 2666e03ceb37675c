//! A small adaptive jitter buffer for one incoming Opus stream, at the transport edge.
//!
//! RTP packets go in as they arrive — late, early, twice or not at all — and the pacer takes one
//! 20 ms frame of decoded 48 kHz audio out per tick, so that the session hears audio at the pace
//! it was spoken. Playout runs on the RTP clock (`play_ts`) a target delay behind the newest
//! packet; the target follows the measured jitter (RFC 3550's estimator) between one frame and
//! [`MAX_TARGET_MS`]. A frame that is missing when its turn comes is rebuilt from the next packet's
//! in-band FEC when that packet is already here, else concealed by the decoder (PLC); a gap the
//! sender left on purpose (DTX: the sequence numbers have no hole) is silence, not loss. Packets
//! that come after their turn are dropped and counted; when the buffer holds far more than the
//! target (the network sped up), a frame is skipped to catch up.
//!
//! Allocation-free after construction. I/O side (the transport's task).

use std::time::Instant;

use super::opus::{FRAME_20MS, MAX_FRAME, MAX_PACKET, OpusDecoder, packet_samples};
use crate::error::Result;

/// Packets the buffer holds at most (1.28 s of 20 ms packets).
const SLOTS: usize = 64;
/// The longest the target delay grows to.
pub const MAX_TARGET_MS: u32 = 200;
/// After this many concealed frames in a row with nothing to play, frames are plain silence (the
/// sender stopped or is muted).
const MAX_CONCEALED_IN_A_ROW: u32 = 5;
const SAMPLES_PER_MS: u32 = 48;

/// What the buffer has seen, for health and tests. Counts are packets (or 20 ms frames).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets taken in (duplicates and late ones excluded).
    pub received: u64,
    /// Packets that never arrived in time (sequence numbers skipped at playout): each one's
    /// frame was rebuilt or concealed.
    pub lost: u64,
    /// Lost frames rebuilt from the next packet's FEC.
    pub recovered: u64,
    /// Frames filled in by the decoder's concealment (lost packets without FEC, underruns).
    pub concealed: u64,
    /// Packets that arrived after their turn (dropped).
    pub late: u64,
    /// Packets that arrived twice (dropped).
    pub duplicates: u64,
    /// Packets that were not Opus (dropped).
    pub malformed: u64,
    /// Frames skipped to bring the delay back to the target.
    pub skipped: u64,
    /// The current target delay, in ms.
    pub target_ms: u32,
    /// The jitter estimate, in ms.
    pub jitter_ms: u32,
}

struct Slot {
    used: bool,
    seq: u16,
    ts: u32,
    samples: u32,
    len: usize,
    data: [u8; MAX_PACKET],
}

/// What one [`JitterBuffer::pull`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// Nothing to play yet (the stream has not started, or is buffering up to its target).
    Nothing,
    /// One frame of 48 kHz audio was written.
    Audio,
}

/// The jitter buffer of one incoming stream.
pub struct JitterBuffer {
    slots: Box<[Slot]>,
    decoder: OpusDecoder,
    /// Decoded audio not yet pulled (a packet may hold more than one frame).
    pcm: Box<[i16]>,
    pcm_start: usize,
    pcm_len: usize,
    /// RTP time of the next sample to play; `None` until playout starts.
    play_ts: Option<u32>,
    last_played_seq: Option<u16>,
    newest: Option<(u16, u32, u32)>,
    /// Arrival time and RTP time of the previous packet (jitter estimate).
    last_arrival: Option<(Instant, u32)>,
    /// Jitter estimate in RTP units × 16 (RFC 3550 fixed point).
    jitter_x16: u64,
    target_samples: u32,
    concealed_in_a_row: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer with a decoder; the target delay starts at one frame.
    pub fn new() -> Result<Self> {
        let slots = (0..SLOTS)
            .map(|_| Slot {
                used: false,
                seq: 0,
                ts: 0,
                samples: 0,
                len: 0,
                data: [0; MAX_PACKET],
            })
            .collect();
        Ok(JitterBuffer {
            slots,
            decoder: OpusDecoder::new()?,
            pcm: vec![0; MAX_FRAME * 2].into_boxed_slice(),
            pcm_start: 0,
            pcm_len: 0,
            play_ts: None,
            last_played_seq: None,
            newest: None,
            last_arrival: None,
            jitter_x16: 0,
            target_samples: FRAME_20MS as u32,
            concealed_in_a_row: 0,
            stats: JitterStats {
                target_ms: 20,
                ..JitterStats::default()
            },
        })
    }

    /// What it has seen so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Takes one RTP packet's Opus payload, `seq` and `ts` from its header, arriving `at`.
    pub fn push(&mut self, seq: u16, ts: u32, payload: &[u8], at: Instant) {
        let Ok(samples) = packet_samples(payload) else {
            self.stats.malformed += 1;
            return;
        };
        if payload.len() > MAX_PACKET {
            self.stats.malformed += 1;
            return;
        }
        if let Some(play) = self.play_ts {
            if ts_before(ts, play) {
                self.stats.late += 1;
                // The network is slower than the target allowed for: allow for more.
                self.grow_target();
                return;
            }
        }
        if self.slots.iter().any(|s| s.used && s.seq == seq) {
            self.stats.duplicates += 1;
            return;
        }
        self.update_jitter(ts, at);
        let Some(slot) = self.free_slot(ts) else {
            return;
        };
        slot.used = true;
        slot.seq = seq;
        slot.ts = ts;
        slot.samples = samples as u32;
        slot.len = payload.len();
        slot.data[..payload.len()].copy_from_slice(payload);
        self.stats.received += 1;
        if self
            .newest
            .is_none_or(|(_, newest_ts, _)| ts_before(newest_ts, ts))
        {
            self.newest = Some((seq, ts, samples as u32));
        }
    }

    /// Writes the next 20 ms ([`FRAME_20MS`] samples) into `out`. Called once per pacer tick.
    pub fn pull(&mut self, out: &mut [i16; FRAME_20MS]) -> Result<Pulled> {
        if self.play_ts.is_none() && !self.try_start() {
            return Ok(Pulled::Nothing);
        }
        self.catch_up_if_far_behind();
        while self.pcm_len < FRAME_20MS {
            self.decode_next()?;
        }
        out.copy_from_slice(&self.pcm[self.pcm_start..self.pcm_start + FRAME_20MS]);
        self.pcm_start += FRAME_20MS;
        self.pcm_len -= FRAME_20MS;
        if self.pcm_len == 0 {
            self.pcm_start = 0;
        }
        Ok(Pulled::Audio)
    }

    /// Starts playout once the buffer holds the target delay's worth.
    fn try_start(&mut self) -> bool {
        let Some(first) = self.oldest() else {
            return false;
        };
        let (first_ts, _) = (self.slots[first].ts, self.slots[first].seq);
        let Some(end) = self.newest_end() else {
            return false;
        };
        if end.wrapping_sub(first_ts) < self.target_samples {
            return false;
        }
        self.play_ts = Some(first_ts);
        true
    }

    /// Decodes what plays at `play_ts` into the PCM queue and advances it.
    fn decode_next(&mut self) -> Result<()> {
        let play = self.play_ts.expect("playout has started");
        let start = self.pcm_start + self.pcm_len;
        if start + MAX_FRAME > self.pcm.len() {
            self.pcm.copy_within(self.pcm_start..start, 0);
            self.pcm_start = 0;
        }
        let at = self.pcm_start + self.pcm_len;
        if let Some(i) = self.slot_at(play) {
            let slot = &mut self.slots[i];
            slot.used = false;
            let (seq, samples, len) = (slot.seq, slot.samples, slot.len);
            let n = match self
                .decoder
                .decode(&slot.data[..len], &mut self.pcm[at..at + MAX_FRAME])
            {
                Ok(n) => n,
                Err(_) => {
                    // Not decodable after all: its time is concealed.
                    self.stats.malformed += 1;
                    self.stats.lost += 1;
                    self.stats.concealed += 1;
                    self.decoder
                        .conceal(&mut self.pcm[at..at + samples as usize])?
                }
            };
            // Packets between the last one played and this one never came in time (the frames
            // they held were concealed while waiting).
            if let Some(last) = self.last_played_seq {
                let gap = seq.wrapping_sub(last).wrapping_sub(1);
                if gap < 0x8000 {
                    self.stats.lost += u64::from(gap);
                }
            }
            self.last_played_seq = Some(seq);
            self.concealed_in_a_row = 0;
            self.pcm_len += n;
            self.play_ts = Some(play.wrapping_add(n as u32));
            return Ok(());
        }
        let next = self.next_after(play);
        let lost = next.is_some_and(|n| self.sequence_gap_before(n));
        let newest_end = self.newest_end();
        let frame = &mut self.pcm[at..at + FRAME_20MS];
        match next {
            Some(next) if lost => {
                // Packets were lost: rebuild this frame from the next packet's FEC when it is
                // the very next one, else conceal. The next packet came from the network: when
                // it does not decode (its header is Opus, its body is not), conceal too; its own
                // turn counts it as malformed.
                self.stats.lost += 1;
                let next_slot = &self.slots[next];
                let recovered = next_slot.ts == play.wrapping_add(FRAME_20MS as u32)
                    && self
                        .decoder
                        .recover(&next_slot.data[..next_slot.len], frame)
                        .is_ok();
                if recovered {
                    self.stats.recovered += 1;
                } else {
                    self.decoder.conceal(frame)?;
                    self.stats.concealed += 1;
                }
                self.last_played_seq = self.last_played_seq.map(|s| s.wrapping_add(1));
                self.concealed_in_a_row = 0;
            }
            Some(next) => {
                // The sender paused on purpose (DTX): silence until its next packet — but do not
                // play out the whole pause when playout fell behind during it: resume at the
                // target delay behind the newest packet.
                let next_ts = self.slots[next].ts;
                if let Some(end) = newest_end {
                    let resume = end.wrapping_sub(self.target_samples);
                    if ts_before(play, resume) {
                        // Skip the rest of the pause; the caller decodes from there.
                        self.play_ts = Some(if ts_before(next_ts, resume) {
                            next_ts
                        } else {
                            resume
                        });
                        return Ok(());
                    }
                }
                frame.fill(0);
            }
            None => {
                // Nothing buffered: the packets are late (or the sender stopped). Fill the frame
                // — concealment briefly, then silence — without moving playout on, so that the
                // late packets still play when they come (the delay grows by a frame; it is
                // caught up later).
                if self.concealed_in_a_row < MAX_CONCEALED_IN_A_ROW {
                    self.decoder.conceal(frame)?;
                    self.stats.concealed += 1;
                    self.concealed_in_a_row += 1;
                } else {
                    frame.fill(0);
                }
                self.pcm_len += FRAME_20MS;
                return Ok(());
            }
        }
        self.pcm_len += FRAME_20MS;
        self.play_ts = Some(play.wrapping_add(FRAME_20MS as u32));
        Ok(())
    }

    /// Whether packets are missing between the last one played and slot `next`.
    fn sequence_gap_before(&self, next: usize) -> bool {
        self.last_played_seq
            .is_some_and(|last| self.slots[next].seq != last.wrapping_add(1))
    }

    /// When the buffer runs far ahead of the target, skip a frame to bring the delay down.
    fn catch_up_if_far_behind(&mut self) {
        let (Some(play), Some(end)) = (self.play_ts, self.newest_end()) else {
            return;
        };
        let depth = end.wrapping_sub(play);
        if depth > self.target_samples + 3 * FRAME_20MS as u32 && depth < u32::MAX / 2 {
            if let Some(i) = self.slot_at(play) {
                self.last_played_seq = Some(self.slots[i].seq);
                self.play_ts = Some(play.wrapping_add(self.slots[i].samples));
                self.slots[i].used = false;
                self.stats.skipped += 1;
            }
        }
    }

    fn update_jitter(&mut self, ts: u32, at: Instant) {
        if let Some((prev_at, prev_ts)) = self.last_arrival {
            let arrival = at.saturating_duration_since(prev_at).as_micros() as i64
                * i64::from(SAMPLES_PER_MS)
                / 1000;
            let sent = i64::from(ts.wrapping_sub(prev_ts) as i32);
            let d = (arrival - sent).unsigned_abs();
            // J += (|D| - J) / 16, kept ×16.
            self.jitter_x16 = self.jitter_x16 + d - self.jitter_x16.div_ceil(16);
            let jitter_ms = (self.jitter_x16 / 16 / u64::from(SAMPLES_PER_MS)) as u32;
            self.stats.jitter_ms = jitter_ms;
            // Three times the jitter, in whole frames, at least one.
            let wanted_ms = (jitter_ms * 3).div_ceil(20).max(1) * 20;
            if wanted_ms > self.stats.target_ms {
                self.set_target_ms(wanted_ms);
            }
        }
        if self
            .last_arrival
            .is_none_or(|(_, prev_ts)| ts_before(prev_ts, ts))
        {
            self.last_arrival = Some((at, ts));
        }
    }

    fn grow_target(&mut self) {
        self.set_target_ms(self.stats.target_ms + 20);
    }

    fn set_target_ms(&mut self, ms: u32) {
        let ms = ms.clamp(20, MAX_TARGET_MS);
        self.stats.target_ms = ms;
        self.target_samples = ms * SAMPLES_PER_MS;
    }

    fn free_slot(&mut self, ts: u32) -> Option<&mut Slot> {
        if let Some(i) = self.slots.iter().position(|s| !s.used) {
            return Some(&mut self.slots[i]);
        }
        // Full: the oldest packet goes (counted as lost when its turn comes), unless the new one
        // is older still.
        let oldest = self.oldest()?;
        if ts_before(ts, self.slots[oldest].ts) {
            return None;
        }
        Some(&mut self.slots[oldest])
    }

    fn oldest(&self) -> Option<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].used)
            .min_by(|&a, &b| ts_order(self.slots[a].ts, self.slots[b].ts))
    }

    fn slot_at(&self, ts: u32) -> Option<usize> {
        self.slots.iter().position(|s| s.used && s.ts == ts)
    }

    fn next_after(&self, ts: u32) -> Option<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].used && ts_before(ts, self.slots[i].ts))
            .min_by(|&a, &b| ts_order(self.slots[a].ts, self.slots[b].ts))
    }

    fn newest_end(&self) -> Option<u32> {
        self.newest.map(|(_, ts, samples)| ts.wrapping_add(samples))
    }
}

/// Whether RTP time `a` comes before `b` (modulo wrap-around).
fn ts_before(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

fn ts_order(a: u32, b: u32) -> std::cmp::Ordering {
    if a == b {
        std::cmp::Ordering::Equal
    } else if ts_before(a, b) {
        std::cmp::Ordering::Less
    } else {
        std::cmp::Ordering::Greater
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::opus::{EncoderSettings, OpusEncoder};
    use super::*;

    /// `frames` 20 ms packets of a tone, encoded with FEC.
    fn packets(frames: usize) -> Vec<Vec<u8>> {
        let mut encoder = OpusEncoder::new(EncoderSettings::default()).unwrap();
        (0..frames)
            .map(|f| {
                let pcm: Vec<i16> = (0..FRAME_20MS)
                    .map(|i| {
                        let t = (f * FRAME_20MS + i) as f32 / 48_000.0;
                        ((t * 300.0 * std::f32::consts::TAU).sin() * 9000.0) as i16
                    })
                    .collect();
                let mut out = [0u8; MAX_PACKET];
                let n = encoder.encode(&pcm, &mut out).unwrap();
                out[..n].to_vec()
            })
            .collect()
    }

    fn ts(i: usize) -> u32 {
        1_000_000u32.wrapping_add((i * FRAME_20MS) as u32)
    }

    #[test]
    fn in_order_packets_play_one_frame_per_pull() {
        let p = packets(10);
        let mut jb = JitterBuffer::new().unwrap();
        let t0 = Instant::now();
        let mut out = [0i16; FRAME_20MS];
        assert_eq!(jb.pull(&mut out).unwrap(), Pulled::Nothing);
        for (i, packet) in p.iter().enumerate() {
            jb.push(
                i as u16,
                ts(i),
                packet,
                t0 + Duration::from_millis(20 * i as u64),
            );
            assert_eq!(jb.pull(&mut out).unwrap(), Pulled::Audio);
        }
        let s = jb.stats();
        assert_eq!((s.received, s.lost, s.late, s.concealed), (10, 0, 0, 0));
    }

    #[test]
    fn reordered_packets_are_put_back_in_order_and_a_lost_one_is_rebuilt_from_fec() {
        let p = packets(20);
        let mut jb = JitterBuffer::new().unwrap();
        let t0 = Instant::now();
        let mut out = [0i16; FRAME_20MS];
        // 3 and 2 swapped; 8 never arrives. Two packets are buffered before playout pulls.
        let order = [
            0, 1, 3, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
        ];
        let mut pulls = 0;
        for (k, &i) in order.iter().enumerate() {
            jb.push(
                i as u16,
                ts(i),
                &p[i],
                t0 + Duration::from_millis(20 * k as u64),
            );
            if k >= 2 {
                assert_eq!(jb.pull(&mut out).unwrap(), Pulled::Audio);
                pulls += 1;
            }
        }
        while pulls < 20 {
            assert_eq!(jb.pull(&mut out).unwrap(), Pulled::Audio);
            pulls += 1;
        }
        let s = jb.stats();
        assert_eq!(
            (s.received, s.lost, s.recovered, s.late),
            (19, 1, 1, 0),
            "{s:?}"
        );
        assert_eq!((s.duplicates, s.skipped), (0, 0));
    }

    #[test]
    fn a_lost_frame_before_a_packet_that_does_not_decode_is_concealed() {
        // Found by the fuzz target media_jitter: rebuilding a lost frame from the FEC of a next
        // packet whose header is Opus but whose body libopus refuses failed the pull, and with
        // it the LiveKit participant, so any peer could end the agent's session.
        let p = packets(1);
        let corrupt: Vec<u8> = [0x26; 31]
            .into_iter()
            .chain([0x14, 0x00, 0x03, 0xfe, 0xff, 0xff, 0x01])
            .collect();
        assert_eq!(packet_samples(&corrupt).unwrap(), FRAME_20MS);
        let mut jb = JitterBuffer::new().unwrap();
        let t0 = Instant::now();
        let mut out = [0i16; FRAME_20MS];
        jb.push(0, ts(0), &p[0], t0);
        jb.push(2, ts(2), &corrupt, t0 + Duration::from_millis(40));
        for _ in 0..4 {
            assert_eq!(jb.pull(&mut out).unwrap(), Pulled::Audio);
        }
        let s = jb.stats();
        assert_eq!((s.received, s.recovered, s.malformed), (2, 0, 1), "{s:?}");
        assert_eq!((s.lost, s.concealed), (2, 3), "{s:?}");
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped_and_widen_the_target() {
        let p = packets(6);
        let mut jb = JitterBuffer::new().unwrap();
        let t0 = Instant::now();
        let mut out = [0i16; FRAME_20MS];
        jb.push(0, ts(0), &p[0], t0);
        jb.push(0, ts(0), &p[0], t0);
        jb.pull(&mut out).unwrap();
        // 2 overtakes 1: at its turn 1 is given up (rebuilt from 2), so 1 comes too late.
        jb.push(2, ts(2), &p[2], t0 + Duration::from_millis(20));
        jb.pull(&mut out).unwrap();
        jb.push(1, ts(1), &p[1], t0 + Duration::from_millis(40));
        let s = jb.stats();
        assert_eq!((s.duplicates, s.late, s.lost), (1, 1, 1), "{s:?}");
        assert!(s.target_ms > 20, "{s:?}");
    }

    #[test]
    fn packets_held_up_together_all_play_instead_of_being_dropped() {
        let p = packets(5);
        let mut jb = JitterBuffer::new().unwrap();
        let t0 = Instant::now();
        let mut out = [0i16; FRAME_20MS];
        jb.push(0, ts(0), &p[0], t0);
        jb.pull(&mut out).unwrap();
        // The network stalls for 40 ms: two frames are filled in while waiting...
        jb.pull(&mut out).unwrap();
        jb.pull(&mut out).unwrap();
        // ...then everything arrives at once, and all of it is played.
        for (i, packet) in p.iter().enumerate().skip(1) {
            jb.push(i as u16, ts(i), packet, t0 + Duration::from_millis(60));
        }
        for _ in 1..5 {
            jb.pull(&mut out).unwrap();
        }
        let s = jb.stats();
        assert_eq!(
            (s.received, s.lost, s.late, s.concealed),
            (5, 0, 0, 2),
            "{s:?}"
        );
    }

    #[test]
    fn a_packet_that_never_comes_is_concealed_and_counted_lost() {
        let p = packets(4);
        let mut jb = JitterBuffer::new().unwrap();
        let t0 = Instant::now();
        let mut out = [0i16; FRAME_20MS];
        jb.push(0, ts(0), &p[0], t0);
        jb.pull(&mut out).unwrap();
        // Packet 1 is lost; at its turn nothing newer is here yet: a frame is filled in while
        // waiting; once 2 is here, 1 is given up and rebuilt from 2's FEC.
        jb.pull(&mut out).unwrap();
        jb.push(2, ts(2), &p[2], t0 + Duration::from_millis(40));
        jb.pull(&mut out).unwrap();
        jb.pull(&mut out).unwrap();
        let s = jb.stats();
        assert_eq!(
            (s.received, s.lost, s.concealed, s.recovered, s.late),
            (2, 1, 1, 1, 0),
            "{s:?}"
        );
    }

    #[test]
    fn a_pause_without_a_sequence_gap_is_silence_not_loss_and_speech_resumes_on_time() {
        let p = packets(4);
        let mut jb = JitterBuffer::new().unwrap();
        let t0 = Instant::now();
        let mut out = [0i16; FRAME_20MS];
        jb.push(0, ts(0), &p[0], t0);
        jb.pull(&mut out).unwrap();
        // DTX: the sender says nothing for 9 frames; playout fills in, then goes silent.
        for i in 0..9 {
            jb.pull(&mut out).unwrap();
            if i >= MAX_CONCEALED_IN_A_ROW {
                assert!(
                    out.iter().all(|&s| s == 0),
                    "frame {i} of the pause is silence"
                );
            }
        }
        // Its next packet (seq 1) is 10 frames later on the RTP clock, and plays at once.
        jb.push(1, ts(10), &p[1], t0 + Duration::from_millis(200));
        jb.pull(&mut out).unwrap();
        assert!(out.iter().any(|&s| s != 0), "speech resumes at once");
        assert_eq!((jb.stats().lost, jb.stats().late), (0, 0));
    }

    #[test]
    fn garbage_is_counted_and_dropped() {
        let mut jb = JitterBuffer::new().unwrap();
        jb.push(0, 0, &[0x03, 0x00], Instant::now());
        jb.push(1, 960, &[], Instant::now());
        assert_eq!(jb.stats().malformed, 2);
        assert_eq!(jb.stats().received, 0);
    }
}
