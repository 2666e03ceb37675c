//! The realtime thread's link to the backend's inference pool (Silero VAD, Smart Turn; see
//! `crate::infer`): 16 kHz samples and end-of-turn questions go out through preallocated
//! lock-free rings, speech probabilities and answers come back the same way. Nothing here
//! allocates, locks or blocks on the realtime side.
//!
//! Determinism: frame `k`'s VAD verdict is the probability of the last 512-sample window that
//! ended before frame `k` began (at most a window and a frame old), and an end-of-turn answer is
//! read before the frame after the question. The realtime loop processes no further frame until
//! those answers are in ([`NeuralLink::ready`]; the frames wait in the input ring), so a file
//! pushed faster than real time is cut into the same turns as the same audio spoken live. Live,
//! the pool answers a VAD window within a few ms, well inside a frame period, and an end-of-turn
//! question within the model's time (about 130 ms here; the frames wait in the input ring
//! meanwhile). Should the pool fall behind so far that the input ring is half full, the loop
//! goes on without waiting (see `RealtimeLoop`), so the edge never drops audio for it.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::Duration;

use super::shared::RtShared;

/// Samples of one Silero window at 16 kHz.
pub const VAD_WINDOW: usize = 512;

/// A question for the end-of-turn model: is the turn whose audio spans
/// `start_sample..end_sample` (counted on the session's 16 kHz clock) complete?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnCheck {
    /// Names the question in its answer.
    pub id: u32,
    /// First sample of the turn (with its lead-in).
    pub start_sample: u64,
    /// One past the last sample sent before the question.
    pub end_sample: u64,
}

/// What the pool sends back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// Speech probability of the window that ends at `end_sample`.
    Vad {
        /// One past the window's last sample.
        end_sample: u64,
        /// Silero's probability.
        prob: f32,
    },
    /// Probability that the turn of question `id` is complete.
    Turn {
        /// The question's id.
        id: u32,
        /// Smart Turn's probability.
        prob: f32,
    },
}

/// How the realtime side wakes an inference-pool worker that sleeps (one per worker, shared by
/// its sessions).
#[derive(Debug, Default)]
pub struct PoolWake {
    /// The worker thread, once it runs.
    pub thread: OnceLock<Thread>,
    /// Set by the worker before it parks.
    pub sleeping: AtomicBool,
    /// Work was handed over since the worker last looked.
    pub poked: AtomicBool,
}

impl PoolWake {
    /// Realtime-safe: two atomics and, only when the worker sleeps, one futex wake.
    pub fn poke(&self) {
        self.poked.store(true, Ordering::Release);
        if self.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    /// Worker side: sleeps until poked or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        self.sleeping.store(true, Ordering::SeqCst);
        if !self.poked.swap(false, Ordering::AcqRel) {
            std::thread::park_timeout(timeout);
        }
        // A poke that woke the park stays set: the next wait skips its park once (one extra
        // pass) rather than losing a poke made while the worker was busy.
        self.sleeping.store(false, Ordering::SeqCst);
    }
}

/// Counters of one link that the I/O side and health may read.
#[derive(Debug, Default)]
pub struct NeuralCounters {
    /// Samples the realtime side could not hand over (the audio ring was full).
    pub samples_dropped: AtomicU64,
    /// Inferences that failed (the pool answered "no speech" / "complete" instead).
    pub failures: AtomicU64,
}

/// The realtime side's ends. Realtime thread only.
pub struct NeuralLink {
    audio: rtrb::Producer<i16>,
    checks: rtrb::Producer<TurnCheck>,
    answers: rtrb::Consumer<Answer>,
    wake: Arc<PoolWake>,
    vad: bool,
    sent: u64,
    vad_done: u64,
    prob: f32,
    next_check: u32,
    pending_check: Option<u32>,
    turn_answer: Option<f32>,
    counters: Arc<NeuralCounters>,
}

/// The pool's ends of one session's link. Inference-pool threads only.
pub struct NeuralPeer {
    /// 16 kHz samples from the realtime thread.
    pub audio: rtrb::Consumer<i16>,
    /// End-of-turn questions.
    pub checks: rtrb::Consumer<TurnCheck>,
    /// Probabilities and answers back.
    pub answers: rtrb::Producer<Answer>,
    /// Whether the session asks for Silero verdicts.
    pub vad: bool,
    /// Wakes the session's realtime thread after answers were pushed.
    pub rt: Arc<RtShared>,
    /// Shared with the realtime side.
    pub counters: Arc<NeuralCounters>,
}

/// Builds a session's link: `audio_samples` of ring (the realtime side never waits on it: it
/// stops taking input until the pool has answered, so the ring holds at most a few windows).
pub fn neural_link(
    vad: bool,
    wake: Arc<PoolWake>,
    rt: Arc<RtShared>,
    audio_samples: usize,
) -> (NeuralLink, NeuralPeer) {
    let (audio_tx, audio_rx) = rtrb::RingBuffer::new(audio_samples);
    let (checks_tx, checks_rx) = rtrb::RingBuffer::new(4);
    let (answers_tx, answers_rx) = rtrb::RingBuffer::new(audio_samples / VAD_WINDOW + 8);
    let counters = Arc::new(NeuralCounters::default());
    (
        NeuralLink {
            audio: audio_tx,
            checks: checks_tx,
            answers: answers_rx,
            wake,
            vad,
            sent: 0,
            vad_done: 0,
            prob: 0.0,
            next_check: 0,
            pending_check: None,
            turn_answer: None,
            counters: counters.clone(),
        },
        NeuralPeer {
            audio: audio_rx,
            checks: checks_rx,
            answers: answers_tx,
            vad,
            rt,
            counters,
        },
    )
}

impl NeuralLink {
    /// Reads the answers that are in and says whether the next frame may be processed: the
    /// window that ended before it has its probability and no question is unanswered.
    pub fn ready(&mut self) -> bool {
        self.drain();
        let window_due = self.sent / VAD_WINDOW as u64 * VAD_WINDOW as u64;
        (!self.vad || self.vad_done >= window_due) && self.pending_check.is_none()
    }

    fn drain(&mut self) {
        let limit = self.sent / VAD_WINDOW as u64 * VAD_WINDOW as u64;
        while let Ok(answer) = self.answers.peek() {
            match *answer {
                Answer::Vad { end_sample, prob } => {
                    // Windows past the current frame's start wait for their frame.
                    if end_sample > limit {
                        break;
                    }
                    self.vad_done = end_sample;
                    self.prob = prob;
                }
                Answer::Turn { id, prob } => {
                    if self.pending_check == Some(id) {
                        self.pending_check = None;
                        self.turn_answer = Some(prob);
                    }
                }
            }
            let _ = self.answers.pop();
        }
    }

    /// Silero's latest probability (see the module's note on which window it is).
    pub fn speech_prob(&self) -> f32 {
        self.prob
    }

    /// Hands one 16 kHz frame to the pool; pokes it when a window completes.
    pub fn send_frame(&mut self, frame: &[i16]) {
        let before = self.sent / VAD_WINDOW as u64;
        match self.audio.write_chunk_uninit(frame.len()) {
            Ok(chunk) => {
                chunk.fill_from_iter(frame.iter().copied());
            }
            Err(_) => {
                self.counters
                    .samples_dropped
                    .fetch_add(frame.len() as u64, Ordering::Relaxed);
            }
        }
        self.sent += frame.len() as u64;
        if self.sent / VAD_WINDOW as u64 != before && self.vad {
            self.wake.poke();
        }
    }

    /// Samples handed over so far (the session's 16 kHz clock).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Asks whether the turn that began at `start_sample` is complete; the answer is read
    /// before the next frame ([`NeuralLink::take_turn_answer`]).
    pub fn ask_turn(&mut self, start_sample: u64) {
        self.next_check = self.next_check.wrapping_add(1);
        let check = TurnCheck {
            id: self.next_check,
            start_sample,
            end_sample: self.sent,
        };
        if self.checks.push(check).is_ok() {
            self.pending_check = Some(check.id);
            self.wake.poke();
        }
    }

    /// The end-of-turn answer that came in, once.
    pub fn take_turn_answer(&mut self) -> Option<f32> {
        self.turn_answer.take()
    }

    /// The link's counters.
    pub fn counters(&self) -> &Arc<NeuralCounters> {
        &self.counters
    }
}
