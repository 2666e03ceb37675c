//! The realtime loop of one session: input ring → resample → processors → (noise suppression) →
//! VAD → turn detector → I/O ring (speech frames and events), plus barge-in and playout.
//! Nothing here allocates, locks or blocks. After each pass that left news for the I/O side,
//! the loop wakes it ([`IoWake`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender};

use super::denoise::NoiseSuppressor;
use super::frame::{FrameSpec, MAX_FRAME_SAMPLES};
use super::message::{RtControl, RtOutput, SpeechFrame};
use super::neural::NeuralLink;
use super::playout::Playout;
use super::processor::ProcessorChain;
use super::shared::{EngineCounters, RtShared};
use super::turn::{PauseNews, TurnDetector, TurnEndReason, TurnStep};
use super::vad::VoiceDetector;
use super::wake::IoWake;
use crate::config::{BackendConfig, DecideBy};
use crate::dsp::resample::FrameResampler;

/// The edge's ends of a session's rings: what the session's transport writes user audio into and
/// reads the agent's audio from (the host's `process_audio` / `read_audio`, or a network
/// transport on the I/O runtime).
pub struct EdgeEnds {
    /// Input samples at the session's input rate, into the realtime thread.
    pub input: rtrb::Producer<i16>,
    /// Reply samples at the session's output rate, out of the realtime thread.
    pub output: rtrb::Consumer<i16>,
}

/// The I/O side's ends of a session's rings (used by the session task).
pub struct IoEnds {
    /// Events and speech frames from the realtime thread.
    pub from_rt: rtrb::Consumer<RtOutput>,
    /// Reply audio at the host's output rate, into playout.
    pub reply: rtrb::Producer<i16>,
    /// Controls to the realtime thread.
    pub control: Sender<RtControl>,
}

/// Everything one session's realtime thread owns.
pub struct RealtimeLoop {
    spec: FrameSpec,
    input: rtrb::Consumer<i16>,
    host_frame: Box<[i16]>,
    resampler: FrameResampler,
    pending: Box<[i16]>,
    pending_len: usize,
    frame: Box<[i16]>,
    processors: ProcessorChain,
    /// `audio.noise_suppression`: what the VAD (and the inference pool) hear instead of the frame.
    denoiser: Option<NoiseSuppressor>,
    vad: VoiceDetector,
    turn: TurnDetector,
    /// The inference pool's link (Silero VAD, Smart Turn), when the session uses a model.
    neural: Option<NeuralLink>,
    /// Smart Turn's "complete" threshold.
    turn_threshold: f32,
    /// Where the open turn's audio (with its pre-roll) starts on the link's 16 kHz clock.
    turn_start_sample: u64,
    /// Input samples from which the loop stops waiting for the inference pool.
    input_backlog: usize,
    turn_id: u32,
    /// Voiced frames in the current stretch of speech (barge-in counts these, not the VAD's
    /// hangover frames).
    voiced_frames: u32,
    barge_in_frames: Option<u32>,
    /// With interruptions decided by words: the voiced frames that interrupt without waiting
    /// for them (`interruptions.max_backchannel_ms`); `barge_in_frames` only pause then.
    pause_frames: Option<u32>,
    /// Free slots the I/O ring must have before another host frame is processed.
    io_headroom: usize,
    last_voiced_us: u64,
    frame_index: u64,
    playout: Playout,
    to_io: rtrb::Producer<RtOutput>,
    control: Receiver<RtControl>,
    shared: Arc<RtShared>,
    counters: Arc<EngineCounters>,
    io_wake: Arc<dyn IoWake>,
    /// Something was left for the I/O side during this pass.
    news: bool,
    /// A pass panicked: the loop runs no more (see [`RealtimeLoop::run_once`]).
    failed: bool,
}

/// Builds a session's rings and its realtime loop; every buffer is allocated here, once.
pub fn build_session(
    config: &BackendConfig,
    spec: FrameSpec,
    processors: ProcessorChain,
    shared: Arc<RtShared>,
    counters: Arc<EngineCounters>,
    io_wake: Arc<dyn IoWake>,
) -> (EdgeEnds, IoEnds, RealtimeLoop) {
    let audio = &config.audio;
    let (in_tx, in_rx) = rtrb::RingBuffer::new(FrameSpec::samples_in(
        spec.input_rate,
        audio.input_buffer_ms,
    ));
    let (out_tx, out_rx) = rtrb::RingBuffer::new(FrameSpec::samples_in(
        spec.output_rate,
        audio.output_buffer_ms,
    ));
    let (reply_tx, reply_rx) = rtrb::RingBuffer::new(FrameSpec::samples_in(
        spec.output_rate,
        audio.reply_buffer_ms,
    ));
    // Two seconds of speech frames plus room for the events between them.
    let (io_tx, io_rx) = rtrb::RingBuffer::new(spec.frames_in(2000) as usize + 64);
    let (control_tx, control_rx) = crossbeam_channel::bounded(64);

    let internal_frame = spec.internal_frame();
    let resampler = FrameResampler::new(spec.input_rate, spec.internal_rate, spec.input_frame());
    let vad_start_frames = config.vad.start_ms.div_ceil(spec.frame_ms).max(1);
    let barge_in_frames = config.interruptions.enabled.then(|| {
        config
            .interruptions
            .min_speech_ms
            .div_ceil(spec.frame_ms)
            .max(1)
    });
    let pause_frames = (config.interruptions.decide_by == DecideBy::Words).then(|| {
        config
            .interruptions
            .max_backchannel_ms
            .div_ceil(spec.frame_ms)
            .max(1)
    });
    let mut rt = RealtimeLoop {
        spec,
        input: in_rx,
        host_frame: vec![0; spec.input_frame()].into_boxed_slice(),
        pending: vec![0; internal_frame + resampler.max_output()].into_boxed_slice(),
        resampler,
        pending_len: 0,
        frame: vec![0; internal_frame].into_boxed_slice(),
        processors,
        denoiser: audio.noise_suppression.then(|| {
            NoiseSuppressor::new(spec.internal_rate, internal_frame)
                .expect("audio.sample_rate is validated: 8000 or 16000")
        }),
        vad: VoiceDetector::new(&config.vad, spec.internal_rate, spec.frame_ms),
        turn: TurnDetector::new(
            &config.turn,
            spec.frame_ms,
            internal_frame,
            vad_start_frames,
        ),
        neural: None,
        turn_threshold: config.turn.smart_turn_threshold,
        turn_start_sample: 0,
        input_backlog: FrameSpec::samples_in(spec.input_rate, audio.input_buffer_ms) / 2,
        turn_id: 0,
        voiced_frames: 0,
        barge_in_frames,
        pause_frames,
        io_headroom: 0,
        last_voiced_us: 0,
        frame_index: 0,
        playout: Playout::new(reply_rx, out_tx),
        to_io: io_tx,
        control: control_rx,
        shared,
        counters,
        io_wake,
        news: false,
        failed: false,
    };
    // One host frame yields at most two internal frames, and a turn start drains the pre-roll.
    rt.io_headroom = rt.turn.preroll_capacity() + 2 + 8;
    debug_assert!(internal_frame <= MAX_FRAME_SAMPLES);
    let edge = EdgeEnds {
        input: in_tx,
        output: out_rx,
    };
    let io = IoEnds {
        from_rt: io_rx,
        reply: reply_tx,
        control: control_tx,
    };
    (edge, io, rt)
}

impl RealtimeLoop {
    /// Connects the loop to the backend's inference pool (control side, before the loop runs):
    /// from then on the VAD (with `vad.engine: "silero"`) and the end of turn (with
    /// `turn.end_of_turn: "smart_turn"`) follow the pool's answers.
    pub fn attach_neural(&mut self, link: NeuralLink) {
        self.neural = Some(link);
    }

    /// Whether the next frame may be processed as far as the inference pool is concerned: its
    /// answers for the audio sent so far are in, or the input ring is half full (a pool slowed
    /// down by load must not make the edge drop audio: the loop then goes on with the answers it
    /// has, and a late end-of-turn answer applies when it comes). Realtime-safe.
    fn neural_ready(&mut self) -> bool {
        let backlog = self.input.slots() >= self.input_backlog;
        self.neural.as_mut().is_none_or(|n| n.ready() || backlog)
    }

    /// Does all the work that is due: controls, every complete input frame, playout.
    /// Returns the number of host frames consumed. Realtime-safe.
    ///
    /// A panic (a host's processor, or a bug of the engine) ends only this session: it is caught
    /// here, so that it takes down neither the thread nor, in the realtime pool, the other
    /// sessions' loops on it. The loop then runs no more, and the session task, woken, reports
    /// the panic and ends the session. Catching costs nothing until a panic happens; the panic
    /// itself allocates.
    pub fn run_once(&mut self) -> usize {
        if self.failed {
            return 0;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.pass())) {
            Ok(consumed) => consumed,
            Err(panic) => {
                self.fail(panic.as_ref());
                0
            }
        }
    }

    /// Marks the loop failed after a panic and wakes the session task to end the session.
    #[cold]
    fn fail(&mut self, panic: &(dyn std::any::Any + Send)) {
        self.failed = true;
        let detail = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let _ = self.shared.failure.set(detail);
        self.shared.failed.store(true, Ordering::Release);
        self.io_wake.wake_io();
    }

    /// One pass of [`RealtimeLoop::run_once`].
    fn pass(&mut self) -> usize {
        let now_us = self.shared.now_us();
        while let Ok(control) = self.control.try_recv() {
            self.playout.control(control, &self.shared);
        }
        let host_frame = self.host_frame.len();
        let mut consumed = 0;
        // Backpressure: input waits in its ring while the I/O side has no room for what a frame
        // may produce. A host pushing faster than real time then sees a full input ring
        // (`writable_samples`) instead of speech being dropped further down.
        while self.input.slots() >= host_frame
            && self.to_io.slots() >= self.io_headroom
            && self.neural_ready()
        {
            if let Ok(chunk) = self.input.read_chunk(host_frame) {
                let (a, b) = chunk.as_slices();
                self.host_frame[..a.len()].copy_from_slice(a);
                self.host_frame[a.len()..].copy_from_slice(b);
            }
            self.process_host_frame(now_us);
            // Released only once processed: an empty input ring means "all heard".
            if let Ok(chunk) = self.input.read_chunk(host_frame) {
                chunk.commit_all();
            }
            consumed += 1;
        }
        if consumed > 0 {
            let late = now_us.saturating_sub(self.shared.last_push_us.load(Ordering::Relaxed));
            if late > u64::from(self.spec.frame_ms) * 1000 {
                self.counters
                    .deadline_misses
                    .fetch_add(consumed as u64, Ordering::Relaxed);
            }
        }
        let step = self.playout.step(&self.shared, now_us);
        if let Some(event) = step.event {
            self.emit(event);
        }
        // Room in the reply ring is news when the I/O side may have more audio to put there.
        self.news |= step.refill_wanted;
        // Drops counted by the edge (`process_audio` into a full ring) are reported by the I/O
        // side; until it has, every pass reminds it.
        self.news |= self.shared.input_dropped_unreported.load(Ordering::Relaxed) > 0;
        if std::mem::take(&mut self.news) {
            self.io_wake.wake_io();
        }
        consumed
    }

    /// Whether a complete input frame (whose inference answers are in) or a control is waiting
    /// (checked before parking).
    pub fn has_work(&mut self) -> bool {
        if self.failed {
            return false;
        }
        let frame_ready = self.input.slots() >= self.host_frame.len()
            && self.to_io.slots() >= self.io_headroom
            && self.neural_ready();
        frame_ready || !self.control.is_empty()
    }

    /// Whether reply audio is being played or waits to be (playout needs regular wake-ups).
    pub fn is_playing(&self) -> bool {
        !self.failed && self.playout.is_busy()
    }

    /// The frame geometry.
    pub fn spec(&self) -> FrameSpec {
        self.spec
    }

    /// Whether the loop runs a noise suppressor, whose thread must call
    /// [`super::denoise::prepare_thread`] before its realtime work.
    pub fn suppresses_noise(&self) -> bool {
        self.denoiser.is_some()
    }

    fn process_host_frame(&mut self, now_us: u64) {
        let converted = self.resampler.process(&self.host_frame);
        let n = converted.len();
        self.pending[self.pending_len..self.pending_len + n].copy_from_slice(converted);
        self.pending_len += n;
        let frame_len = self.frame.len();
        while self.pending_len >= frame_len {
            self.frame.copy_from_slice(&self.pending[..frame_len]);
            self.pending.copy_within(frame_len..self.pending_len, 0);
            self.pending_len -= frame_len;
            self.process_frame(now_us);
        }
    }

    fn process_frame(&mut self, now_us: u64) {
        self.processors
            .process(&mut self.frame, self.spec.internal_rate);
        // The end-of-turn answer to the question of the previous frame.
        let answer = self.neural.as_mut().and_then(NeuralLink::take_turn_answer);
        if let Some(prob) = answer {
            if let Some(TurnStep::Ended { reason, .. }) =
                self.turn.model_answer(prob >= self.turn_threshold)
            {
                self.end_turn(now_us, reason);
            }
        }
        // What the VAD hears: the frame, or with noise suppression its denoised copy (12 ms
        // later); the turn's speech frames (STT's audio) stay as they came.
        let heard: &[i16] = match &mut self.denoiser {
            Some(denoiser) => denoiser.process(&self.frame),
            None => &self.frame,
        };
        let mut speech_prob = 0.0;
        if let Some(neural) = &mut self.neural {
            speech_prob = neural.speech_prob();
            neural.send_frame(heard);
        }
        let vad = self.vad.process(heard, speech_prob);
        if vad.voiced {
            self.last_voiced_us = now_us;
        }
        self.voiced_frames = match (vad.speaking || vad.voiced, vad.voiced) {
            (false, _) => 0,
            (true, voiced) => self.voiced_frames + u32::from(voiced),
        };
        if let Some(needed) = self.barge_in_frames {
            let playing = self.playout.is_playing();
            match self.pause_frames {
                // By words: enough speech pauses; much more interrupts without them.
                Some(interrupt) if playing && self.voiced_frames >= interrupt => {
                    self.playout.flush(&self.shared);
                    self.emit(RtOutput::Interrupted { at_us: now_us });
                }
                Some(_) if playing && !self.playout.is_paused() && self.voiced_frames >= needed => {
                    self.playout.pause(&self.shared);
                    self.emit(RtOutput::Paused { at_us: now_us });
                }
                None if playing && self.voiced_frames >= needed => {
                    self.playout.flush(&self.shared);
                    self.emit(RtOutput::Interrupted { at_us: now_us });
                }
                _ => {}
            }
        }
        match self.turn.process(self.frame_index, &self.frame, vad) {
            TurnStep::Idle => {}
            TurnStep::Started => {
                self.turn_id += 1;
                if let Some(neural) = &self.neural {
                    let preroll = (self.turn.preroll_capacity() * self.frame.len()) as u64;
                    self.turn_start_sample = neural.sent().saturating_sub(preroll);
                }
                self.emit(RtOutput::SpeechStarted {
                    turn: self.turn_id,
                    at_us: now_us,
                });
                let (turn_id, to_io, shared) = (self.turn_id, &mut self.to_io, &self.shared);
                let counters = &self.counters;
                self.turn.drain_preroll(|f| {
                    push_speech(to_io, shared, counters, SpeechFrame::new(turn_id, f))
                });
            }
            TurnStep::Continuing => self.push_frame(),
            TurnStep::AskModel => {
                self.push_frame();
                if let Some(neural) = &mut self.neural {
                    neural.ask_turn(self.turn_start_sample);
                }
            }
            TurnStep::Ended { reason, .. } => {
                self.push_frame();
                self.end_turn(now_us, reason);
            }
        }
        let turn = self.turn_id;
        match self.turn.take_pause_news() {
            Some(PauseNews::Paused) => self.emit(RtOutput::UserPaused {
                turn,
                at_us: now_us,
            }),
            Some(PauseNews::WentOn) => self.emit(RtOutput::UserWentOn {
                turn,
                at_us: now_us,
            }),
            None => {}
        }
        self.frame_index += 1;
        self.counters
            .frames_processed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the open turn: `VB_EVENT_SPEECH_STOPPED` follows (a decision, never a mere pause).
    fn end_turn(&mut self, now_us: u64, reason: TurnEndReason) {
        self.shared.turns_ended.fetch_add(1, Ordering::Release);
        self.emit(RtOutput::SpeechStopped {
            turn: self.turn_id,
            at_us: now_us,
            speech_end_us: self.last_voiced_us,
            reason,
        });
    }

    fn push_frame(&mut self) {
        let frame = SpeechFrame::new(self.turn_id, &self.frame);
        push_speech(&mut self.to_io, &self.shared, &self.counters, frame);
        self.news = true;
    }

    /// Sends an event; the ring keeps 64 slots beyond the speech frames it can hold, so it only
    /// fills when the I/O side has stalled, and then the loss is counted.
    fn emit(&mut self, event: RtOutput) {
        self.news = true;
        if self.to_io.push(event).is_err() {
            self.shared
                .events_dropped_unreported
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn push_speech(
    to_io: &mut rtrb::Producer<RtOutput>,
    shared: &RtShared,
    counters: &EngineCounters,
    frame: SpeechFrame,
) {
    if to_io.push(RtOutput::Speech(frame)).is_err() {
        counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
        shared
            .speech_dropped_unreported
            .fetch_add(frame.samples().len() as u64, Ordering::Relaxed);
    }
}
