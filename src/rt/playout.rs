//! Playout: moves reply audio from the reply ring (filled by TTS on the I/O side) into the out
//! ring that `read_audio` drains, flushes both on barge-in, and pauses and resumes a reply while
//! the user's words decide (`interruptions.decide_by` `"words"`).

use std::sync::atomic::Ordering;

use super::message::{RtControl, RtOutput};
use super::shared::RtShared;

/// What one [`Playout::step`] did.
#[derive(Default, Clone, Copy)]
pub struct PlayoutStep {
    /// Playout started or finished.
    pub event: Option<RtOutput>,
    /// Reply audio was moved out and the reply ring is at most half full while the reply goes
    /// on: the I/O side may refill it.
    pub refill_wanted: bool,
}

/// The playout stage. Lives on the realtime thread.
pub struct Playout {
    reply: rtrb::Consumer<i16>,
    out: rtrb::Producer<i16>,
    out_capacity: usize,
    playing: bool,
    reply_done: bool,
    discarding: bool,
    /// Paused: nothing moves until [`RtControl::Resume`] or a flush.
    paused: bool,
    /// The last `out_capacity` samples written to the out ring (a circle at `recent_at`), so a
    /// pause can take back what the host had not read and a resume say it again.
    recent: Box<[i16]>,
    recent_at: usize,
    /// Samples of `recent` (the newest) to write again when the reply resumes.
    replay: usize,
}

impl Playout {
    /// Playout between the two ring halves.
    pub fn new(reply: rtrb::Consumer<i16>, out: rtrb::Producer<i16>) -> Self {
        let out_capacity = out.buffer().capacity();
        Playout {
            reply,
            out,
            out_capacity,
            playing: false,
            reply_done: true,
            discarding: false,
            paused: false,
            recent: vec![0; out_capacity.max(1)].into_boxed_slice(),
            recent_at: 0,
            replay: 0,
        }
    }

    /// Whether reply audio is being played (barge-in applies), paused or not.
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// Whether the reply is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Pauses the reply: the host stops hearing it at once (what the out ring holds is skipped
    /// by `read_audio`, and kept to be said again on resume), nothing more moves out.
    pub fn pause(&mut self, shared: &RtShared) {
        if self.paused || !self.playing {
            return;
        }
        // Unread samples: the host skips them from here on. A read between this count and the
        // store below is heard twice after a resume (at most one host read).
        self.replay = self.out_capacity - self.out.slots();
        shared.out_flush_at.store(
            shared.out_written.load(Ordering::Relaxed),
            Ordering::Release,
        );
        self.paused = true;
    }

    /// Whether playout has work: a reply playing or reply audio waiting.
    pub fn is_busy(&self) -> bool {
        self.playing || !self.reply.is_empty()
    }

    /// Applies a control from the I/O side.
    pub fn control(&mut self, control: RtControl, shared: &RtShared) {
        match control {
            RtControl::ReplyStarted => self.reply_done = false,
            RtControl::ReplyFinished => self.reply_done = true,
            RtControl::Interrupt => self.flush(shared),
            RtControl::ReplyCancelled => {
                self.skip_reply();
                self.discarding = false;
                self.reply_done = true;
                self.paused = false;
                self.replay = 0;
            }
            RtControl::Resume => self.paused = false,
        }
    }

    /// Stops playout at once: drops queued reply audio, tells `read_audio` to skip what the out
    /// ring holds, and discards reply audio until the producer confirms it stopped.
    pub fn flush(&mut self, shared: &RtShared) {
        self.skip_reply();
        shared.out_flush_at.store(
            shared.out_written.load(Ordering::Relaxed),
            Ordering::Release,
        );
        self.playing = false;
        self.discarding = true;
        self.paused = false;
        self.replay = 0;
    }

    /// Moves as much reply audio as fits into the out ring and reports playout start and end.
    /// Realtime-safe.
    pub fn step(&mut self, shared: &RtShared, now_us: u64) -> PlayoutStep {
        if self.discarding {
            self.skip_reply();
            return PlayoutStep::default();
        }
        if self.paused {
            return PlayoutStep::default();
        }
        self.replay_recent(shared);
        let n = self.reply.slots().min(self.out.slots());
        let mut event = None;
        if n > 0 {
            if let (Ok(read), Ok(write)) =
                (self.reply.read_chunk(n), self.out.write_chunk_uninit(n))
            {
                let (a, b) = read.as_slices();
                for &sample in a.iter().chain(b) {
                    self.recent[self.recent_at] = sample;
                    self.recent_at = (self.recent_at + 1) % self.recent.len();
                }
                write.fill_from_iter(a.iter().chain(b).copied());
                read.commit_all();
                shared.out_written.fetch_add(n as u64, Ordering::Release);
            }
            if !self.playing {
                self.playing = true;
                event = Some(RtOutput::PlayoutStarted { at_us: now_us });
            }
        }
        let host_has_read_all = self.out.slots() == self.out_capacity;
        if self.playing && self.reply_done && self.reply.is_empty() && host_has_read_all {
            self.playing = false;
            event = Some(RtOutput::PlayoutFinished { at_us: now_us });
        }
        let reply_capacity = self.reply.buffer().capacity();
        PlayoutStep {
            event,
            refill_wanted: n > 0 && !self.reply_done && self.reply.slots() <= reply_capacity / 2,
        }
    }

    /// After a resume: writes the samples the pause took back from the host again (the newest
    /// `replay` of `recent`, oldest first), as far as the out ring has room.
    fn replay_recent(&mut self, shared: &RtShared) {
        let n = self.replay.min(self.out.slots());
        if n == 0 {
            return;
        }
        let len = self.recent.len();
        let first = (self.recent_at + len - self.replay) % len;
        if let Ok(write) = self.out.write_chunk_uninit(n) {
            let recent = &self.recent;
            write.fill_from_iter((0..n).map(|i| recent[(first + i) % len]));
            shared.out_written.fetch_add(n as u64, Ordering::Release);
            self.replay -= n;
        }
    }

    fn skip_reply(&mut self) {
        let n = self.reply.slots();
        if let Ok(chunk) = self.reply.read_chunk(n) {
            chunk.commit_all();
        }
    }
}
