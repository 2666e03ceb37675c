//! The STT → agent → TTS conversation of one session: the session task of `stt_tts` pipelines.
//!
//! It sleeps until something happens: its realtime thread rings when it produced events and speech
//! frames or made room in the reply ring; providers, the agent and host calls wake it through
//! their channels. It streams each turn to STT, runs the host's agent on an agent worker thread with a streaming
//! reply, streams the reply through TTS into the reply ring, and turns all of it into events and
//! per-turn metrics. Replies are spoken one at a time, in order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    HOUSEKEEPING_PERIOD, PipelineContext, SessionCommand, SessionPipeline, TurnClock,
    next_transport_news, provider_message, report_drops, sleep_until,
};
use crate::agent::{Agent, History, Reply, ReplyMsg};
use crate::error::{Error, Result, VbStatus};
use crate::event::{VbEventKind, VbSessionState, VbTurnMetrics};
use crate::provider::stt::{SpeechWriter, SttResult, speech_ring};
use crate::provider::{BoxFuture, SttProvider, SttSink, SttTurn, TtsProvider, TtsRequest};
use crate::rt::message::{RtControl, RtOutput};
use crate::telemetry::PROVIDER_AGENT;
use crate::transport::TransportNews;

/// The `stt_tts` pipeline with its providers.
pub struct SttTtsPipeline {
    stt: Arc<dyn SttProvider>,
    tts: Arc<dyn TtsProvider>,
    agent_timeout: Duration,
}

impl SttTtsPipeline {
    /// A pipeline transcribing with `stt` and speaking with `tts`; an agent that has not finished
    /// its reply text within `agent_timeout` loses the turn (`VB_ERR_TIMEOUT`).
    pub fn new(
        stt: Arc<dyn SttProvider>,
        tts: Arc<dyn TtsProvider>,
        agent_timeout: Duration,
    ) -> Self {
        SttTtsPipeline {
            stt,
            tts,
            agent_timeout,
        }
    }
}

impl SessionPipeline for SttTtsPipeline {
    fn needs_agent(&self) -> bool {
        true
    }

    fn run(&self, ctx: PipelineContext) -> BoxFuture<'static, ()> {
        let (conversation, inbox) =
            Conversation::new(ctx, self.stt.clone(), self.tts.clone(), self.agent_timeout);
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
    Reply(u64, ReplyMsg),
    AgentTimeout,
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
}

/// The receiving ends the task selects over (kept apart from `Conversation` for borrowing).
struct Inbox {
    stt_rx: mpsc::UnboundedReceiver<(u32, SttResult)>,
    stt_done_rx: mpsc::UnboundedReceiver<(u32, Result<()>)>,
    reply_rx: mpsc::UnboundedReceiver<(u64, ReplyMsg)>,
    tts_done_rx: mpsc::UnboundedReceiver<(u64, Result<()>)>,
}

impl Conversation {
    fn new(
        ctx: PipelineContext,
        stt: Arc<dyn SttProvider>,
        tts: Arc<dyn TtsProvider>,
        agent_timeout: Duration,
    ) -> (Self, Inbox) {
        let (stt_tx, stt_rx) = mpsc::unbounded_channel();
        let (stt_done_tx, stt_done_rx) = mpsc::unbounded_channel();
        let (reply_tx, reply_rx) = mpsc::unbounded_channel();
        let (tts_done_tx, tts_done_rx) = mpsc::unbounded_channel();
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
        };
        (
            conversation,
            Inbox {
                stt_rx,
                stt_done_rx,
                reply_rx,
                tts_done_rx,
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
            let wake = tokio::select! {
                () = self.ctx.bell.rung() => Wake::Rung,
                news = next_transport_news(&mut self.ctx.transport) => Wake::Transport(news),
                _ = housekeeping.tick() => Wake::Housekeeping,
                command = self.ctx.commands.recv() => Wake::Command(command),
                Some((turn, result)) = inbox.stt_rx.recv() => Wake::Stt(turn, result),
                Some((turn, done)) = inbox.stt_done_rx.recv() => Wake::SttDone(turn, done),
                Some((id, msg)) = inbox.reply_rx.recv() => Wake::Reply(id, msg),
                () = sleep_until(agent_deadline) => Wake::AgentTimeout,
                chunk = next_tts_audio(&mut self.active), if has_room => Wake::TtsAudio(chunk),
                Some((id, done)) = inbox.tts_done_rx.recv() => Wake::TtsDone(id, done),
            };
            match wake {
                Wake::Rung => self.on_realtime_news(),
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
                Wake::Reply(id, msg) => self.on_reply_msg(id, msg),
                Wake::AgentTimeout => self.on_agent_timeout(),
                Wake::TtsAudio(chunk) => self.on_tts_audio(chunk),
                Wake::TtsDone(id, done) => self.on_tts_done(id, done),
            }
        }
        self.shutdown();
    }

    /// Takes everything the realtime thread left: turn events, speech, playout news, drops.
    fn on_realtime_news(&mut self) {
        self.ctx.bell.clear();
        while let Ok(output) = self.ctx.from_rt.pop() {
            match output {
                RtOutput::SpeechStarted { turn, .. } => {
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
                    self.ctx.recorder.speech(frame.turn, frame.samples());
                }
                RtOutput::SpeechStopped {
                    turn,
                    speech_end_us,
                    ..
                } => {
                    self.stt_audio.remove(&turn);
                    // A turn whose STT already failed (a network provider can fail while the
                    // user still speaks) has nothing left to process: the session keeps
                    // listening.
                    let pending = self.transcripts.contains_key(&turn);
                    if pending {
                        self.clock.speech_ended(turn, speech_end_us);
                    }
                    // The state changes first: whoever sees SPEECH_STOPPED sees PROCESSING.
                    if self.active.is_none() && pending {
                        self.ctx
                            .events
                            .set_state(VbSessionState::VB_STATE_PROCESSING);
                    }
                    self.ctx
                        .events
                        .emit(VbEventKind::VB_EVENT_SPEECH_STOPPED, |_| {});
                }
                RtOutput::Interrupted { .. } => self.cancel_reply(false),
                RtOutput::PlayoutStarted { at_us } => self.on_playout_started(at_us),
                RtOutput::PlayoutFinished { .. } => {
                    if self.active.as_ref().is_some_and(|a| a.finished_sent) {
                        self.complete_reply();
                    }
                }
            }
        }
        report_drops(&self.ctx.shared, &mut self.ctx.events);
        self.ctx.recorder.report_failures(&mut self.ctx.events);
        self.ctx.reply.pump();
        self.finish_reply_audio_if_done();
    }

    fn open_stt_turn(&mut self, turn: u32) {
        let (audio_tx, audio_rx) = speech_ring(self.ctx.turn_samples);
        self.stt_audio.insert(turn, audio_tx);
        self.transcripts.insert(turn, None);
        let request = SttTurn {
            sample_rate: self.ctx.spec.internal_rate,
            audio: audio_rx,
            results: SttSink::new(turn, self.stt_tx.clone()),
        };
        let future = self.stt.transcribe(request);
        let done = self.stt_done_tx.clone();
        self.ctx.runtime.spawn(async move {
            let result = future.await;
            let _ = done.send((turn, result));
        });
    }

    fn on_stt_result(&mut self, turn: u32, result: SttResult) {
        match result {
            SttResult::Partial(text) => {
                let events = &mut self.ctx.events;
                events.emit(VbEventKind::VB_EVENT_TRANSCRIPT_PARTIAL, |e| {
                    e.text = Some(text)
                });
            }
            SttResult::Final(text) => {
                let now = self.ctx.events.now_us();
                self.clock.stt_final(turn, now);
                if let Some(slot) = self.transcripts.get_mut(&turn) {
                    slot.get_or_insert(Ok(text));
                }
                self.deliver_transcripts_in_order();
            }
        }
    }

    fn on_stt_done(&mut self, turn: u32, done: Result<()>) {
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
            match outcome {
                Ok(text) => {
                    let transcript = text.trim().to_owned();
                    let events = &mut self.ctx.events;
                    events.emit(VbEventKind::VB_EVENT_TRANSCRIPT_FINAL, |e| {
                        e.text = Some(text)
                    });
                    if transcript.is_empty() {
                        self.clock.forget(turn);
                        self.ctx.recorder.discard(turn);
                        self.back_to_listening_if_idle();
                    } else {
                        self.queue
                            .push_back(ReplySource::Agent { turn, transcript });
                        self.start_next_reply();
                    }
                }
                Err(e) => {
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

    fn start_next_reply(&mut self) {
        if self.active.is_some() {
            return;
        }
        let Some(source) = self.queue.pop_front() else {
            return;
        };
        let id = self.next_reply_id;
        self.next_reply_id += 1;
        let cancelled = Arc::new(AtomicBool::new(false));
        let (text_tx, text_rx) = mpsc::unbounded_channel();
        let (audio_tx, audio_rx) = mpsc::channel(16);
        let _ = self.ctx.control.try_send(RtControl::ReplyStarted);
        let synthesis = self.tts.synthesize(TtsRequest {
            text: text_rx,
            audio: audio_tx,
        });
        let tts_done = self.tts_done_tx.clone();
        let tts_task = self.ctx.runtime.spawn(async move {
            let result = synthesis.await;
            let _ = tts_done.send((id, result));
        });
        let mut reply = ActiveReply {
            id,
            turn: None,
            transcript: String::new(),
            cancelled: cancelled.clone(),
            text_tx: Some(text_tx),
            agent_deadline: None,
            audio_rx,
            audio_open: true,
            tts_task,
            tts_done: false,
            full_text: String::new(),
            audio_pushed: false,
            finished_sent: false,
            metrics: VbTurnMetrics::default(),
        };
        match source {
            ReplySource::Agent { turn, transcript } => {
                reply.turn = Some(turn);
                reply.agent_deadline = Some(tokio::time::Instant::now() + self.agent_timeout);
                reply.transcript = transcript.clone();
                self.ctx
                    .events
                    .set_state(VbSessionState::VB_STATE_PROCESSING);
                let agent = self.ctx.agent.clone();
                let reply_tx = self.reply_tx.clone();
                let history = self.ctx.recorder.history();
                self.ctx.runtime.spawn_blocking(move || {
                    run_agent(agent, id, &transcript, reply_tx, cancelled, history)
                });
            }
            ReplySource::Say(text) => {
                if let Some(tx) = reply.text_tx.take() {
                    let _ = tx.send(text);
                }
            }
        }
        self.active = Some(reply);
    }

    fn on_reply_msg(&mut self, id: u64, msg: ReplyMsg) {
        let now = self.ctx.events.now_us();
        let Some(reply) = self.active.as_mut().filter(|r| r.id == id) else {
            // The reply already finished (or was cancelled): its agent's failure still counts.
            if let ReplyMsg::Returned(Err(e)) = msg {
                self.ctx.events.provider_error(
                    PROVIDER_AGENT,
                    e.status(),
                    format!("agent: {}", e.message()),
                );
            }
            return;
        };
        match msg {
            ReplyMsg::Text(text) => {
                if let Some(turn) = reply.turn {
                    if reply.full_text.is_empty() {
                        reply.metrics.agent_first_text_us = self.clock.since_speech_end(turn, now);
                    }
                }
                reply.full_text.push_str(&text);
                if let Some(tx) = &reply.text_tx {
                    let _ = tx.send(text);
                }
            }
            ReplyMsg::End => self.end_reply_text(),
            ReplyMsg::Returned(result) => {
                if let Err(e) = result {
                    self.ctx.events.provider_error(
                        PROVIDER_AGENT,
                        e.status(),
                        format!("agent: {}", e.message()),
                    );
                }
                self.end_reply_text();
            }
        }
    }

    /// The agent is done writing: let TTS finish and publish the full reply text once.
    fn end_reply_text(&mut self) {
        let Some(reply) = self.active.as_mut() else {
            return;
        };
        reply.agent_deadline = None;
        if reply.text_tx.take().is_some() && reply.turn.is_some() {
            let text = reply.full_text.clone();
            self.ctx
                .events
                .emit(VbEventKind::VB_EVENT_AGENT_RESPONSE, |e| {
                    e.text = Some(text)
                });
        }
    }

    fn on_tts_audio(&mut self, chunk: Option<Vec<i16>>) {
        let now = self.ctx.events.now_us();
        let rate = self.tts.sample_rate();
        let Some(reply) = self.active.as_mut() else {
            return;
        };
        match chunk {
            Some(pcm) if !pcm.is_empty() => {
                if !reply.audio_pushed {
                    reply.audio_pushed = true;
                    if let Some(turn) = reply.turn {
                        reply.metrics.tts_first_audio_us = self.clock.since_speech_end(turn, now);
                    }
                }
                self.ctx.reply.push(&pcm, rate);
                self.ctx.shared.wake();
            }
            Some(_) => {}
            None => {
                reply.audio_open = false;
                self.finish_reply_audio_if_done();
            }
        }
    }

    fn on_tts_done(&mut self, id: u64, done: Result<()>) {
        let Some(reply) = self.active.as_mut().filter(|r| r.id == id) else {
            return;
        };
        reply.tts_done = true;
        if let Err(e) = done {
            self.ctx.events.provider_error(
                self.tts.name(),
                e.status(),
                provider_message("tts", self.tts.name(), e.message()),
            );
        }
        self.finish_reply_audio_if_done();
    }

    /// Once TTS is done and all its audio reached the reply ring, tell playout that nothing more
    /// comes. A reply without audio completes at once.
    fn finish_reply_audio_if_done(&mut self) {
        let Some(reply) = self.active.as_mut() else {
            return;
        };
        if !reply.tts_done || reply.audio_open || reply.finished_sent {
            return;
        }
        self.ctx.reply.finish();
        if !self.ctx.reply.is_drained() {
            return;
        }
        reply.finished_sent = true;
        let _ = self.ctx.control.try_send(RtControl::ReplyFinished);
        self.ctx.shared.wake();
        if !reply.audio_pushed {
            self.complete_reply();
        }
    }

    fn on_playout_started(&mut self, at_us: u64) {
        let Some(reply) = self.active.as_mut() else {
            return;
        };
        self.ctx.events.set_state(VbSessionState::VB_STATE_SPEAKING);
        if let Some(turn) = reply.turn {
            reply.metrics.stt_final_us = self.clock.stt_final_since_speech_end(turn);
            reply.metrics.first_output_audio_us = self.clock.since_speech_end(turn, at_us);
            let metrics = reply.metrics;
            self.ctx.events.turn_metrics(turn, at_us, metrics);
        }
    }

    /// The active reply has been played (or had nothing to play): start the next one.
    fn complete_reply(&mut self) {
        if let Some(reply) = self.active.take() {
            if let Some(turn) = reply.turn {
                self.clock.forget(turn);
                let recorder = &mut self.ctx.recorder;
                recorder.finished(turn, reply.transcript, reply.full_text, false);
            }
        }
        self.back_to_listening_if_idle();
        self.start_next_reply();
    }

    /// Barge-in: cancel the agent and TTS, drop queued replies, resume playout on the new turn.
    /// `from_host` is `vb_session_interrupt`, which also flushes playout itself.
    fn cancel_reply(&mut self, from_host: bool) {
        let dropped = self.drop_active_reply();
        let had_reply = dropped.is_some() || !self.queue.is_empty();
        if let Some(reply) = dropped {
            self.record_cut_short(reply);
        }
        // Turns still waiting for their reply were heard: they stay in the history, unanswered.
        for source in self.queue.drain(..) {
            if let ReplySource::Agent { turn, transcript } = source {
                self.ctx
                    .recorder
                    .finished(turn, transcript, String::new(), true);
            }
        }
        self.ctx.reply.clear();
        if from_host {
            let _ = self.ctx.control.try_send(RtControl::Interrupt);
        }
        let _ = self.ctx.control.try_send(RtControl::ReplyCancelled);
        self.ctx.shared.wake();
        if had_reply || !from_host {
            self.ctx
                .events
                .emit(VbEventKind::VB_EVENT_INTERRUPTED, |_| {});
        }
        self.ctx
            .events
            .set_state(VbSessionState::VB_STATE_LISTENING);
    }

    /// The agent overran `agent_timeout_ms`: its reply is cancelled (it sees
    /// `Reply::is_cancelled`), whatever it already said stops, and the session goes on with the
    /// next queued reply or back to listening.
    fn on_agent_timeout(&mut self) {
        let Some(reply) = self.drop_active_reply() else {
            return;
        };
        self.record_cut_short(reply);
        self.ctx.reply.clear();
        let _ = self.ctx.control.try_send(RtControl::Interrupt);
        let _ = self.ctx.control.try_send(RtControl::ReplyCancelled);
        self.ctx.shared.wake();
        let ms = self.agent_timeout.as_millis();
        self.ctx.events.provider_error(
            PROVIDER_AGENT,
            VbStatus::VB_ERR_TIMEOUT,
            format!(
                "agent: no complete reply within {ms} ms (agent_timeout_ms); the turn is dropped"
            ),
        );
        self.back_to_listening_if_idle();
        self.start_next_reply();
    }

    /// Cancels the active reply's agent and TTS and forgets its turn; returns it, if any.
    fn drop_active_reply(&mut self) -> Option<ActiveReply> {
        let reply = self.active.take()?;
        reply.cancelled.store(true, Ordering::Release);
        reply.tts_task.abort();
        if let Some(turn) = reply.turn {
            self.clock.forget(turn);
        }
        Some(reply)
    }

    /// Records a reply that was cut short (barge-in, interrupt, agent timeout) in the history.
    fn record_cut_short(&mut self, reply: ActiveReply) {
        if let Some(turn) = reply.turn {
            let recorder = &mut self.ctx.recorder;
            recorder.finished(turn, reply.transcript, reply.full_text, true);
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

/// Waits for the active reply's next TTS chunk; pending forever when there is none.
async fn next_tts_audio(active: &mut Option<ActiveReply>) -> Option<Vec<i16>> {
    match active {
        Some(reply) if reply.audio_open => reply.audio_rx.recv().await,
        _ => std::future::pending().await,
    }
}

/// Runs the host's agent for one transcript on an agent worker thread; its panics become errors.
fn run_agent(
    agent: Option<Arc<dyn Agent>>,
    id: u64,
    transcript: &str,
    reply_tx: mpsc::UnboundedSender<(u64, ReplyMsg)>,
    cancelled: Arc<AtomicBool>,
    history: Arc<History>,
) {
    let mut reply = Reply::new(id, reply_tx.clone(), cancelled, history);
    let result = match agent {
        Some(agent) => std::panic::catch_unwind(AssertUnwindSafe(|| {
            agent.on_transcript(transcript, &mut reply)
        }))
        .unwrap_or_else(|_| {
            Err(Error::new(
                VbStatus::VB_ERR_PANIC,
                "the agent callback panicked",
            ))
        }),
        None => Err(Error::invalid_state("this session has no agent")),
    };
    let _ = reply_tx.send((id, ReplyMsg::Returned(result)));
}
