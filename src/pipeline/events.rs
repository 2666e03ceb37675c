//! The session's outgoing event queue and its state cell, written by the session task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crossbeam_channel::{Receiver, Sender};

use crate::error::VbStatus;
use crate::event::{Event, VbEventKind, VbSessionState};
use crate::rt::shared::RtShared;

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

/// Writes events with the current state and time stamp.
pub struct EventSink {
    tx: Sender<Event>,
    shared: Arc<RtShared>,
    state: Arc<StateCell>,
    lost: u64,
}

impl EventSink {
    /// A sink writing into `tx`.
    pub fn new(tx: Sender<Event>, shared: Arc<RtShared>, state: Arc<StateCell>) -> Self {
        EventSink {
            tx,
            shared,
            state,
            lost: 0,
        }
    }

    /// Session-clock microseconds now.
    pub fn now_us(&self) -> u64 {
        self.shared.now_us()
    }

    /// The current state.
    pub fn state(&self) -> VbSessionState {
        self.state.get()
    }

    /// Changes the state and emits `VB_EVENT_STATE_CHANGED` when it differs.
    pub fn set_state(&mut self, state: VbSessionState) {
        if self.state.swap(state) != state {
            self.emit(VbEventKind::VB_EVENT_STATE_CHANGED, |_| {});
        }
    }

    /// Emits an event of `kind`; `fill` adds its payload.
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
            if self.tx.send(notice).is_ok() {
                self.lost = 0;
            }
        }
        if self.tx.len() >= EVENT_QUEUE_CAPACITY {
            self.lost += 1;
        } else {
            // Fails only when the session's receiver is gone (nobody can read it any more).
            let _ = self.tx.send(event);
        }
    }

    /// Emits `VB_EVENT_ERROR` with `status` and `message`.
    pub fn error(&mut self, status: VbStatus, message: impl Into<String>) {
        let message = message.into();
        self.emit(VbEventKind::VB_EVENT_ERROR, |e| {
            e.error = status;
            e.text = Some(message);
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
