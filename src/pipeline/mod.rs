//! Wiring sessions: everything between a backend and the realtime core. The backend asks its
//! [`Engine`] (built from a backend kind, [`kinds`]) to wire each session ([`wiring`]): rings,
//! realtime thread, transport ends, and the session task — the conversation that connects the
//! realtime thread's rings to the providers and the host's agent ([`stt_tts`], [`s2s`]), one task
//! per session on the backend's I/O runtime, woken by its realtime thread ([`bell`]).

pub mod bell;
pub mod engine;
pub mod events;
pub mod history;
pub mod kinds;
pub mod manners;
pub mod reply_audio;
pub mod s2s;
pub mod stt_tts;
pub mod wiring;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Sender;
use tokio::sync::mpsc;

pub use crate::rt::processor::{AudioProcessor, ProcessorFactory};
use crate::transport::TransportNews;
pub use crate::transport::edge::PushOutcome;
pub use crate::transport::host_opus::OpusRefusal;
pub use crate::transport::livekit::RoomService;
pub use crate::transport::{Arrivals, Arrived, Listener, Recovered};
pub use engine::Engine;
pub use wiring::{SessionWiring, Start};

use crate::agent::Agent;
use crate::error::VbStatus;
use crate::provider::BoxFuture;
use crate::rt::frame::FrameSpec;
use crate::rt::message::{RtControl, RtOutput};
use crate::rt::shared::RtShared;
use bell::Bell;
use events::EventSink;
use history::TurnRecorder;
use reply_audio::ReplyAudio;

/// Requests from the host's control calls to the session task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    /// Speak this text without a user turn.
    Say(String),
    /// Stop playback now and cancel the reply in progress.
    Interrupt,
    /// End the session task.
    Stop,
}

/// Everything a session task gets.
pub struct PipelineContext {
    /// Frame geometry.
    pub spec: FrameSpec,
    /// Samples of the longest user turn at the internal rate, pre-roll included: what a turn's
    /// speech ring to STT holds.
    pub turn_samples: usize,
    /// Events and speech frames from the realtime thread.
    pub from_rt: rtrb::Consumer<RtOutput>,
    /// Controls to the realtime thread.
    pub control: Sender<RtControl>,
    /// Reply audio into playout.
    pub reply: ReplyAudio,
    /// State shared with the realtime thread and the host calls.
    pub shared: Arc<RtShared>,
    /// Rung by the realtime thread when it left news in `from_rt` or room in the reply ring.
    pub bell: Bell,
    /// Outgoing events.
    pub events: EventSink,
    /// The host's agent, when the pipeline needs one.
    pub agent: Option<Arc<dyn Agent>>,
    /// Host control calls.
    pub commands: mpsc::UnboundedReceiver<SessionCommand>,
    /// The I/O runtime, for provider tasks and agent workers.
    pub runtime: tokio::runtime::Handle,
    /// Records finished turns (history, session store).
    pub recorder: TurnRecorder,
    /// News from the session's network transport, when it has one.
    pub transport: Option<TransportInbox>,
}

/// What a session's network transport tells its session task.
pub struct TransportInbox {
    /// The transport's name, for errors and telemetry (`livekit`).
    pub name: String,
    /// Its news.
    pub news: mpsc::UnboundedReceiver<TransportNews>,
}

impl PipelineContext {
    /// Handles news from the transport: errors become error events, keys the caller pressed
    /// `VB_EVENT_DTMF`; the end of the conversation (the user left, the room closed, the caller
    /// hung up) becomes state `STOPPED` with the reason. Returns whether the conversation is over.
    pub fn on_transport_news(&mut self, news: TransportNews) -> bool {
        let name = self
            .transport
            .as_ref()
            .map_or_else(String::new, |t| t.name.clone());
        match news {
            TransportNews::Error(e) => {
                self.events.provider_error(&name, e.status(), e.message());
                false
            }
            TransportNews::Dtmf(digit) => {
                self.events.dtmf(&digit);
                false
            }
            TransportNews::Ended { reason, error } => {
                if let Some(e) = error {
                    self.events.provider_error(&name, e.status(), e.message());
                }
                self.events.end(reason);
                true
            }
        }
    }
}

/// The next news of a session's transport; pending forever without a transport (or once it
/// has gone).
pub async fn next_transport_news(inbox: &mut Option<TransportInbox>) -> TransportNews {
    match inbox {
        Some(inbox) => match inbox.news.recv().await {
            Some(news) => news,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// A kind of session pipeline (what a backend provider runs per session).
pub trait SessionPipeline: Send + Sync {
    /// Whether sessions need the host's agent callback.
    fn needs_agent(&self) -> bool;
    /// The session task: runs until a `Stop` command or the command channel closes.
    fn run(&self, ctx: PipelineContext) -> BoxFuture<'static, ()>;
}

/// Session-clock times of each turn in flight, for per-turn metrics.
#[derive(Debug, Default)]
pub struct TurnClock {
    turns: HashMap<u32, TurnTimes>,
}

#[derive(Debug, Default, Clone, Copy)]
struct TurnTimes {
    speech_end_us: u64,
    stt_final_us: u64,
}

impl TurnClock {
    /// Records when the turn's last voiced frame was processed.
    pub fn speech_ended(&mut self, turn: u32, at_us: u64) {
        self.turns.entry(turn).or_default().speech_end_us = at_us;
    }

    /// Records when the final transcript arrived.
    pub fn stt_final(&mut self, turn: u32, at_us: u64) {
        self.turns.entry(turn).or_default().stt_final_us = at_us;
    }

    /// Microseconds from the turn's end of speech to `at_us` (0 for an unknown turn).
    pub fn since_speech_end(&self, turn: u32, at_us: u64) -> u64 {
        self.turns
            .get(&turn)
            .map_or(0, |t| at_us.saturating_sub(t.speech_end_us))
    }

    /// Microseconds from the turn's end of speech to its final transcript.
    pub fn stt_final_since_speech_end(&self, turn: u32) -> u64 {
        self.turns
            .get(&turn)
            .map_or(0, |t| t.stt_final_us.saturating_sub(t.speech_end_us))
    }

    /// Drops a finished turn.
    pub fn forget(&mut self, turn: u32) {
        self.turns.remove(&turn);
    }
}

/// An error message attributed to a provider, e.g. `stt deepgram: …`; a message that already
/// starts with the provider's name (as [`crate::error::Error::provider`] writes it) is not
/// named twice.
pub fn provider_message(kind: &str, name: &str, message: &str) -> String {
    let message = message
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(message);
    format!("{kind} {name}: {message}")
}

/// How often a session task looks at what nobody rings for (failed writes of the session store):
/// everything else wakes it.
pub const HOUSEKEEPING_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves at `deadline`; pending forever without one.
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Ends the session when its realtime loop panicked (a custom audio processor, or a bug; see
/// `RealtimeLoop::run_once`): reports `VB_EVENT_ERROR` with `VB_ERR_PANIC` and what the panic
/// said, then the state `VB_STATE_STOPPED`. Returns whether it did: the session task then ends
/// (the backend and its other sessions go on).
pub fn end_if_realtime_failed(shared: &RtShared, events: &mut EventSink) -> bool {
    if !shared.failed.load(Ordering::Acquire) {
        return false;
    }
    let detail = shared.failure.get().map_or("unknown panic", String::as_str);
    events.error(
        VbStatus::VB_ERR_PANIC,
        format!(
            "the session's realtime loop panicked (in a custom audio processor, or the engine): \
             {detail}; the session has ended"
        ),
    );
    events.end("the session's realtime loop panicked".to_owned());
    true
}

/// Turns the drop counters of the host calls and the realtime thread into events.
pub fn report_drops(shared: &RtShared, events: &mut EventSink) {
    let input = shared.input_dropped_unreported.swap(0, Ordering::Relaxed);
    if input > 0 {
        events.dropped(
            input,
            "input ring full: process_audio was called faster than the session consumes audio",
        );
    }
    let speech = shared.speech_dropped_unreported.swap(0, Ordering::Relaxed);
    if speech > 0 {
        events.dropped(
            speech,
            "speech ring full: the I/O side fell behind the realtime thread",
        );
    }
    let lost_events = shared.events_dropped_unreported.swap(0, Ordering::Relaxed);
    if lost_events > 0 {
        events.error(
            VbStatus::VB_ERR_BUFFER_FULL,
            format!("{lost_events} realtime events were lost because the I/O side fell behind"),
        );
    }
}
