//! Playout: moves reply audio from the reply ring (filled by TTS on the I/O side) into the out
//! ring that `read_audio` drains, and flushes both on barge-in.

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
        }
    }

    /// Whether reply audio is being played (barge-in applies).
    pub fn is_playing(&self) -> bool {
        self.playing
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
            }
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
    }

    /// Moves as much reply audio as fits into the out ring and reports playout start and end.
    /// Realtime-safe.
    pub fn step(&mut self, shared: &RtShared, now_us: u64) -> PlayoutStep {
        if self.discarding {
            self.skip_reply();
            return PlayoutStep::default();
        }
        let n = self.reply.slots().min(self.out.slots());
        let mut event = None;
        if n > 0 {
            if let (Ok(read), Ok(write)) =
                (self.reply.read_chunk(n), self.out.write_chunk_uninit(n))
            {
                let (a, b) = read.as_slices();
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

    fn skip_reply(&mut self) {
        let n = self.reply.slots();
        if let Ok(chunk) = self.reply.read_chunk(n) {
            chunk.commit_all();
        }
    }
}
