//! The STT → agent → TTS conversation of one session: the session task of `stt_tts` pipelines.
//!
//! It sleeps until something happens: its realtime thread rings when it produced events and
//! speech frames or made room in the reply ring; providers, the agent and host calls wake it
//! through their channels. Here: the loop, the realtime thread's news, and each user turn through
//! STT to a transcript delivered in order. The replies — the agent, TTS, playout, barge-in — are
//! in [`reply`]. Replies are spoken one at a time, in order; with `turn.preemptive_ms` a reply
//! may start before its turn has ended ([`preemptive`]).

mod preemptive;
mod reply;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::manners::{Manners, Verdict};
use super::{
    HOUSEKEEPING_PERIOD, PipelineContext, SessionCommand, SessionPipeline, TurnClock,
    end_if_realtime_failed, next_transport_news, provider_message, report_drops, sleep_until,
};
use crate::agent::ReplyMsg;
use crate::error::{Error, Result};
use crate::event::{VbEventKind, VbSessionState, VbTurnMetrics};
use crate::provider::stt::{SpeechStream, SpeechWriter, SttResult, speech_ring};
use crate::provider::{BoxFuture, SttProvider, SttSink, SttTurn, TtsProvider};
use crate::rt::message::{RtControl, RtOutput};
use crate::transport::TransportNews;
use preemptive::Preemption;
use reply::next_tts_audio;

/// The `stt_tts` pipeline with its providers.
pub struct SttTtsPipeline {
    stt: Arc<dyn SttProvider>,
    tts: Arc<dyn TtsProvider>,
    agent_timeout: Duration,
    manners: Option<Manners>,
    preemptive: bool,
}

impl SttTtsPipeline {
    /// A pipeline transcribing with `stt` and speaking with `tts`; an agent that has not finished
    /// its reply text within `agent_timeout` loses the turn (`VB_ERR_TIMEOUT`); with `manners`,
    /// speech over a reply pauses it and the words decide (`interruptions.decide_by` `"words"`).
    pub fn new(
        stt: Arc<dyn SttProvider>,
        tts: Arc<dyn TtsProvider>,
        agent_timeout: Duration,
        manners: Option<Manners>,
    ) -> Self {
        SttTtsPipeline {
            stt,
            tts,
            agent_timeout,
            manners,
            preemptive: false,
        }
    }

    /// With `on`, replies start early on the turn so far when the user pauses
    /// (`turn.preemptive_ms`; the realtime thread reports the pauses).
    pub fn preemptive(mut self, on: bool) -> Self {
        self.preemptive = on;
        self
    }
}

impl SessionPipeline for SttTtsPipeline {
    fn needs_agent(&self) -> bool {
        true
    }

    fn run(&self, ctx: PipelineContext) -> BoxFuture<'static, ()> {
        let (conversation, inbox) = Conversation::new(
            ctx,
            self.stt.clone(),
            self.tts.clone(),
            self.agent_timeout,
            self.manners.clone(),
            self.preemptive,
        );
        Box::pin(conversation.run(inbox))
    }
}

/// What a queued reply speaks.
enum ReplySource {
    /// The agent's answer to a user turn.
    Agent { turn: u32, transcript: String },
    /// Fixed text from `vb_session_say`.
    Say(String),
}

/// The reply being produced and played.
struct ActiveReply {
    id: u64,
    turn: Option<u32>,
    /// The user's transcript the reply answers ("" for `say`).
    transcript: String,
    cancelled: Arc<AtomicBool>,
    /// Text to TTS; `None` once the reply text has ended.
    text_tx: Option<mpsc::UnboundedSender<String>>,
    /// When the agent must have finished writing; `None` for `say` and once the text ended.
    agent_deadline: Option<tokio::time::Instant>,
    audio_rx: mpsc::Receiver<Vec<i16>>,
    audio_open: bool,
    tts_task: JoinHandle<()>,
    tts_done: bool,
    full_text: String,
    audio_pushed: bool,
    finished_sent: bool,
    metrics: VbTurnMetrics,
    /// A preemptive reply not confirmed yet: it plays nothing and tells the host nothing.
    held: bool,
    /// When the agent's first text came (session clock; the metric is taken from it when
    /// playout starts).
    first_text_at_us: Option<u64>,
    /// The agent's failures while the reply was held, reported if it is kept.
    held_failures: Vec<Error>,
}

/// What woke the session task.
enum Wake {
    /// The realtime thread left news.
    Rung,
    /// Time to look at what nobody rings for.
    Housekeeping,
    /// News from the network transport.
    Transport(TransportNews),
    Command(Option<SessionCommand>),
    Stt(u32, SttResult),
    SttDone(u32, Result<()>),
    /// A preview transcription's result (tagged with the preview's id).
    Preview(u32, SttResult),
    /// A preview transcription resolved.
    PreviewDone(u32, Result<()>),
    Reply(u64, ReplyMsg),
    AgentTimeout,
    /// A paused reply waited `interruptions.resume_after_ms` and no user turn came.
    ResumeDue,
    TtsAudio(Option<Vec<i16>>),
    TtsDone(u64, Result<()>),
}

struct Conversation {
    ctx: PipelineContext,
    stt: Arc<dyn SttProvider>,
    tts: Arc<dyn TtsProvider>,
    agent_timeout: Duration,
    clock: TurnClock,
    /// Audio senders of turns still being spoken.
    /// Speech rings of turns still being spoken.
    stt_audio: HashMap<u32, SpeechWriter>,
    /// Turns whose transcript is not published yet, oldest first: `None` while STT works, then
    /// the final transcript or the failure.
    transcripts: BTreeMap<u32, Option<Result<String>>>,
    stt_tx: mpsc::UnboundedSender<(u32, SttResult)>,
    stt_done_tx: mpsc::UnboundedSender<(u32, Result<()>)>,
    reply_tx: mpsc::UnboundedSender<(u64, ReplyMsg)>,
    tts_done_tx: mpsc::UnboundedSender<(u64, Result<()>)>,
    queue: VecDeque<ReplySource>,
    active: Option<ActiveReply>,
    next_reply_id: u64,
    /// How speech over a reply is judged by its words, when it is.
    manners: Option<Manners>,
    /// The active reply, paused by user speech, waiting for the verdict.
    paused: Option<PausedReply>,
    /// Early replies on paused turns (`turn.preemptive_ms`), when on.
    preemption: Option<Preemption>,
}

/// A reply paused by user speech (`interruptions.decide_by` `"words"`).
struct PausedReply {
    /// When it paused.
    since: tokio::time::Instant,
    /// The user turn whose words decide, once one started.
    turn: Option<u32>,
}

/// The receiving ends the task selects over (kept apart from `Conversation` for borrowing).
struct Inbox {
    stt_rx: mpsc::UnboundedReceiver<(u32, SttResult)>,
    stt_done_rx: mpsc::UnboundedReceiver<(u32, Result<()>)>,
    reply_rx: mpsc::UnboundedReceiver<(u64, ReplyMsg)>,
    tts_done_rx: mpsc::UnboundedReceiver<(u64, Result<()>)>,
    preview_rx: mpsc::UnboundedReceiver<(u32, SttResult)>,
    preview_done_rx: mpsc::UnboundedReceiver<(u32, Result<()>)>,
}

impl Conversation {
    fn new(
        ctx: PipelineContext,
        stt: Arc<dyn SttProvider>,
        tts: Arc<dyn TtsProvider>,
        agent_timeout: Duration,
        manners: Option<Manners>,
        preemptive: bool,
    ) -> (Self, Inbox) {
        let (stt_tx, stt_rx) = mpsc::unbounded_channel();
        let (stt_done_tx, stt_done_rx) = mpsc::unbounded_channel();
        let (reply_tx, reply_rx) = mpsc::unbounded_channel();
        let (tts_done_tx, tts_done_rx) = mpsc::unbounded_channel();
        let (preview_tx, preview_rx) = mpsc::unbounded_channel();
        let (preview_done_tx, preview_done_rx) = mpsc::unbounded_channel();
        let conversation = Conversation {
            ctx,
            stt,
            tts,
            agent_timeout,
            clock: TurnClock::default(),
            stt_audio: HashMap::new(),
            transcripts: BTreeMap::new(),
            stt_tx,
            stt_done_tx,
            reply_tx,
            tts_done_tx,
            queue: VecDeque::new(),
            active: None,
            next_reply_id: 1,
            manners,
            paused: None,
            preemption: preemptive.then(|| Preemption::new(preview_tx, preview_done_tx)),
        };
        (
            conversation,
            Inbox {
                stt_rx,
                stt_done_rx,
                reply_rx,
                tts_done_rx,
                preview_rx,
                preview_done_rx,
            },
        )
    }
}

impl Conversation {
    async fn run(mut self, mut inbox: Inbox) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_PERIOD);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.ctx
            .events
            .set_state(VbSessionState::VB_STATE_LISTENING);
        loop {
            let has_room = self.ctx.reply.has_room();
            let agent_deadline = self.active.as_ref().and_then(|r| r.agent_deadline);
            let resume_deadline = self.resume_deadline();
            let wake = tokio::select! {
                () = self.ctx.bell.rung() => Wake::Rung,
                news = next_transport_news(&mut self.ctx.transport) => Wake::Transport(news),
                _ = housekeeping.tick() => Wake::Housekeeping,
                command = self.ctx.commands.recv() => Wake::Command(command),
                Some((turn, result)) = inbox.stt_rx.recv() => Wake::Stt(turn, result),
                Some((turn, done)) = inbox.stt_done_rx.recv() => Wake::SttDone(turn, done),
                Some((id, result)) = inbox.preview_rx.recv() => Wake::Preview(id, result),
                Some((id, done)) = inbox.preview_done_rx.recv() => Wake::PreviewDone(id, done),
                Some((id, msg)) = inbox.reply_rx.recv() => Wake::Reply(id, msg),
                () = sleep_until(agent_deadline) => Wake::AgentTimeout,
                () = sleep_until(resume_deadline) => Wake::ResumeDue,
                chunk = next_tts_audio(&mut self.active), if has_room => Wake::TtsAudio(chunk),
                Some((id, done)) = inbox.tts_done_rx.recv() => Wake::TtsDone(id, done),
            };
            match wake {
                Wake::Rung => {
                    // The agent's words already written come before the news of their audio
                    // (select! picks among ready branches at random).
                    while let Ok((id, msg)) = inbox.reply_rx.try_recv() {
                        self.on_reply_msg(id, msg);
                    }
                    if self.on_realtime_news() {
                        break;
                    }
                }
                Wake::Housekeeping => self.ctx.recorder.report_failures(&mut self.ctx.events),
                Wake::Transport(news) => {
                    if self.ctx.on_transport_news(news) {
                        break;
                    }
                }
                Wake::Command(Some(SessionCommand::Say(text))) => {
                    self.queue.push_back(ReplySource::Say(text));
                    self.start_next_reply();
                }
                Wake::Command(Some(SessionCommand::Interrupt)) => self.cancel_reply(true),
                Wake::Command(Some(SessionCommand::Stop) | None) => break,
                Wake::Stt(turn, result) => self.on_stt_result(turn, result),
                Wake::SttDone(turn, done) => {
                    // The provider sent its results before it resolved: take them first.
                    while let Ok((turn, result)) = inbox.stt_rx.try_recv() {
                        self.on_stt_result(turn, result);
                    }
                    self.on_stt_done(turn, done);
                }
                Wake::Preview(id, result) => self.on_preview_result(id, result),
                Wake::PreviewDone(id, done) => {
                    // As for the turns' own STT: its results before its end.
                    while let Ok((id, result)) = inbox.preview_rx.try_recv() {
                        self.on_preview_result(id, result);
                    }
                    self.on_preview_done(id, done);
                }
                Wake::Reply(id, msg) => self.on_reply_msg(id, msg),
                Wake::AgentTimeout => self.on_agent_timeout(),
                Wake::ResumeDue => self.resume_reply(),
                Wake::TtsAudio(chunk) => self.on_tts_audio(chunk),
                Wake::TtsDone(id, done) => self.on_tts_done(id, done),
            }
        }
        self.shutdown();
    }

    /// Takes everything the realtime thread left: turn events, speech, playout news, drops.
    /// Returns whether the realtime loop has failed, which ends the session.
    fn on_realtime_news(&mut self) -> bool {
        self.ctx.bell.clear();
        while let Ok(output) = self.ctx.from_rt.pop() {
            match output {
                RtOutput::SpeechStarted { turn, .. } => {
                    if let Some(paused) = self.paused.as_mut() {
                        paused.turn.get_or_insert(turn);
                    }
                    self.open_stt_turn(turn);
                    self.ctx.recorder.speech_started(turn);
                    self.ctx
                        .events
                        .emit(VbEventKind::VB_EVENT_SPEECH_STARTED, |_| {});
                }
                RtOutput::Speech(frame) => {
                    if let Some(ring) = self.stt_audio.get_mut(&frame.turn) {
                        let dropped = ring.write(frame.samples());
                        if dropped > 0 {
                            self.ctx.events.dropped(
                                dropped as u64,
                                "STT speech ring full: the STT provider has not read this turn",
                            );
                        }
                    }
                    self.keep_speech(frame.turn, frame.samples());
                    self.ctx.recorder.speech(frame.turn, frame.samples());
                }
                RtOutput::SpeechStopped {
                    turn,
                    speech_end_us,
                    ..
                } => {
                    self.preview_covers_turn(turn);
                    self.stt_audio.remove(&turn);
                    // A turn whose STT already failed (a network provider can fail while the
                    // user still speaks) has nothing left to process: the session keeps
                    // listening.
                    let pending = self.transcripts.contains_key(&turn);
                    if pending {
                        self.clock.speech_ended(turn, speech_end_us);
                    }
                    // The state changes first: whoever sees SPEECH_STOPPED sees PROCESSING.
                    let idle = self.active.as_ref().is_none_or(|a| a.held);
                    if idle && pending {
                        self.ctx
                            .events
                            .set_state(VbSessionState::VB_STATE_PROCESSING);
                    }
                    self.ctx
                        .events
                        .emit(VbEventKind::VB_EVENT_SPEECH_STOPPED, |_| {});
                    self.deliver_covering_preview(turn);
                }
                RtOutput::UserPaused { turn, .. } => self.on_user_paused(turn),
                RtOutput::UserWentOn { turn, .. } => self.on_user_went_on(turn),
                RtOutput::Interrupted { .. } => self.cancel_reply(false),
                RtOutput::Paused { .. } => self.on_paused(),
                RtOutput::PlayoutStarted { at_us } => self.on_playout_started(at_us),
                RtOutput::PlayoutFinished { .. } => {
                    if self.active.as_ref().is_some_and(|a| a.finished_sent) {
                        self.complete_reply();
                    }
                }
            }
        }
        report_drops(&self.ctx.shared, &mut self.ctx.events);
        if end_if_realtime_failed(&self.ctx.shared, &mut self.ctx.events) {
            return true;
        }
        self.ctx.recorder.report_failures(&mut self.ctx.events);
        self.ctx.reply.pump();
        self.finish_reply_audio_if_done();
        false
    }

    fn open_stt_turn(&mut self, turn: u32) {
        let (audio_tx, audio_rx) = speech_ring(self.ctx.turn_samples);
        self.stt_audio.insert(turn, audio_tx);
        self.transcripts.insert(turn, None);
        let (results, done) = (self.stt_tx.clone(), self.stt_done_tx.clone());
        let task = self.transcribe(turn, audio_rx, turn, results, done);
        self.keep_turn_audio(turn, task.abort_handle());
    }

    /// Transcribes `audio` of `turn` on the I/O runtime: its results go to `results` and its end
    /// to `done`, both tagged with `tag` (the turn's number, or a preview's id).
    fn transcribe(
        &self,
        turn: u32,
        audio: SpeechStream,
        tag: u32,
        results: mpsc::UnboundedSender<(u32, SttResult)>,
        done: mpsc::UnboundedSender<(u32, Result<()>)>,
    ) -> JoinHandle<()> {
        let future = self.stt.transcribe(SttTurn {
            sample_rate: self.ctx.spec.internal_rate,
            audio,
            results: SttSink::new(tag, results),
        });
        self.ctx.runtime.spawn(
            async move {
                let _ = done.send((tag, future.await));
            }
            .instrument(tracing::error_span!("turn", turn)),
        )
    }

    pub(super) fn on_stt_result(&mut self, turn: u32, result: SttResult) {
        match result {
            SttResult::Partial(text) => {
                let events = &mut self.ctx.events;
                events.emit(VbEventKind::VB_EVENT_TRANSCRIPT_PARTIAL, |e| {
                    e.text = Some(text)
                });
            }
            SttResult::Final(text) => {
                let now = self.ctx.events.now_us();
                if let Some(slot) = self.transcripts.get_mut(&turn) {
                    if slot.is_none() {
                        self.clock.stt_final(turn, now);
                    }
                    slot.get_or_insert(Ok(text));
                }
                self.deliver_transcripts_in_order();
            }
        }
    }

    pub(super) fn on_stt_done(&mut self, turn: u32, done: Result<()>) {
        self.stt_audio.remove(&turn);
        let name = self.stt.name().to_owned();
        if let Some(slot) = self.transcripts.get_mut(&turn) {
            let outcome = match done {
                Err(e) => Err(e),
                Ok(()) => Err(Error::provider(
                    &name,
                    format!("turn {turn} ended without a final transcript"),
                )),
            };
            slot.get_or_insert(outcome);
        }
        self.deliver_transcripts_in_order();
    }

    /// Publishes finished turns oldest first: a later turn's transcript waits for every earlier
    /// one, so the agent sees turns in the order they were spoken even when STT finishes them out
    /// of order.
    fn deliver_transcripts_in_order(&mut self) {
        while let Some(entry) = self.transcripts.first_entry() {
            if entry.get().is_none() {
                return;
            }
            let (turn, Some(outcome)) = entry.remove_entry() else {
                continue;
            };
            let verdict = self.judge_paused(turn, &outcome);
            match outcome {
                Ok(text) => {
                    let transcript = text.trim().to_owned();
                    let events = &mut self.ctx.events;
                    events.emit(VbEventKind::VB_EVENT_TRANSCRIPT_FINAL, |e| {
                        e.text = Some(text)
                    });
                    if verdict == Some(Verdict::Resume) || transcript.is_empty() {
                        self.settle_preemptive(turn, None);
                        self.clock.forget(turn);
                        self.ctx.recorder.discard(turn);
                        self.back_to_listening_if_idle();
                    } else if !self.settle_preemptive(turn, Some(&transcript)) {
                        self.queue
                            .push_back(ReplySource::Agent { turn, transcript });
                        self.start_next_reply();
                    }
                }
                Err(e) => {
                    self.settle_preemptive(turn, None);
                    self.clock.forget(turn);
                    self.ctx.recorder.discard(turn);
                    let message = provider_message("stt", self.stt.name(), e.message());
                    let provider = self.stt.name();
                    self.ctx
                        .events
                        .provider_error(provider, e.status(), message);
                    self.back_to_listening_if_idle();
                }
            }
        }
    }

    /// The realtime thread paused the reply for user speech: the words of the turn it starts
    /// decide, or `resume_after_ms` without a turn resumes it.
    fn on_paused(&mut self) {
        if self.active.is_none() {
            return self.resume_reply();
        }
        self.paused = Some(PausedReply {
            since: tokio::time::Instant::now(),
            // The turn being spoken, when it started before the pause (its start needs less
            // speech than a pause does, by default).
            turn: self.stt_audio.keys().max().copied(),
        });
    }

    /// When a paused reply with no user turn resumes by itself.
    fn resume_deadline(&self) -> Option<tokio::time::Instant> {
        let (paused, manners) = (self.paused.as_ref()?, self.manners.as_ref()?);
        paused
            .turn
            .is_none()
            .then(|| paused.since + manners.resume_after)
    }

    /// The verdict on `turn`'s transcript when it is the one that paused the reply (which it
    /// then resumes or interrupts); `None` for any other turn.
    fn judge_paused(&mut self, turn: u32, outcome: &Result<String>) -> Option<Verdict> {
        if self.paused.as_ref()?.turn != Some(turn) {
            return None;
        }
        let verdict = match (outcome, &self.manners) {
            (Ok(text), Some(manners)) => manners.judge(text),
            // Words unknown (STT failed): the reply goes on.
            _ => Verdict::Resume,
        };
        match verdict {
            Verdict::Resume => self.resume_reply(),
            Verdict::Interruption => {
                self.paused = None;
                // The realtime side only paused: flush it as a host interrupt does.
                self.cancel_reply(true);
            }
        }
        Some(verdict)
    }

    /// Resumes a paused reply where it paused (no event: for the host it never stopped).
    fn resume_reply(&mut self) {
        if self.paused.take().is_some() {
            let _ = self.ctx.control.try_send(RtControl::Resume);
            self.ctx.shared.wake();
        }
    }

    fn back_to_listening_if_idle(&mut self) {
        if self.active.is_none() && self.queue.is_empty() {
            self.ctx
                .events
                .set_state(VbSessionState::VB_STATE_LISTENING);
        }
    }

    fn shutdown(&mut self) {
        self.drop_active_reply();
        self.stt_audio.clear();
        self.ctx.events.set_state(VbSessionState::VB_STATE_STOPPED);
    }
}
