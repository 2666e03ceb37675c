//! The speech-to-speech conversation of one session: user speech streams to one model, which
//! answers with audio and text by itself. The engine's turn detector tells the model when to
//! answer; barge-in cancels the response.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::history::TurnRecorder;
use super::{
    PipelineContext, SessionCommand, SessionPipeline, TurnClock, provider_message, report_drops,
};
use crate::error::{Result, VbStatus};
use crate::event::{VbEventKind, VbSessionState, VbTurnMetrics};
use crate::provider::{BoxFuture, S2sEvent, S2sInput, S2sProvider, S2sSession};
use crate::rt::message::{RtControl, RtOutput};

/// The `s2s` pipeline with its model.
pub struct S2sPipeline {
    model: Arc<dyn S2sProvider>,
}

impl S2sPipeline {
    /// A pipeline answering with `model`.
    pub fn new(model: Arc<dyn S2sProvider>) -> Self {
        S2sPipeline { model }
    }
}

impl SessionPipeline for S2sPipeline {
    fn needs_agent(&self) -> bool {
        false
    }

    fn run(&self, ctx: PipelineContext) -> BoxFuture<'static, ()> {
        Box::pin(run_session(ctx, self.model.clone()))
    }
}

/// The response being received and played.
#[derive(Default)]
struct Response {
    turn: Option<u32>,
    /// What the model heard the user say.
    transcript: String,
    text: String,
    audio_started: bool,
    done: bool,
    metrics: VbTurnMetrics,
}

enum Wake {
    Tick,
    Command(Option<SessionCommand>),
    Model(Option<S2sEvent>),
    ModelEnded(Result<()>),
}

async fn run_session(mut ctx: PipelineContext, model: Arc<dyn S2sProvider>) {
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
    let mut tick = tokio::time::interval(ctx.spec.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clock = TurnClock::default();
    let mut last_turn = None;
    let mut response: Option<Response> = None;
    // Each CancelResponse is answered by one ResponseDone; until then the model's output belongs
    // to the cancelled response and is dropped.
    let mut cancels_pending = 0u32;
    ctx.events.set_state(VbSessionState::VB_STATE_LISTENING);
    loop {
        let wake = tokio::select! {
            _ = tick.tick() => Wake::Tick,
            command = ctx.commands.recv() => Wake::Command(command),
            event = events_rx.recv(), if ctx.reply.has_room() => Wake::Model(event),
            Some(result) = ended_rx.recv() => Wake::ModelEnded(result),
        };
        match wake {
            Wake::Tick => {
                while let Ok(output) = ctx.from_rt.pop() {
                    match output {
                        RtOutput::SpeechStarted { turn, .. } => {
                            last_turn = Some(turn);
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
                            let _ = input_tx.send(S2sInput::EndOfTurn);
                            ctx.events.set_state(VbSessionState::VB_STATE_PROCESSING);
                            ctx.events
                                .emit(VbEventKind::VB_EVENT_SPEECH_STOPPED, |_| {});
                        }
                        RtOutput::Interrupted { .. } => {
                            cancels_pending += 1;
                            cancel_response(&mut ctx, &input_tx, &mut response, false);
                        }
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
                            if let Some(r) = response.take_if(|r| r.done) {
                                record(&mut ctx.recorder, r, false);
                                ctx.events.set_state(VbSessionState::VB_STATE_LISTENING);
                            }
                        }
                    }
                }
                report_drops(&ctx.shared, &mut ctx.events);
                ctx.recorder.report_failures(&mut ctx.events);
                ctx.reply.pump();
            }
            Wake::Command(Some(SessionCommand::Interrupt)) => {
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
            Wake::Model(Some(S2sEvent::Audio(_) | S2sEvent::ResponseText(_)))
                if cancels_pending > 0 => {}
            Wake::Model(Some(event)) => {
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
                        if r.text.is_empty() {
                            r.metrics.agent_first_text_us = since_end(&clock);
                        }
                        r.text.push_str(&text);
                    }
                    S2sEvent::Audio(pcm) => {
                        if !r.audio_started {
                            r.audio_started = true;
                            r.metrics.tts_first_audio_us = since_end(&clock);
                            let _ = ctx.control.try_send(RtControl::ReplyStarted);
                        }
                        ctx.reply.push(&pcm, model.sample_rate());
                        ctx.shared.wake();
                    }
                    S2sEvent::ResponseDone => {
                        r.done = true;
                        let text = r.text.clone();
                        let audio_started = r.audio_started;
                        if !text.is_empty() {
                            ctx.events.emit(VbEventKind::VB_EVENT_AGENT_RESPONSE, |e| {
                                e.text = Some(text)
                            });
                        }
                        ctx.reply.finish();
                        if audio_started {
                            let _ = ctx.control.try_send(RtControl::ReplyFinished);
                            ctx.shared.wake();
                        } else {
                            if let Some(r) = response.take() {
                                record(&mut ctx.recorder, r, false);
                            }
                            ctx.events.set_state(VbSessionState::VB_STATE_LISTENING);
                        }
                    }
                    S2sEvent::Error(e) => ctx.events.provider_error(
                        model.name(),
                        e.status(),
                        provider_message("s2s", model.name(), e.message()),
                    ),
                }
            }
            Wake::Model(None) => {}
            Wake::ModelEnded(result) => {
                let message = match result {
                    Ok(()) => format!("s2s {}: the model closed the session", model.name()),
                    Err(e) => provider_message("s2s", model.name(), e.message()),
                };
                ctx.events
                    .provider_error(model.name(), VbStatus::VB_ERR_PROVIDER, message);
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
    let had_response = match response.take() {
        Some(r) => {
            record(&mut ctx.recorder, r, true);
            true
        }
        None => false,
    };
    let _ = input.send(S2sInput::CancelResponse);
    ctx.reply.clear();
    if from_host {
        let _ = ctx.control.try_send(RtControl::Interrupt);
    }
    let _ = ctx.control.try_send(RtControl::ReplyCancelled);
    ctx.shared.wake();
    if had_response || !from_host {
        ctx.events.emit(VbEventKind::VB_EVENT_INTERRUPTED, |_| {});
    }
    ctx.events.set_state(VbSessionState::VB_STATE_LISTENING);
}

/// A finished response to a user turn becomes a turn of the history.
fn record(recorder: &mut TurnRecorder, response: Response, interrupted: bool) {
    if let Some(turn) = response.turn {
        recorder.finished(turn, response.transcript, response.text, interrupted);
    }
}
