//! The reply half of the conversation: queued replies started one at a time, the host's agent
//! run on an agent worker with a streaming reply, its text through TTS into the reply ring,
//! playout, and how a reply ends — played, interrupted (barge-in, the host), or timed out.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::{ActiveReply, Conversation, ReplySource};
use crate::agent::{Agent, History, REPLY_CANCELLED, Reply, ReplyMsg};
use crate::error::{Error, Result, VbStatus};
use crate::event::{VbEventKind, VbSessionState, VbTurnMetrics};
use crate::pipeline::provider_message;
use crate::provider::TtsRequest;
use crate::rt::message::RtControl;
use crate::telemetry::PROVIDER_AGENT;

impl Conversation {
    pub(super) fn start_next_reply(&mut self) {
        if self.active.is_some() {
            return;
        }
        let Some(source) = self.queue.pop_front() else {
            return;
        };
        self.begin_reply(source, false);
    }

    /// Starts `source`'s reply as the active one. A `held` reply (preemptive, see
    /// [`super::preemptive`]) runs its agent and TTS but plays nothing and tells nobody until it
    /// is promoted.
    pub(super) fn begin_reply(&mut self, source: ReplySource, held: bool) {
        let id = self.next_reply_id;
        self.next_reply_id += 1;
        // The reply's TTS and agent run in the span of the turn they answer.
        let span = match &source {
            ReplySource::Agent { turn, .. } => tracing::error_span!("turn", turn = *turn),
            ReplySource::Say(_) => tracing::error_span!("say"),
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        let (text_tx, text_rx) = mpsc::unbounded_channel();
        let (audio_tx, audio_rx) = mpsc::channel(16);
        if !held {
            let _ = self.ctx.control.try_send(RtControl::ReplyStarted);
        }
        let synthesis = self.tts.synthesize(TtsRequest {
            text: text_rx,
            audio: audio_tx,
        });
        let tts_done = self.tts_done_tx.clone();
        let tts_task = self.ctx.runtime.spawn(
            async move {
                let result = synthesis.await;
                let _ = tts_done.send((id, result));
            }
            .instrument(span.clone()),
        );
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
            held,
            first_text_at_us: None,
            held_failures: Vec::new(),
        };
        match source {
            ReplySource::Agent { turn, transcript } => {
                reply.turn = Some(turn);
                reply.agent_deadline = Some(tokio::time::Instant::now() + self.agent_timeout);
                reply.transcript = transcript.clone();
                if !held {
                    self.ctx
                        .events
                        .set_state(VbSessionState::VB_STATE_PROCESSING);
                }
                let agent = self.ctx.agent.clone();
                let reply_tx = self.reply_tx.clone();
                let history = self.ctx.recorder.history();
                self.ctx.runtime.spawn_blocking(move || {
                    span.in_scope(|| {
                        run_agent(agent, id, &transcript, reply_tx, cancelled, history)
                    })
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

    pub(super) fn on_reply_msg(&mut self, id: u64, msg: ReplyMsg) {
        let now = self.ctx.events.now_us();
        let Some(reply) = self.active.as_mut().filter(|r| r.id == id) else {
            // A preemptive reply that was cancelled never existed for the host.
            let last = matches!(msg, ReplyMsg::Returned(_));
            if let Some(p) = self.preemption.as_mut() {
                if p.swallows(id, last) {
                    return;
                }
            }
            // The reply already finished (or was cancelled): its agent's failure still counts,
            // unless it is only the cancellation passed back, which the host has heard of.
            if let ReplyMsg::Returned(Err(e)) | ReplyMsg::Failed(e) = msg {
                if e.message() != REPLY_CANCELLED {
                    self.agent_failed(&e);
                }
            }
            return;
        };
        match msg {
            ReplyMsg::Text(text) => {
                if reply.full_text.is_empty() {
                    reply.first_text_at_us = Some(now);
                }
                reply.full_text.push_str(&text);
                if let Some(tx) = &reply.text_tx {
                    let _ = tx.send(text);
                }
            }
            ReplyMsg::End => self.end_reply_text(),
            // The agent's failure ends its reply: what it wrote is still spoken, then the
            // session listens again.
            ReplyMsg::Returned(Err(e)) | ReplyMsg::Failed(e) => {
                self.agent_failed_in_reply(e);
                self.end_reply_text();
            }
            ReplyMsg::Returned(Ok(())) => self.end_reply_text(),
            ReplyMsg::Notice(e) => self.agent_failed_in_reply(e),
        }
    }

    /// The active reply's agent failed: reported now, or when a held reply is kept.
    fn agent_failed_in_reply(&mut self, e: Error) {
        match self.active.as_mut().filter(|r| r.held) {
            Some(reply) => reply.held_failures.push(e),
            None => self.agent_failed(&e),
        }
    }

    /// Reports the agent's own failure (returned by its callback or given to `Reply::fail`).
    pub(super) fn agent_failed(&mut self, e: &Error) {
        self.ctx.events.provider_error(
            PROVIDER_AGENT,
            e.status(),
            format!("agent: {}", e.message()),
        );
    }

    /// The agent is done writing: let TTS finish and publish the full reply text once.
    pub(super) fn end_reply_text(&mut self) {
        let Some(reply) = self.active.as_mut() else {
            return;
        };
        reply.agent_deadline = None;
        // A held reply's text is told when it is kept.
        if reply.text_tx.take().is_some() && reply.turn.is_some() && !reply.held {
            let text = reply.full_text.clone();
            self.ctx
                .events
                .emit(VbEventKind::VB_EVENT_AGENT_RESPONSE, |e| {
                    e.text = Some(text)
                });
        }
    }

    pub(super) fn on_tts_audio(&mut self, chunk: Option<Vec<i16>>) {
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

    pub(super) fn on_tts_done(&mut self, id: u64, done: Result<()>) {
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
    pub(super) fn finish_reply_audio_if_done(&mut self) {
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

    pub(super) fn on_playout_started(&mut self, at_us: u64) {
        let Some(reply) = self.active.as_mut() else {
            return;
        };
        self.ctx.events.set_state(VbSessionState::VB_STATE_SPEAKING);
        if let Some(turn) = reply.turn {
            reply.metrics.stt_final_us = self.clock.stt_final_since_speech_end(turn);
            // From when the text came: for a preemptive reply, before the turn had ended.
            if let Some(at) = reply.first_text_at_us {
                reply.metrics.agent_first_text_us = self.clock.since_speech_end(turn, at);
            }
            reply.metrics.first_output_audio_us = self.clock.since_speech_end(turn, at_us);
            let metrics = reply.metrics;
            self.ctx.events.turn_metrics(turn, at_us, metrics);
        }
    }

    /// The active reply has been played (or had nothing to play): start the next one.
    pub(super) fn complete_reply(&mut self) {
        if let Some(reply) = self.active.take() {
            if let Some(turn) = reply.turn {
                self.clock.forget(turn);
                self.turn_finished(turn, reply.transcript, reply.full_text, false);
            }
        }
        self.back_to_listening_if_idle();
        self.start_next_reply();
    }

    /// Barge-in: cancel the agent and TTS, drop queued replies, resume playout on the new turn.
    /// `from_host` is `vb_session_interrupt`, which also flushes playout itself.
    pub(super) fn cancel_reply(&mut self, from_host: bool) {
        // An early reply not kept yet was never heard: it goes without a word; the turn it
        // anticipated will be answered when its transcript comes.
        self.discard_held("interrupted");
        let dropped = self.drop_active_reply();
        let had_reply = dropped.is_some() || !self.queue.is_empty();
        if let Some(reply) = dropped {
            self.record_cut_short(reply);
        }
        // Turns still waiting for their reply were heard: they stay in the history, unanswered.
        let queued: Vec<ReplySource> = self.queue.drain(..).collect();
        for source in queued {
            if let ReplySource::Agent { turn, transcript } = source {
                self.turn_finished(turn, transcript, String::new(), true);
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
    pub(super) fn on_agent_timeout(&mut self) {
        if self.active.as_ref().is_some_and(|r| r.held) {
            // Too slow for an early start: the turn is answered as usual once it ends.
            self.discard_held("the agent did not finish within agent_timeout_ms");
            return self.start_next_reply();
        }
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
    pub(super) fn drop_active_reply(&mut self) -> Option<ActiveReply> {
        self.paused = None;
        let reply = self.active.take()?;
        reply.cancelled.store(true, Ordering::Release);
        reply.tts_task.abort();
        if let Some(turn) = reply.turn {
            self.clock.forget(turn);
        }
        Some(reply)
    }

    /// Records a reply that was cut short (barge-in, interrupt, agent timeout) in the history.
    pub(super) fn record_cut_short(&mut self, reply: ActiveReply) {
        if let Some(turn) = reply.turn {
            self.turn_finished(turn, reply.transcript, reply.full_text, true);
        }
    }

    /// Turn `turn` joins the conversation: recorded in the history (and the session store), and
    /// the agent gets ready for the next turn ([`Agent::prepare`]) on an agent worker thread.
    fn turn_finished(&mut self, turn: u32, transcript: String, text: String, interrupted: bool) {
        self.ctx
            .recorder
            .finished(turn, transcript, text, interrupted);
        let Some(agent) = self.ctx.agent.clone().filter(|agent| agent.prepares()) else {
            return;
        };
        let history = self.ctx.recorder.history();
        self.ctx.runtime.spawn_blocking(move || {
            let turns = history.turns();
            if std::panic::catch_unwind(AssertUnwindSafe(|| agent.prepare(&turns))).is_err() {
                tracing::warn!("the agent's prepare panicked: the next turn starts unprepared");
            }
        });
    }
}

/// Waits for the active reply's next TTS chunk; pending forever when there is none.
pub(super) async fn next_tts_audio(active: &mut Option<ActiveReply>) -> Option<Vec<i16>> {
    match active {
        // A held reply's audio waits in its channel (TTS pauses when that is full).
        Some(reply) if reply.audio_open && !reply.held => reply.audio_rx.recv().await,
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
    // A reply the agent failed was reported then; what its callback returns (often the status
    // `vb_reply_fail` gave back) is not reported a second time. A panic still is.
    let result = match result {
        Err(e) if reply.has_failed() && e.status() != VbStatus::VB_ERR_PANIC => Ok(()),
        result => result,
    };
    let _ = reply_tx.send((id, ReplyMsg::Returned(result)));
}
