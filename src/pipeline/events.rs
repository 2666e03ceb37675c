//! The session's outgoing event queue and its state cell, written by the session task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crossbeam_channel::{Receiver, Sender};

use crate::error::VbStatus;
use crate::event::{Event, VbEventKind, VbSessionState, VbTurnMetrics};
use crate::logging::LogPolicy;
use crate::rt::shared::RtShared;
use crate::telemetry::{PROVIDER_ENGINE, SessionTelemetry};

/// Events a host has not polled yet, at most. Beyond that the oldest news is the host's problem:
/// new events are dropped, counted, and reported by an error event once there is room again.
pub const EVENT_QUEUE_CAPACITY: usize = 4096;

/// The session state, readable from any thread.
#[derive(Debug)]
pub struct StateCell(AtomicU8);

impl StateCell {
    /// A cell holding `state`.
    pub fn new(state: VbSessionState) -> Self {
        StateCell(AtomicU8::new(state as u8))
    }
    /// The current state.
    pub fn get(&self) -> VbSessionState {
        VbSessionState::from_u8(self.0.load(Ordering::Acquire))
    }
    /// Replaces the state, returning the previous one.
    pub fn swap(&self, state: VbSessionState) -> VbSessionState {
        VbSessionState::from_u8(self.0.swap(state as u8, Ordering::AcqRel))
    }
}

/// Creates the event queue of a session. Unbounded underneath (memory grows only with the events
/// actually queued); [`EventSink`] enforces [`EVENT_QUEUE_CAPACITY`].
pub fn event_queue() -> (Sender<Event>, Receiver<Event>) {
    crossbeam_channel::unbounded()
}

/// Writes events with the current state and time stamp, tells the session's telemetry about
/// errors and played turns, and logs each event (in the session's span: the session task runs in
/// it), with the conversation's text only where `log_policy` allows. Lives on the session task.
pub struct EventSink {
    tx: Sender<Event>,
    /// A copy of every event for the session's network transport (captions, agent state).
    tap: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
    shared: Arc<RtShared>,
    state: Arc<StateCell>,
    lost: u64,
    telemetry: SessionTelemetry,
    log_policy: LogPolicy,
}

impl EventSink {
    /// A sink writing into `tx`, observed by `telemetry`, logging what `log_policy` allows.
    pub fn new(
        tx: Sender<Event>,
        shared: Arc<RtShared>,
        state: Arc<StateCell>,
        telemetry: SessionTelemetry,
        log_policy: LogPolicy,
    ) -> Self {
        EventSink {
            tx,
            tap: None,
            shared,
            state,
            lost: 0,
            telemetry,
            log_policy,
        }
    }

    /// Also sends a copy of every event to `tap`.
    pub fn with_tap(mut self, tap: tokio::sync::mpsc::UnboundedSender<Event>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Session-clock microseconds now.
    pub fn now_us(&self) -> u64 {
        self.shared.now_us()
    }

    /// The current state.
    pub fn state(&self) -> VbSessionState {
        self.state.get()
    }

    /// The conversation is over (the transport's peer left, or it failed for good): state
    /// `VB_STATE_STOPPED`, announced with `reason`.
    pub fn end(&mut self, reason: String) {
        if self.state.swap(VbSessionState::VB_STATE_STOPPED) != VbSessionState::VB_STATE_STOPPED {
            self.emit(VbEventKind::VB_EVENT_STATE_CHANGED, |e| {
                e.text = Some(reason)
            });
        }
    }

    /// Changes the state and emits `VB_EVENT_STATE_CHANGED` when it differs.
    pub fn set_state(&mut self, state: VbSessionState) {
        if self.state.swap(state) != state {
            self.emit(VbEventKind::VB_EVENT_STATE_CHANGED, |_| {});
        }
    }

    /// Emits an event of `kind`; `fill` adds its payload. Errors go through [`EventSink::error`]
    /// or [`EventSink::provider_error`] and turn metrics through [`EventSink::turn_metrics`], so
    /// that telemetry sees them.
    pub fn emit(&mut self, kind: VbEventKind, fill: impl FnOnce(&mut Event)) {
        let mut event = Event::new(kind, self.now_us(), self.state.get());
        fill(&mut event);
        log_event(&event, self.log_policy);
        if self.lost > 0 && self.tx.len() < EVENT_QUEUE_CAPACITY - 1 {
            let mut notice =
                Event::new(VbEventKind::VB_EVENT_ERROR, event.timestamp_us, event.state).with_text(
                    format!(
                        "{} events were dropped because the host did not poll them",
                        self.lost
                    ),
                );
            notice.error = VbStatus::VB_ERR_BUFFER_FULL;
            self.telemetry.error(notice.error, PROVIDER_ENGINE);
            tracing::warn!(
                provider = PROVIDER_ENGINE,
                code = notice.error.name(),
                "{}",
                notice.text.as_deref().unwrap_or_default()
            );
            if self.tx.send(notice).is_ok() {
                self.lost = 0;
            }
        }
        if let Some(tap) = &self.tap {
            let _ = tap.send(event.clone());
        }
        if self.tx.len() >= EVENT_QUEUE_CAPACITY {
            self.lost += 1;
        } else {
            // Fails only when the session's receiver is gone (nobody can read it any more).
            let _ = self.tx.send(event);
        }
    }

    /// Emits `VB_EVENT_ERROR` with `status` and `message` for a failure of the engine itself.
    pub fn error(&mut self, status: VbStatus, message: impl Into<String>) {
        self.provider_error(PROVIDER_ENGINE, status, message);
    }

    /// Emits `VB_EVENT_ERROR` with `status` and `message` for a failure of `provider` (its
    /// registry name, or `telemetry::PROVIDER_AGENT` for the host's agent), counted by provider.
    pub fn provider_error(&mut self, provider: &str, status: VbStatus, message: impl Into<String>) {
        self.telemetry.error(status, provider);
        let message = message.into();
        tracing::warn!(provider, code = status.name(), "{message}");
        self.emit(VbEventKind::VB_EVENT_ERROR, |e| {
            e.error = status;
            e.text = Some(message);
        });
    }

    /// Emits `VB_EVENT_TURN_METRICS` for turn `turn`, whose first reply sample became readable at
    /// `played_at_us` on the session clock.
    pub fn turn_metrics(&mut self, turn: u32, played_at_us: u64, metrics: VbTurnMetrics) {
        let now = self.now_us();
        self.telemetry
            .turn_played(turn, played_at_us, now, &metrics);
        self.emit(VbEventKind::VB_EVENT_TURN_METRICS, |e| e.metrics = metrics);
    }

    /// Emits `VB_EVENT_DTMF` for a key the caller pressed.
    pub fn dtmf(&mut self, digit: &str) {
        self.emit(VbEventKind::VB_EVENT_DTMF, |e| {
            e.text = Some(digit.to_owned())
        });
    }

    /// Emits `VB_EVENT_AUDIO_DROPPED` for `samples` lost samples.
    pub fn dropped(&mut self, samples: u64, what: &str) {
        self.emit(VbEventKind::VB_EVENT_AUDIO_DROPPED, |e| {
            e.dropped_samples = samples;
            e.text = Some(what.to_owned());
        });
    }
}

/// Logs an event of the session (errors are logged where they are raised, with their provider).
/// Transcripts and replies appear only when `policy` allows it; otherwise their length does.
fn log_event(event: &Event, policy: LogPolicy) {
    use VbEventKind as K;
    let text = event.text.as_deref().unwrap_or_default();
    let chars = text.chars().count();
    match event.kind {
        K::VB_EVENT_STATE_CHANGED => {
            tracing::debug!(state = ?event.state, reason = event.text.as_deref(), "state changed")
        }
        K::VB_EVENT_SPEECH_STARTED => tracing::debug!("user speech started"),
        K::VB_EVENT_SPEECH_STOPPED => tracing::debug!("user speech stopped"),
        K::VB_EVENT_TRANSCRIPT_PARTIAL => match LogPolicy::gate(policy.transcripts, text) {
            Some(transcript) => tracing::trace!(transcript, "partial transcript"),
            None => tracing::trace!(chars, "partial transcript"),
        },
        K::VB_EVENT_TRANSCRIPT_FINAL => match LogPolicy::gate(policy.transcripts, text) {
            Some(transcript) => tracing::debug!(transcript, "final transcript"),
            None => tracing::debug!(chars, "final transcript"),
        },
        K::VB_EVENT_AGENT_RESPONSE => match LogPolicy::gate(policy.agent_text, text) {
            Some(reply) => tracing::debug!(reply, "agent response"),
            None => tracing::debug!(chars, "agent response"),
        },
        K::VB_EVENT_INTERRUPTED => tracing::debug!("interrupted: the user spoke over the reply"),
        K::VB_EVENT_TURN_METRICS => tracing::debug!(
            voice_to_voice_ms = event.metrics.first_output_audio_us / 1000,
            stt_ms = event.metrics.stt_final_us / 1000,
            agent_ms = event.metrics.agent_first_text_us / 1000,
            tts_ms = event.metrics.tts_first_audio_us / 1000,
            "turn played"
        ),
        K::VB_EVENT_AUDIO_DROPPED => {
            tracing::warn!(samples = event.dropped_samples, "audio dropped: {text}")
        }
        K::VB_EVENT_DTMF => tracing::debug!(digit = text, "the caller pressed a key"),
        K::VB_EVENT_ERROR => {}
    }
}
