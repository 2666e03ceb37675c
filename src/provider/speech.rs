//! A bounded ring of one turn's speech, from the session task to a provider. The session task
//! copies each speech frame in (no allocation per frame); the provider reads whatever has
//! arrived, waiting when nothing has.
//!
//! The ring holds a whole turn (`turn.max_turn_ms` plus the pre-roll), so a provider that
//! reads late — still connecting, say — loses nothing; a provider that never reads loses what
//! does not fit, which the writer counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

struct Shared {
    closed: AtomicBool,
    arrived: Notify,
}

/// The session task's end: copies speech in and closes the turn.
pub struct SpeechWriter {
    ring: rtrb::Producer<i16>,
    shared: Arc<Shared>,
    dropped: u64,
}

/// The provider's end: reads the turn's speech until the turn ends.
pub struct SpeechStream {
    ring: rtrb::Consumer<i16>,
    shared: Arc<Shared>,
}

/// A ring for `capacity` samples of one turn.
pub fn speech_ring(capacity: usize) -> (SpeechWriter, SpeechStream) {
    let (tx, rx) = rtrb::RingBuffer::new(capacity.max(1));
    let shared = Arc::new(Shared {
        closed: AtomicBool::new(false),
        arrived: Notify::new(),
    });
    (
        SpeechWriter {
            ring: tx,
            shared: shared.clone(),
            dropped: 0,
        },
        SpeechStream { ring: rx, shared },
    )
}

impl SpeechWriter {
    /// Copies `pcm` in and wakes the reader. What does not fit is dropped; returns how many
    /// samples were.
    pub fn write(&mut self, pcm: &[i16]) -> usize {
        let n = pcm.len().min(self.ring.slots());
        if let Ok(chunk) = self.ring.write_chunk_uninit(n) {
            chunk.fill_from_iter(pcm[..n].iter().copied());
        }
        self.shared.arrived.notify_one();
        let dropped = pcm.len() - n;
        self.dropped += dropped as u64;
        dropped
    }

    /// Samples dropped so far because the reader fell a whole turn behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl Drop for SpeechWriter {
    /// The turn has ended: the reader gets what is left, then the end.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.arrived.notify_one();
    }
}

impl SpeechStream {
    /// Appends every sample that has arrived to `out`, waiting until at least one has. `false`
    /// once the turn has ended and everything was read. Cancel-safe: nothing is taken until the
    /// wait is over.
    pub async fn recv_into(&mut self, out: &mut Vec<i16>) -> bool {
        loop {
            // Read `closed` first: what was written before the close is in the ring by then.
            let closed = self.shared.closed.load(Ordering::Acquire);
            let n = self.ring.slots();
            if n > 0 {
                if let Ok(chunk) = self.ring.read_chunk(n) {
                    let (a, b) = chunk.as_slices();
                    out.extend_from_slice(a);
                    out.extend_from_slice(b);
                    chunk.commit_all();
                }
                return true;
            }
            if closed {
                return false;
            }
            self.shared.arrived.notified().await;
        }
    }

    /// Reads the whole turn: everything until it ends.
    pub async fn read_to_end(&mut self) -> Vec<i16> {
        let mut pcm = Vec::new();
        while self.recv_into(&mut pcm).await {}
        pcm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_gets_everything_written_then_the_end() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (mut writer, mut stream) = speech_ring(8);
        let reader =
            std::thread::spawn(move || runtime.block_on(async move { stream.read_to_end().await }));
        assert_eq!(writer.write(&[1, 2, 3]), 0);
        std::thread::sleep(std::time::Duration::from_millis(10));
        assert_eq!(writer.write(&[4, 5]), 0);
        drop(writer);
        assert_eq!(reader.join().unwrap(), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn what_does_not_fit_is_dropped_and_counted() {
        let (mut writer, _stream) = speech_ring(4);
        assert_eq!(writer.write(&[1, 2, 3]), 0);
        assert_eq!(writer.write(&[4, 5, 6]), 2);
        assert_eq!(writer.dropped(), 2);
    }
}
