//! A bounded queue of one turn's speech, from the session task to a provider. The session task
//! copies each speech frame in; the provider reads whatever has arrived, waiting when nothing
//! has. Both run on the I/O side (never the realtime thread).
//!
//! The queue holds up to a whole turn (`turn.max_turn_ms` plus the pre-roll), so a provider
//! that reads late — still connecting, say — loses nothing; a provider that never reads loses
//! what does not fit, which the writer counts. It grows as speech arrives instead of reserving
//! the whole turn up front: a ring of 30 s is about a megabyte per turn, and allocating and
//! freeing one per turn let glibc (whose threshold for giving blocks their own mapping rises to
//! the largest block freed) spread the touched pages of those rings over ever more of its heap:
//! the `--faults` soak's resident memory kept growing while the heap in use stayed level.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

struct Shared {
    queue: Mutex<Queue>,
    arrived: Notify,
}

struct Queue {
    samples: VecDeque<i16>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The session task's end: copies speech in and closes the turn.
pub struct SpeechWriter {
    shared: Arc<Shared>,
    capacity: usize,
    dropped: u64,
}

/// The provider's end: reads the turn's speech until the turn ends.
pub struct SpeechStream {
    shared: Arc<Shared>,
}

/// A queue for up to `capacity` samples of one turn not read yet.
pub fn speech_ring(capacity: usize) -> (SpeechWriter, SpeechStream) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            samples: VecDeque::new(),
            closed: false,
        }),
        arrived: Notify::new(),
    });
    (
        SpeechWriter {
            shared: shared.clone(),
            capacity: capacity.max(1),
            dropped: 0,
        },
        SpeechStream { shared },
    )
}

impl SpeechWriter {
    /// Copies `pcm` in and wakes the reader. What does not fit is dropped; returns how many
    /// samples were.
    pub fn write(&mut self, pcm: &[i16]) -> usize {
        let n = {
            let mut queue = self.shared.lock();
            let n = pcm.len().min(self.capacity - queue.samples.len());
            queue.samples.extend(&pcm[..n]);
            n
        };
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
        self.shared.lock().closed = true;
        self.shared.arrived.notify_one();
    }
}

impl SpeechStream {
    /// Appends every sample that has arrived to `out`, waiting until at least one has. `false`
    /// once the turn has ended and everything was read. Cancel-safe: nothing is taken until the
    /// wait is over.
    pub async fn recv_into(&mut self, out: &mut Vec<i16>) -> bool {
        loop {
            {
                let mut queue = self.shared.lock();
                if !queue.samples.is_empty() {
                    out.extend(queue.samples.drain(..));
                    return true;
                }
                if queue.closed {
                    return false;
                }
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
