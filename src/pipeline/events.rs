//! The session's outgoing event queue and its state cell, written by the session task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crossbeam_channel::{Receiver, Sender};

use crate::error::VbStatus;
use crate::event::{Event, VbEventKind, VbSessionState, VbTurnMetrics};
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

/// Writes events with the current state and time stamp, and tells the session's telemetry about
/// errors and played turns. Lives on the session task.
pub struct EventSink {
    tx: Sender<Event>,
    /// A copy of every event for the session's network transport (captions, agent state).
    tap: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
    shared: Arc<RtShared>,
    state: Arc<StateCell>,
    lost: u64,
    telemetry: SessionTelemetry,
}

impl EventSink {
    /// A sink writing into `tx` and observed by `telemetry`.
    pub fn new(
        tx: Sender<Event>,
        shared: Arc<RtShared>,
        state: Arc<StateCell>,
        telemetry: SessionTelemetry,
    ) -> Self {
        EventSink {
            tx,
            tap: None,
            shared,
            state,
            lost: 0,
            telemetry,
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

    /// Emits `VB_EVENT_AUDIO_DROPPED` for `samples` lost samples.
    pub fn dropped(&mut self, samples: u64, what: &str) {
        self.emit(VbEventKind::VB_EVENT_AUDIO_DROPPED, |e| {
            e.dropped_samples = samples;
            e.text = Some(what.to_owned());
        });
    }
}
