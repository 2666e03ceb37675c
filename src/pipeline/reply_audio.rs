//! Feeds reply audio into the reply ring: converts it from the TTS rate to the host's output
//! rate and buffers what does not fit yet. Runs on the I/O side.

use std::collections::VecDeque;

use crate::dsp::resample::StreamResampler;

/// The reply ring's producer plus a conversion stage and an overflow buffer.
pub struct ReplyAudio {
    ring: rtrb::Producer<i16>,
    output_rate: u32,
    resampler: Option<(u32, StreamResampler)>,
    pending: VecDeque<i16>,
    high_water: usize,
}

impl ReplyAudio {
    /// Feeds `ring` with audio at `output_rate`.
    pub fn new(ring: rtrb::Producer<i16>, output_rate: u32) -> Self {
        ReplyAudio {
            ring,
            output_rate,
            resampler: None,
            pending: VecDeque::new(),
            high_water: output_rate as usize,
        }
    }

    /// Whether more audio may be accepted: less than one second waits outside the ring. Keeps
    /// synthesis from running far ahead of playout.
    pub fn has_room(&self) -> bool {
        self.pending.len() < self.high_water
    }

    /// Adds `pcm` at `rate`, converted to the output rate, and moves what fits into the ring.
    /// The rate may change between pushes (each chunk of some models states its own).
    pub fn push(&mut self, pcm: &[i16], rate: u32) {
        if self
            .resampler
            .as_ref()
            .is_some_and(|(from, _)| *from != rate)
        {
            self.drain_resampler();
        }
        if rate == self.output_rate {
            self.pending.extend(pcm);
        } else {
            let output_rate = self.output_rate;
            let (_, resampler) = self
                .resampler
                .get_or_insert_with(|| (rate, StreamResampler::new(rate, output_rate)));
            self.pending.extend(resampler.push(pcm));
        }
        self.pump();
    }

    /// Converts what the resampler still holds (end of a reply).
    pub fn finish(&mut self) {
        self.drain_resampler();
        self.pump();
    }

    fn drain_resampler(&mut self) {
        if let Some((_, mut resampler)) = self.resampler.take() {
            self.pending.extend(resampler.finish());
        }
    }

    /// Moves buffered audio into the ring as far as it fits.
    pub fn pump(&mut self) {
        let n = self.pending.len().min(self.ring.slots());
        if n == 0 {
            return;
        }
        if let Ok(chunk) = self.ring.write_chunk_uninit(n) {
            chunk.fill_from_iter(self.pending.drain(..n));
        }
    }

    /// Whether everything pushed has reached the ring.
    pub fn is_drained(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops buffered audio (barge-in); the realtime thread discards what reached the ring.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.resampler = None;
    }
}
