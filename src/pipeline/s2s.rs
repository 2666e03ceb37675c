//! The speech-to-speech conversation of one session: user speech streams to one model, which
//! answers with audio and text by itself. The engine's turn detector tells the model when to
//! answer; barge-in (the engine's, or the model's own) cancels the response.
//!
//! A model may also do its own turn-taking (a Pipecat bot) and answer before the engine's turn
//! detector has ended the user's turn. Its output then waits until the turn has ended, so that a
//! host sees the same order of events as on `stt_tts` pipelines: `SPEECH_STOPPED`, then the
//! turn's transcript, the reply text, and the reply's audio.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::history::TurnRecorder;
use super::{
    HOUSEKEEPING_PERIOD, PipelineContext, SessionCommand, SessionPipeline, TurnClock,
    end_if_realtime_failed, next_transport_news, provider_message, report_drops, sleep_until,
};
use crate::error::{Result, VbStatus};
use crate::event::{VbEventKind, VbSessionState, VbTurnMetrics};
use crate::provider::{BoxFuture, S2sEvent, S2sInput, S2sProvider, S2sSession};
use crate::rt::message::{RtControl, RtOutput};
use crate::transport::TransportNews;

/// The `s2s` pipeline with its model.
pub struct S2sPipeline {
    model: Arc<dyn S2sProvider>,
    answer_timeout: Duration,
}

impl S2sPipeline {
    /// A pipeline answering with `model`; a turn the model has not begun to answer within
    /// `answer_timeout` of its end is reported (`VB_ERR_TIMEOUT`) and the session listens again.
    pub fn new(model: Arc<dyn S2sProvider>, answer_timeout: Duration) -> Self {
        S2sPipeline {
            model,
            answer_timeout,
        }
    }
}

impl SessionPipeline for S2sPipeline {
    fn needs_agent(&self) -> bool {
        false
    }

    fn run(&self, ctx: PipelineContext) -> BoxFuture<'static, ()> {
        Box::pin(run_session(ctx, self.model.clone(), self.answer_timeout))
    }
}

/// The response being received and played.
#[derive(Default)]
struct Response {
    turn: Option<u32>,
    /// What the model heard the user say.
    transcript: String,
    text: String,
    text_started: bool,
    text_published: bool,
    audio_started: bool,
    done: bool,
    /// Playout was told that no more audio comes (all of it reached the reply ring).
    finished_sent: bool,
    metrics: VbTurnMetrics,
}

enum Wake {
    /// The realtime thread left news.
    Rung,
    /// Time to look at what nobody rings for.
    Housekeeping,
    /// News from the network transport.
    Transport(TransportNews),
    Command(Option<SessionCommand>),
    Model(Option<S2sEvent>),
    ModelEnded(Result<()>),
    NoAnswer,
}

async fn run_session(
    mut ctx: PipelineContext,
    model: Arc<dyn S2sProvider>,
    answer_timeout: Duration,
) {
    let (input_tx, input_rx) = mpsc::unbounded_channel();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel();
    let session = S2sSession {
        input_rate: ctx.spec.internal_rate,
        input: input_rx,
        events: events_tx,
    };
    let run = model.run(session);
    let model_task = ctx.runtime.spawn(async move {
        let _ = ended_tx.send(run.await);
    });
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_PERIOD);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clock = TurnClock::default();
    let mut last_turn = None;
    let mut turn_open = false;
    let mut model_open = true;
    let mut response: Option<Response> = None;
    // Each CancelResponse is answered by one ResponseDone; until then the model's output belongs
    // to the cancelled response and is dropped.
    let mut cancels_pending = 0u32;
    // When the model must have begun answering the turn that ended last.
    let mut answer_deadline: Option<tokio::time::Instant> = None;
    ctx.events.set_state(VbSessionState::VB_STATE_LISTENING);
    loop {
        // Output for a turn the engine has not ended yet waits (see the module docs); a
        // response already playing goes on (barge-in decides its fate).
        let take_output = model_open && ctx.reply.has_room() && !(turn_open && response.is_none());
        let wake = tokio::select! {
            () = ctx.bell.rung() => Wake::Rung,
            news = next_transport_news(&mut ctx.transport) => Wake::Transport(news),
            _ = housekeeping.tick() => Wake::Housekeeping,
            command = ctx.commands.recv() => Wake::Command(command),
            event = events_rx.recv(), if take_output => Wake::Model(event),
            Some(result) = ended_rx.recv() => Wake::ModelEnded(result),
            () = sleep_until(answer_deadline) => Wake::NoAnswer,
        };
        match wake {
            Wake::Housekeeping => ctx.recorder.report_failures(&mut ctx.events),
            Wake::Transport(news) => {
                if ctx.on_transport_news(news) {
                    break;
                }
            }
            Wake::Rung => {
                ctx.bell.clear();
                while let Ok(output) = ctx.from_rt.pop() {
                    match output {
                        RtOutput::SpeechStarted { turn, .. } => {
                            last_turn = Some(turn);
                            turn_open = true;
                            ctx.recorder.speech_started(turn);
                            ctx.events
                                .emit(VbEventKind::VB_EVENT_SPEECH_STARTED, |_| {});
                        }
                        RtOutput::Speech(frame) => {
                            let _ = input_tx.send(S2sInput::Audio(frame.samples().to_vec()));
                            ctx.recorder.speech(frame.turn, frame.samples());
                        }
                        RtOutput::SpeechStopped {
                            turn,
                            speech_end_us,
                            ..
                        } => {
                            clock.speech_ended(turn, speech_end_us);
                            turn_open = false;
                            if response.is_none() {
                                answer_deadline =
                                    Some(tokio::time::Instant::now() + answer_timeout);
                            }
                            let _ = input_tx.send(S2sInput::EndOfTurn);
                            ctx.events.set_state(VbSessionState::VB_STATE_PROCESSING);
                            ctx.events
                                .emit(VbEventKind::VB_EVENT_SPEECH_STOPPED, |_| {});
                        }
                        RtOutput::Interrupted { .. } => {
                            cancels_pending += 1;
                            cancel_response(&mut ctx, &input_tx, &mut response, false);
                        }
                        // A speech-to-speech model hears the words itself: a pause by words is
                        // an interruption here.
                        RtOutput::Paused { .. } => {
                            let _ = ctx.control.try_send(RtControl::Interrupt);
                            cancels_pending += 1;
                            cancel_response(&mut ctx, &input_tx, &mut response, false);
                        }
                        // Preemptive replies are refused for speech-to-speech backends (the
                        // model starts its answers itself).
                        RtOutput::UserPaused { .. } | RtOutput::UserWentOn { .. } => {}
                        RtOutput::PlayoutStarted { at_us } => {
                            ctx.events.set_state(VbSessionState::VB_STATE_SPEAKING);
                            if let Some(r) = response.as_mut() {
                                if let Some(turn) = r.turn {
                                    r.metrics.first_output_audio_us =
                                        clock.since_speech_end(turn, at_us);
                                    ctx.events.turn_metrics(turn, at_us, r.metrics);
                                }
                            }
                        }
                        RtOutput::PlayoutFinished { .. } => {
                            if let Some(r) = response.take_if(|r| r.finished_sent) {
                                record(&mut ctx.recorder, r, false);
                                ctx.events.set_state(VbSessionState::VB_STATE_LISTENING);
                            }
                        }
                    }
                }
                report_drops(&ctx.shared, &mut ctx.events);
                if end_if_realtime_failed(&ctx.shared, &mut ctx.events) {
                    break;
                }
                ctx.recorder.report_failures(&mut ctx.events);
                ctx.reply.pump();
                if let Some(r) = response.as_mut() {
                    finish_audio_if_drained(&mut ctx, r);
                }
            }
            Wake::Command(Some(SessionCommand::Interrupt)) => {
                answer_deadline = None;
                cancels_pending += 1;
                cancel_response(&mut ctx, &input_tx, &mut response, true);
            }
            Wake::Command(Some(SessionCommand::Say(_))) => ctx.events.error(
                VbStatus::VB_ERR_INVALID_STATE,
                "say needs a TTS provider; this session runs a speech-to-speech model",
            ),
            Wake::Command(Some(SessionCommand::Stop) | None) => break,
            Wake::Model(Some(S2sEvent::ResponseDone)) if cancels_pending > 0 => {
                cancels_pending -= 1
            }
            Wake::Model(Some(
                S2sEvent::Audio(_)
                | S2sEvent::AudioAtRate(..)
                | S2sEvent::ResponseText(_)
                | S2sEvent::ResponseTextDone,
            )) if cancels_pending > 0 => {}
            Wake::Model(Some(S2sEvent::Interrupted)) => {
                if response.is_some() {
                    stop_playout(&mut ctx, &mut response, true);
                }
            }
            Wake::Model(Some(S2sEvent::UserTranscriptPartial(text))) => ctx
                .events
                .emit(VbEventKind::VB_EVENT_TRANSCRIPT_PARTIAL, |e| {
                    e.text = Some(text)
                }),
            Wake::Model(Some(S2sEvent::Error(e))) => ctx.events.provider_error(
                model.name(),
                e.status(),
                provider_message("s2s", model.name(), e.message()),
            ),
            Wake::Model(Some(event)) => {
                answer_deadline = None;
                let now = ctx.events.now_us();
                let r = response.get_or_insert_with(|| Response {
                    turn: last_turn,
                    ..Response::default()
                });
                let since_end =
                    |clock: &TurnClock| r.turn.map_or(0, |t| clock.since_speech_end(t, now));
                match event {
                    S2sEvent::UserTranscript(text) => {
                        r.metrics.stt_final_us = since_end(&clock);
                        r.transcript.push_str(&text);
                        ctx.events
                            .emit(VbEventKind::VB_EVENT_TRANSCRIPT_FINAL, |e| {
                                e.text = Some(text)
                            });
                    }
                    S2sEvent::ResponseText(text) => {
                        if !r.text_started {
                            r.text_started = true;
                            r.metrics.agent_first_text_us = since_end(&clock);
                        }
                        r.text.push_str(&text);
                    }
                    S2sEvent::ResponseTextDone => publish_text(&mut ctx, r),
                    S2sEvent::Audio(pcm) => {
                        start_audio(&mut ctx, r, since_end(&clock));
                        ctx.reply.push(&pcm, model.sample_rate());
                        ctx.shared.wake();
                    }
                    S2sEvent::AudioAtRate(pcm, rate) => {
                        start_audio(&mut ctx, r, since_end(&clock));
                        ctx.reply.push(&pcm, rate);
                        ctx.shared.wake();
                    }
                    S2sEvent::ResponseDone => {
                        r.done = true;
                        let audio_started = r.audio_started;
                        publish_text(&mut ctx, r);
                        ctx.reply.finish();
                        if audio_started {
                            finish_audio_if_drained(&mut ctx, r);
                        } else {
                            if let Some(r) = response.take() {
                                record(&mut ctx.recorder, r, false);
                            }
                            ctx.events.set_state(VbSessionState::VB_STATE_LISTENING);
                        }
                    }
                    S2sEvent::UserTranscriptPartial(_)
                    | S2sEvent::Interrupted
                    | S2sEvent::Error(_) => {}
                }
            }
            Wake::NoAnswer => {
                answer_deadline = None;
                let ms = answer_timeout.as_millis();
                let why = format!("no answer to the turn within {ms} ms (agent_timeout_ms)");
                ctx.events.provider_error(
                    model.name(),
                    VbStatus::VB_ERR_TIMEOUT,
                    provider_message("s2s", model.name(), &why),
                );
                if response.is_none() {
                    ctx.events.set_state(VbSessionState::VB_STATE_LISTENING);
                }
            }
            // The model's task has ended (ModelEnded reports how).
            Wake::Model(None) => model_open = false,
            Wake::ModelEnded(result) => {
                let (status, message) = match result {
                    Ok(()) => (
                        VbStatus::VB_ERR_PROVIDER,
                        provider_message("s2s", model.name(), "the model closed the session"),
                    ),
                    Err(e) => (
                        e.status(),
                        provider_message("s2s", model.name(), e.message()),
                    ),
                };
                ctx.events.provider_error(model.name(), status, message);
                ctx.events.set_state(VbSessionState::VB_STATE_ERROR);
            }
        }
    }
    drop(input_tx);
    model_task.abort();
    ctx.events.set_state(VbSessionState::VB_STATE_STOPPED);
}

/// Barge-in: cancel the model's response and resume listening.
fn cancel_response(
    ctx: &mut PipelineContext,
    input: &mpsc::UnboundedSender<S2sInput>,
    response: &mut Option<Response>,
    from_host: bool,
) {
    let _ = input.send(S2sInput::CancelResponse);
    // The realtime thread flushed playout itself when it detected the barge-in.
    stop_playout(ctx, response, from_host);
}

/// Drops the response's audio, resumes listening, and reports `VB_EVENT_INTERRUPTED` when there
/// was a response to interrupt. `flush`: playout is still running and must stop now.
fn stop_playout(ctx: &mut PipelineContext, response: &mut Option<Response>, flush: bool) {
    let had_response = match response.take() {
        Some(r) => {
            record(&mut ctx.recorder, r, true);
            true
        }
        None => false,
    };
    ctx.reply.clear();
    if flush {
        let _ = ctx.control.try_send(RtControl::Interrupt);
    }
    let _ = ctx.control.try_send(RtControl::ReplyCancelled);
    ctx.shared.wake();
    if had_response {
        ctx.events.emit(VbEventKind::VB_EVENT_INTERRUPTED, |_| {});
    }
    ctx.events.set_state(VbSessionState::VB_STATE_LISTENING);
}

/// Once the model is done and all of its audio reached the reply ring, playout is told that
/// nothing more comes (it then reports the end of playout once the host has read it all).
fn finish_audio_if_drained(ctx: &mut PipelineContext, r: &mut Response) {
    if r.done && r.audio_started && !r.finished_sent && ctx.reply.is_drained() {
        r.finished_sent = true;
        let _ = ctx.control.try_send(RtControl::ReplyFinished);
        ctx.shared.wake();
    }
}

/// The response's first audio: playout is told a reply comes.
fn start_audio(ctx: &mut PipelineContext, r: &mut Response, since_speech_end_us: u64) {
    if !r.audio_started {
        r.audio_started = true;
        r.metrics.tts_first_audio_us = since_speech_end_us;
        let _ = ctx.control.try_send(RtControl::ReplyStarted);
    }
}

/// Emits `VB_EVENT_AGENT_RESPONSE` with the response text, once, if there is any.
fn publish_text(ctx: &mut PipelineContext, r: &mut Response) {
    if r.text_published || r.text.is_empty() {
        return;
    }
    r.text_published = true;
    let text = r.text.clone();
    ctx.events.emit(VbEventKind::VB_EVENT_AGENT_RESPONSE, |e| {
        e.text = Some(text)
    });
}

/// A finished response to a user turn becomes a turn of the history.
fn record(recorder: &mut TurnRecorder, response: Response, interrupted: bool) {
    if let Some(turn) = response.turn {
        recorder.finished(turn, response.transcript, response.text, interrupted);
    }
}
