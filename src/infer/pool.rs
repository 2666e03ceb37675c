//! The backend's inference pool: a few worker threads that run the neural models for every
//! session, batching the work of all the sessions a worker serves into one model call (one
//! Silero window per session per call; the end-of-turn questions that wait, in one call).
//!
//! Sessions join with [`InferencePool::link`] (control side): the realtime side keeps the
//! [`NeuralLink`], the worker gets the [`NeuralPeer`] through its inbox. A worker sleeps until a
//! realtime thread pokes it (a window is complete, a question is asked) or a short timeout, and
//! forgets a session once its realtime side has dropped its link. Each worker has a helper thread
//! for the end-of-turn model (about 130 ms a call on this machine, against 0.1 ms for a Silero
//! window), so that a question never holds up the VAD of the worker's other sessions: the worker
//! hands it the turn's audio and pushes the answers it gets back. Workers allocate and call ONNX
//! Runtime freely: they are no realtime threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::runtime::{ModelFiles, prepare};
use super::silero::{self, Silero, SileroStream};
use super::smart_turn::{self, Features, SmartTurn};
use crate::config::{BackendConfig, EndOfTurn, VadEngine};
use crate::error::{Error, Result};
use crate::rt::neural::{Answer, NeuralLink, NeuralPeer, PoolWake, TurnCheck, neural_link};
use crate::rt::shared::RtShared;

/// Audio ring of one link: 2 s at 16 kHz (the realtime side waits for answers long before).
const LINK_RING_SAMPLES: usize = 32_000;
/// Audio a worker keeps per session for the end-of-turn model: its 8 s plus slack.
const HISTORY_SAMPLES: usize = smart_turn::SAMPLES + 32_000;
/// Longest sleep of a worker with sessions (a safety net: realtime threads and the end-of-turn
/// thread poke it).
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// The pool. Any thread; dropping it stops and joins the workers.
pub struct InferencePool {
    workers: Vec<Worker>,
    next: AtomicUsize,
    vad: bool,
}

struct Worker {
    wake: Arc<PoolWake>,
    inbox: Sender<NeuralPeer>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// One worker's models.
struct Models {
    silero: Option<Silero>,
    smart_turn: Option<SmartTurn>,
}

impl Models {
    fn load(files: &ModelFiles) -> Result<Models> {
        Ok(Models {
            silero: files.silero.as_deref().map(Silero::load).transpose()?,
            smart_turn: files
                .smart_turn
                .as_deref()
                .map(SmartTurn::load)
                .transpose()?,
        })
    }
}

impl InferencePool {
    /// Loads ONNX Runtime and the models `config` asks for, and starts `inference.threads`
    /// workers (at least one). `VB_ERR_INVALID_CONFIG` when a library or model is missing.
    pub fn new(config: &BackendConfig) -> Result<InferencePool> {
        let vad = config.vad.engine == VadEngine::Silero;
        let turn = config.turn.end_of_turn == EndOfTurn::SmartTurn;
        let files = prepare(&config.inference, vad, turn)?;
        let threads = config.inference.threads.max(1) as usize;
        let mut workers = Vec::with_capacity(threads);
        for index in 0..threads {
            // Loaded here, so that a bad model file fails the backend's creation.
            let models = Models::load(&files)?;
            let wake = Arc::new(PoolWake::default());
            let stop = Arc::new(AtomicBool::new(false));
            let (inbox, peers) = crossbeam_channel::unbounded();
            let spawn_failed =
                |e| Error::internal(format!("inference pool: cannot start a thread: {e}"));
            let turns = match models.smart_turn {
                Some(model) => {
                    let (jobs, job_rx) = crossbeam_channel::unbounded();
                    let (done_tx, done) = crossbeam_channel::unbounded();
                    let worker_wake = wake.clone();
                    std::thread::Builder::new()
                        .name(format!("vb-turn-{index}"))
                        .spawn(move || run_turn_model(model, job_rx, done_tx, worker_wake))
                        .map_err(spawn_failed)?;
                    Some(TurnThread { jobs, done })
                }
                None => None,
            };
            let state = WorkerState {
                silero: models.silero,
                turns,
                peers,
                wake: wake.clone(),
                stop: stop.clone(),
                streams: Vec::new(),
                next_key: 0,
            };
            let handle = std::thread::Builder::new()
                .name(format!("vb-infer-{index}"))
                .spawn(move || state.run())
                .map_err(spawn_failed)?;
            workers.push(Worker {
                wake,
                inbox,
                stop,
                handle: Some(handle),
            });
        }
        Ok(InferencePool {
            workers,
            next: AtomicUsize::new(0),
            vad,
        })
    }

    /// A new session's link (control side): its realtime loop keeps the returned end. `rt`
    /// is woken when answers arrive.
    pub fn link(&self, rt: Arc<RtShared>) -> NeuralLink {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let worker = &self.workers[index];
        let (link, peer) = neural_link(self.vad, worker.wake.clone(), rt, LINK_RING_SAMPLES);
        // The worker outlives the pool's handle on it; a send only fails after it stopped, and
        // then the link is never answered (the session cannot run past the pool anyway).
        let _ = worker.inbox.send(peer);
        worker.wake.poke();
        link
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }
}

impl Drop for InferencePool {
    fn drop(&mut self) {
        for w in &self.workers {
            w.stop.store(true, Ordering::Release);
            w.wake.poke();
        }
        for w in &mut self.workers {
            if let Some(handle) = w.handle.take() {
                let _ = handle.join();
            }
        }
    }
}

/// A worker's view of one session.
struct Stream {
    /// Names the stream in the turn thread's answers.
    key: u64,
    peer: NeuralPeer,
    silero: SileroStream,
    /// Samples received but not yet in a VAD window.
    pending: Vec<f32>,
    /// The last [`HISTORY_SAMPLES`] samples, a ring; `received` counts all samples.
    history: Vec<i16>,
    received: u64,
    /// Answers were pushed in this pass: wake the realtime side.
    answered: bool,
    /// The link's counters when they were last logged (dropped samples, failures), and when.
    reported: (u64, u64),
    reported_at: Option<Instant>,
}

impl Stream {
    fn new(key: u64, peer: NeuralPeer) -> Stream {
        Stream {
            key,
            peer,
            silero: SileroStream::default(),
            pending: Vec::with_capacity(2 * silero::WINDOW),
            history: vec![0; HISTORY_SAMPLES],
            received: 0,
            answered: false,
            reported: (0, 0),
            reported_at: None,
        }
    }

    /// Moves what the realtime side sent into the window buffer and the history.
    fn take_audio(&mut self) {
        let n = self.peer.audio.slots();
        if n == 0 {
            return;
        }
        let Ok(chunk) = self.peer.audio.read_chunk(n) else {
            return;
        };
        let (a, b) = chunk.as_slices();
        for &s in a.iter().chain(b) {
            if self.peer.vad {
                self.pending.push(f32::from(s) / 32768.0);
            }
            self.history[(self.received % HISTORY_SAMPLES as u64) as usize] = s;
            self.received += 1;
        }
        chunk.commit_all();
    }

    /// Logs what the link lost since the last time (nothing is lost silently): samples the
    /// realtime side could not hand over, model calls that failed.
    fn report_losses(&mut self) {
        let counters = &self.peer.counters;
        let now = (
            counters.samples_dropped.load(Ordering::Relaxed),
            counters.failures.load(Ordering::Relaxed),
        );
        // At most once a second, so that a model failing on every window cannot flood the log.
        let due = self
            .reported_at
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if now != self.reported && due {
            self.reported_at = Some(Instant::now());
            tracing::warn!(
                samples_dropped = now.0 - self.reported.0,
                failed_inferences = now.1 - self.reported.1,
                "inference pool: a session's neural VAD / end-of-turn model missed audio or failed (no speech / not finished assumed)"
            );
            self.reported = now;
        }
    }

    /// The turn's audio for a question (at most the model's 8 s, ending at the question).
    fn turn_audio(&self, check: &TurnCheck) -> Vec<i16> {
        let mut out = Vec::new();
        let end = check.end_sample.min(self.received);
        let oldest = self.received.saturating_sub(HISTORY_SAMPLES as u64);
        let start = check
            .start_sample
            .max(end.saturating_sub(smart_turn::SAMPLES as u64))
            .max(oldest);
        for i in start..end {
            out.push(self.history[(i % HISTORY_SAMPLES as u64) as usize]);
        }
        out
    }
}

/// A worker's end of its end-of-turn thread.
struct TurnThread {
    /// Questions with their audio. Dropping it ends the thread.
    jobs: Sender<TurnJob>,
    /// Answers: stream key, question id, probability (`None`: the call failed).
    done: Receiver<(u64, u32, Option<f32>)>,
}

/// One question for the end-of-turn thread.
struct TurnJob {
    key: u64,
    id: u32,
    audio: Vec<i16>,
}

struct WorkerState {
    silero: Option<Silero>,
    turns: Option<TurnThread>,
    peers: Receiver<NeuralPeer>,
    wake: Arc<PoolWake>,
    stop: Arc<AtomicBool>,
    streams: Vec<Stream>,
    next_key: u64,
}

impl WorkerState {
    fn run(mut self) {
        let _ = self.wake.thread.set(std::thread::current());
        let mut windows: Vec<[f32; silero::WINDOW]> = Vec::new();
        let mut probs = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            while let Ok(peer) = self.peers.try_recv() {
                self.next_key += 1;
                self.streams.push(Stream::new(self.next_key, peer));
            }
            self.streams.retain(|s| !s.peer.audio.is_abandoned());
            for s in &mut self.streams {
                s.take_audio();
            }
            self.run_vad(&mut windows, &mut probs);
            self.pass_questions();
            for s in &mut self.streams {
                if std::mem::take(&mut s.answered) {
                    s.peer.rt.wake();
                }
                s.report_losses();
            }
            self.wake.wait(if self.streams.is_empty() {
                IDLE_WAIT * 10
            } else {
                IDLE_WAIT
            });
        }
    }

    /// Hands new questions to the end-of-turn thread and pushes the answers it has.
    fn pass_questions(&mut self) {
        for s in &mut self.streams {
            while let Ok(check) = s.peer.checks.pop() {
                // The audio pushed before the question is in the ring already.
                s.take_audio();
                let audio = s.turn_audio(&check);
                let sent = self.turns.as_ref().is_some_and(|t| {
                    t.jobs
                        .send(TurnJob {
                            key: s.key,
                            id: check.id,
                            audio,
                        })
                        .is_ok()
                });
                if !sent {
                    answer_turn(s, check.id, None);
                }
            }
        }
        let Some(turns) = &self.turns else {
            return;
        };
        while let Ok((key, id, prob)) = turns.done.try_recv() {
            // A session that ended meanwhile is gone: its answer is dropped.
            if let Some(s) = self.streams.iter_mut().find(|s| s.key == key) {
                answer_turn(s, id, prob);
            }
        }
    }

    /// One batched model call per round; each round takes one window of every session that has
    /// one (a session's windows must run in order, its state passing from one to the next).
    fn run_vad(&mut self, windows: &mut Vec<[f32; silero::WINDOW]>, probs: &mut Vec<f32>) {
        let Some(model) = self.silero.as_mut() else {
            return;
        };
        loop {
            windows.clear();
            let mut members = Vec::new();
            for (i, s) in self.streams.iter().enumerate() {
                if s.peer.vad && s.pending.len() >= silero::WINDOW {
                    let mut w = [0f32; silero::WINDOW];
                    w.copy_from_slice(&s.pending[..silero::WINDOW]);
                    windows.push(w);
                    members.push(i);
                }
            }
            if members.is_empty() {
                return;
            }
            let refs: Vec<&[f32; silero::WINDOW]> = windows.iter().collect();
            let mut states: Vec<&mut SileroStream> = Vec::with_capacity(members.len());
            for (i, s) in self.streams.iter_mut().enumerate() {
                if members.contains(&i) {
                    states.push(&mut s.silero);
                }
            }
            let ok = model.run(&refs, &mut states, probs).is_ok();
            for (k, &i) in members.iter().enumerate() {
                let s = &mut self.streams[i];
                s.pending.drain(..silero::WINDOW);
                let processed = s.received - s.pending.len() as u64;
                let prob = if ok {
                    probs[k]
                } else {
                    s.peer.counters.failures.fetch_add(1, Ordering::Relaxed);
                    0.0
                };
                // The ring holds a full second of answers more than the audio ring can bring.
                let _ = s.peer.answers.push(Answer::Vad {
                    end_sample: processed,
                    prob,
                });
                s.answered = true;
            }
        }
    }
}

/// Pushes an end-of-turn answer. A failed call answers "incomplete" (counted), so the turn
/// ends by `turn.max_wait_ms`.
fn answer_turn(s: &mut Stream, id: u32, prob: Option<f32>) {
    let prob = prob.unwrap_or_else(|| {
        s.peer.counters.failures.fetch_add(1, Ordering::Relaxed);
        0.0
    });
    let _ = s.peer.answers.push(Answer::Turn { id, prob });
    s.answered = true;
}

/// The end-of-turn thread: every question that waits, in one model call; ends when its worker
/// drops the job sender.
fn run_turn_model(
    mut model: SmartTurn,
    jobs: Receiver<TurnJob>,
    done: Sender<(u64, u32, Option<f32>)>,
    worker: Arc<PoolWake>,
) {
    let mut features = Features::new();
    let block = smart_turn::N_MELS * smart_turn::FRAMES;
    let mut feats = Vec::new();
    let mut probs = Vec::new();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        feats.clear();
        feats.resize(block * batch.len(), 0.0);
        for (k, job) in batch.iter().enumerate() {
            features.compute(&job.audio, &mut feats[k * block..(k + 1) * block]);
        }
        let ok = model.run(&feats, &mut probs).is_ok();
        for (k, job) in batch.iter().enumerate() {
            let _ = done.send((job.key, job.id, ok.then(|| probs[k])));
        }
        worker.poke();
    }
}
