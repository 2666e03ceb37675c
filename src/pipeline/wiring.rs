//! One session, wired: the rings and the realtime loop between the transport's edge and the
//! conversation, the event queue, and the threads and tasks that run them. This is the one place
//! where a session is assembled; the backend layer asks for it ([`super::Engine::wire`]) and
//! drives its life (`start`, `stop`).
//!
//! ```text
//!  transport edge ─► [in ring] ─► realtime thread ─► [I/O ring] ─► session task (conversation)
//!  transport edge ◄─ [out ring] ◄─ playout ◄────────── [reply ring] ◄─┘     │ events
//!                                        └── bell (news) ──► doorbell ──► wakes the task
//! ```

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;
use tokio::sync::mpsc;

use super::bell::Bell;
use super::events::{EventSink, StateCell, event_queue};
use super::history::TurnRecorder;
use super::reply_audio::ReplyAudio;
use super::{PipelineContext, SessionCommand, SessionPipeline};
use crate::agent::Agent;
use crate::config::{BackendConfig, SessionConfig};
use crate::error::{Error, Result};
use crate::event::{Event, VbSessionState};
use crate::rt::core::{IoEnds, RealtimeLoop, build_session};
use crate::rt::frame::FrameSpec;
use crate::rt::processor::ProcessorChain;
use crate::rt::shared::{EngineCounters, RtShared};
use crate::rt::thread::spawn_realtime_thread;
use crate::telemetry::SessionTelemetry;
use crate::transport::edge::{self, PushOutcome};
use crate::transport::host::HostAudio;

/// How long `stop` waits for the session task to end (it ends within one wake-up; a runtime that
/// is shutting down drops it).
const TASK_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`SessionWiring::build`] takes.
pub(crate) struct Parts<'a> {
    pub backend: &'a BackendConfig,
    pub session: &'a SessionConfig,
    pub processors: ProcessorChain,
    pub counters: Arc<EngineCounters>,
    pub bell: Bell,
    pub conversation: Arc<dyn SessionPipeline>,
    pub telemetry: SessionTelemetry,
}

/// What [`SessionWiring::start`] takes: what only exists once the backend runs.
pub struct Start {
    /// Names the realtime thread (`vb-rt-<tag>`).
    pub tag: u64,
    /// The backend's I/O runtime: the session task and provider tasks run there.
    pub runtime: tokio::runtime::Handle,
    /// The host's agent, when the conversation needs one.
    pub agent: Option<Arc<dyn Agent>>,
    /// Records finished turns (history, session store).
    pub recorder: TurnRecorder,
    /// Ask for elevated scheduling for the realtime thread.
    pub elevate: bool,
}

/// One session's wiring. Any thread; the audio calls follow the single-producer /
/// single-consumer rule of the C API.
pub struct SessionWiring {
    spec: FrameSpec,
    turn_samples: usize,
    shared: Arc<RtShared>,
    host: HostAudio,
    state: Arc<StateCell>,
    events: Receiver<Event>,
    commands: mpsc::UnboundedSender<SessionCommand>,
    conversation: Arc<dyn SessionPipeline>,
    lifecycle: Mutex<Lifecycle>,
}

enum Lifecycle {
    Created(Box<Pending>),
    Running {
        rt_thread: JoinHandle<()>,
        task_done: crossbeam_channel::Receiver<()>,
    },
    Stopped,
}

/// What exists between `build` and `start`.
struct Pending {
    rt: RealtimeLoop,
    io: IoEnds,
    events: EventSink,
    commands: mpsc::UnboundedReceiver<SessionCommand>,
    bell: Bell,
}

impl SessionWiring {
    /// Builds every ring, buffer and stage of the session (all allocation happens here, once).
    pub(crate) fn build(parts: Parts) -> Result<SessionWiring> {
        let spec = FrameSpec::new(&parts.backend.audio, parts.session);
        let shared = Arc::new(RtShared::default());
        let (edge_ends, io, rt) = build_session(
            parts.backend,
            spec,
            parts.processors,
            shared.clone(),
            parts.counters.clone(),
            Arc::new(parts.bell.clone()),
        );
        let (writer, reader) = edge::split(
            edge_ends,
            spec.input_frame(),
            shared.clone(),
            parts.counters,
        );
        let host = HostAudio::new(writer, reader);
        let state = Arc::new(StateCell::new(VbSessionState::VB_STATE_IDLE));
        let (events_tx, events_rx) = event_queue();
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let events = EventSink::new(events_tx, shared.clone(), state.clone(), parts.telemetry);
        // The longest turn, plus a second for the pre-roll and the closing silence.
        let turn_ms = parts.backend.turn.max_turn_ms.saturating_add(1000);
        Ok(SessionWiring {
            spec,
            turn_samples: FrameSpec::samples_in(spec.internal_rate, turn_ms),
            shared,
            host,
            state,
            events: events_rx,
            commands: commands_tx,
            conversation: parts.conversation,
            lifecycle: Mutex::new(Lifecycle::Created(Box::new(Pending {
                rt,
                io,
                events,
                commands: commands_rx,
                bell: parts.bell,
            }))),
        })
    }

    /// The frame geometry.
    pub fn spec(&self) -> FrameSpec {
        self.spec
    }

    /// Starts the realtime thread and the session task. `VB_ERR_INVALID_STATE` when already
    /// started or stopped.
    pub fn start(&self, start: Start) -> Result<()> {
        let mut lifecycle = self.lock();
        let pending = match std::mem::replace(&mut *lifecycle, Lifecycle::Stopped) {
            Lifecycle::Created(pending) => pending,
            other => {
                let running = matches!(other, Lifecycle::Running { .. });
                *lifecycle = other;
                return Err(Error::invalid_state(if running {
                    "the session is already started"
                } else {
                    "a stopped session cannot be started again"
                }));
            }
        };
        let Pending {
            rt,
            io,
            events,
            commands,
            bell,
        } = *pending;
        let name = format!("vb-rt-{}", start.tag);
        let rt_thread = spawn_realtime_thread(name, rt, self.shared.clone(), start.elevate)
            .map_err(|e| Error::internal(format!("could not start the realtime thread: {e}")))?;
        let ctx = PipelineContext {
            spec: self.spec,
            turn_samples: self.turn_samples,
            from_rt: io.from_rt,
            control: io.control,
            reply: ReplyAudio::new(io.reply, self.spec.output_rate),
            shared: self.shared.clone(),
            bell,
            events,
            agent: start.agent,
            commands,
            runtime: start.runtime.clone(),
            recorder: start.recorder,
        };
        let (done_tx, task_done) = crossbeam_channel::bounded(1);
        let session_task = self.conversation.run(ctx);
        start.runtime.spawn(async move {
            session_task.await;
            let _ = done_tx.send(());
        });
        *lifecycle = Lifecycle::Running {
            rt_thread,
            task_done,
        };
        Ok(())
    }

    /// Ends the session task and the realtime thread and waits for both. Idempotent; the state
    /// becomes `VB_STATE_STOPPED`.
    pub fn stop(&self) {
        let previous = std::mem::replace(&mut *self.lock(), Lifecycle::Stopped);
        if let Lifecycle::Running {
            rt_thread,
            task_done,
        } = previous
        {
            let _ = self.commands.send(SessionCommand::Stop);
            let _ = task_done.recv_timeout(TASK_STOP_TIMEOUT);
            self.shared.shutdown.store(true, Ordering::Release);
            if let Some(thread) = self.shared.thread.get() {
                thread.unpark();
            }
            let _ = rt_thread.join();
        }
        self.state.swap(VbSessionState::VB_STATE_STOPPED);
    }

    /// Sends a control call to the session task. `VB_ERR_INVALID_STATE` once it has ended.
    pub fn command(&self, call: &str, command: SessionCommand) -> Result<()> {
        self.commands
            .send(command)
            .map_err(|_| Error::invalid_state(format!("{call}: the session has stopped")))
    }

    /// The current state.
    pub fn state(&self) -> VbSessionState {
        self.state.get()
    }

    /// The event queue (the host polls it, or an event thread drains it).
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// Copies user audio into the session (realtime-safe; see [`HostAudio::push`]).
    pub fn push(&self, pcm: &[i16]) -> Result<PushOutcome> {
        self.host.push(pcm)
    }

    /// Copies the agent's audio out of the session (realtime-safe; see [`HostAudio::read`]).
    pub fn read(&self, out: &mut [i16]) -> Result<usize> {
        self.host.read(out)
    }

    /// Samples `push` would take right now.
    pub fn writable(&self) -> usize {
        self.host.writable()
    }

    /// Whether the realtime thread has processed everything pushed so far.
    pub fn all_heard(&self) -> bool {
        self.host.all_heard()
    }

    /// User turns the realtime thread has ended so far, on the audio clock.
    pub fn turns_ended(&self) -> u64 {
        self.shared.turns_ended.load(Ordering::Acquire)
    }

    /// Whether the realtime thread got elevated scheduling.
    pub fn is_elevated(&self) -> bool {
        self.shared.elevated.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner())
    }
}
