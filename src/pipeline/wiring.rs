//! One session, wired: the rings and the realtime loop between the transport's edge and the
//! conversation, the event queue, and the threads and tasks that run them. This is the one place
//! where a session is assembled; the backend layer asks for it ([`super::Engine::wire`]) and
//! drives its life (`start`, `stop`).
//!
//! The realtime loop runs on its own thread, or on a thread of the backend's realtime pool
//! (`audio.realtime_threads`).
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
use tracing::Instrument as _;

use super::bell::Bell;
use super::events::{EventSink, StateCell, event_queue};
use super::history::TurnRecorder;
use super::reply_audio::ReplyAudio;
use super::{OpusRefusal, PipelineContext, SessionCommand, SessionPipeline, TransportInbox};
use crate::agent::Agent;
use crate::config::{BackendConfig, SessionConfig};
use crate::error::{Error, Result};
use crate::event::{Event, VbSessionState};
use crate::infer::pool::InferencePool;
use crate::logging::LogPolicy;
use crate::rt::core::{IoEnds, RealtimeLoop, build_session};
use crate::rt::frame::FrameSpec;
use crate::rt::pool::{PoolTicket, RealtimePool};
use crate::rt::processor::ProcessorChain;
use crate::rt::shared::{EngineCounters, RtShared};
use crate::rt::thread::spawn_realtime_thread;
use crate::telemetry::SessionTelemetry;
use crate::transport::edge::{self, PushOutcome};
use crate::transport::host::HostAudio;
use crate::transport::host_opus::host_opus_ends;
use crate::transport::{BoxFuture, MediaEdge, MediaLink, MediaTransport};

/// How long `stop` waits for the session task to end (it ends within one wake-up; a runtime that
/// is shutting down drops it).
const TASK_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits for a network transport to leave (say goodbye to its peer).
const TRANSPORT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The copy of a network session's audio that `read_audio` returns holds this much.
const MONITOR_MS: u32 = 2000;
/// Why `process_audio` fails on a session that a network transport feeds.
const NO_HOST_INPUT: &str = "process_audio: this session's audio comes from its network transport (read_audio gives a copy of what the agent says)";

/// What [`SessionWiring::build`] takes.
pub(crate) struct Parts<'a> {
    pub backend: &'a BackendConfig,
    pub session: &'a SessionConfig,
    /// The network transport that carries the session, if it is not the host.
    pub media: Option<Arc<dyn MediaTransport>>,
    pub processors: ProcessorChain,
    pub counters: Arc<EngineCounters>,
    pub bell: Bell,
    /// The backend's realtime pool, when loops run there instead of on a thread each.
    pub pool: Option<Arc<RealtimePool>>,
    /// The backend's inference pool, when sessions use a neural VAD or end-of-turn model.
    pub inference: Option<Arc<InferencePool>>,
    pub conversation: Arc<dyn SessionPipeline>,
    pub telemetry: SessionTelemetry,
    /// The session's `tracing` span: its task and transport run in it.
    pub span: tracing::Span,
    /// What of the conversation its log records may show.
    pub log_policy: LogPolicy,
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
    /// Ask for elevated scheduling for the realtime thread (a pool's threads ask for it by the
    /// backend's configuration instead).
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
    /// The session's settings (a network transport reads its room, user, URL).
    session: SessionConfig,
    span: tracing::Span,
    lifecycle: Mutex<Lifecycle>,
}

enum Lifecycle {
    Created(Box<Pending>),
    Running {
        rt_runner: RtRunner,
        task_done: crossbeam_channel::Receiver<()>,
        link: Option<MediaLink>,
    },
    Stopped,
}

/// Where a running session's realtime loop runs.
enum RtRunner {
    /// Its own thread.
    Thread(JoinHandle<()>),
    /// A thread of the backend's pool.
    Pool(PoolTicket),
}

/// What exists between `build` and `start`.
struct Pending {
    rt: RealtimeLoop,
    io: IoEnds,
    events: EventSink,
    commands: mpsc::UnboundedReceiver<SessionCommand>,
    bell: Bell,
    pool: Option<Arc<RealtimePool>>,
    /// The network transport and its end of the session, until it connects.
    media: Option<(Arc<dyn MediaTransport>, MediaEdge)>,
    transport: Option<TransportInbox>,
}

impl SessionWiring {
    /// Builds every ring, buffer and stage of the session (all allocation happens here, once).
    pub(crate) fn build(parts: Parts) -> Result<SessionWiring> {
        let mut spec = FrameSpec::new(&parts.backend.audio, parts.session);
        if let Some(media) = &parts.media {
            // The transport's audio is the session's, both ways.
            spec.input_rate = media.sample_rate();
            spec.output_rate = media.sample_rate();
        }
        let shared = Arc::new(RtShared::default());
        let (edge_ends, io, mut rt) = build_session(
            parts.backend,
            spec,
            parts.processors,
            shared.clone(),
            parts.counters.clone(),
            Arc::new(parts.bell.clone()),
        );
        if let Some(inference) = &parts.inference {
            rt.attach_neural(inference.link(shared.clone()));
        }
        let (writer, reader) = edge::split(
            edge_ends,
            spec.input_frame(),
            shared.clone(),
            parts.counters.clone(),
        );
        let state = Arc::new(StateCell::new(VbSessionState::VB_STATE_IDLE));
        let (events_tx, events_rx) = event_queue();
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let mut events = EventSink::new(
            events_tx,
            shared.clone(),
            state.clone(),
            parts.telemetry,
            parts.log_policy,
        );
        let (host, media, transport) = match parts.media {
            None => {
                let (opus_in, opus_out) = host_opus_ends(parts.session, parts.counters.clone())?;
                let host = HostAudio::with_codecs(writer, reader, opus_in, opus_out);
                (host, None, None)
            }
            Some(media) => {
                let (monitor, monitor_rx) =
                    rtrb::RingBuffer::new(FrameSpec::samples_in(spec.output_rate, MONITOR_MS));
                let (tap, tapped) = mpsc::unbounded_channel();
                let (news, news_rx) = mpsc::unbounded_channel();
                events = events.with_tap(tap);
                let edge = MediaEdge {
                    writer,
                    reader,
                    monitor,
                    events: tapped,
                    news,
                    counters: parts.counters,
                };
                let inbox = TransportInbox {
                    name: media.provider_name().to_owned(),
                    news: news_rx,
                };
                let host = HostAudio::monitor_only(monitor_rx, NO_HOST_INPUT);
                (host, Some((media, edge)), Some(inbox))
            }
        };
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
            session: parts.session.clone(),
            span: parts.span,
            lifecycle: Mutex::new(Lifecycle::Created(Box::new(Pending {
                rt,
                io,
                events,
                commands: commands_rx,
                bell: parts.bell,
                pool: parts.pool,
                media,
                transport,
            }))),
        })
    }

    /// The session's `tracing` span.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The frame geometry.
    pub fn spec(&self) -> FrameSpec {
        self.spec
    }

    /// Connects the session's network transport, if it has one (its failure is this call's
    /// error, and the session is then stopped), then starts the realtime thread and the session
    /// task. `VB_ERR_INVALID_STATE` when already started or stopped.
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
            pool,
            media,
            transport,
        } = *pending;
        let link = match media {
            Some((media, edge)) => Some(connect_blocking(
                &start.runtime,
                Box::pin(
                    media
                        .connect(&self.session, edge)
                        .instrument(self.span.clone()),
                ),
            )?),
            None => None,
        };
        let rt_runner = match pool {
            Some(pool) => RtRunner::Pool(pool.attach(rt, self.shared.clone()).map_err(|e| {
                Error::internal(format!(
                    "could not add the session to the realtime pool: {e}"
                ))
            })?),
            None => {
                let name = format!("vb-rt-{}", start.tag);
                let thread = spawn_realtime_thread(name, rt, self.shared.clone(), start.elevate)
                    .map_err(|e| {
                        Error::internal(format!("could not start the realtime thread: {e}"))
                    })?;
                RtRunner::Thread(thread)
            }
        };
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
            transport,
        };
        let (done_tx, task_done) = crossbeam_channel::bounded(1);
        let session_task = self.conversation.run(ctx);
        start.runtime.spawn(
            async move {
                session_task.await;
                let _ = done_tx.send(());
            }
            .instrument(self.span.clone()),
        );
        *lifecycle = Lifecycle::Running {
            rt_runner,
            task_done,
            link,
        };
        Ok(())
    }

    /// Closes the network transport (leaving the room), ends the session task and the
    /// realtime loop (its thread, or its place in the pool, which hands the loop back to be
    /// dropped here), and waits for all three. Idempotent; the state becomes
    /// `VB_STATE_STOPPED`.
    pub fn stop(&self) {
        let previous = std::mem::replace(&mut *self.lock(), Lifecycle::Stopped);
        if let Lifecycle::Running {
            rt_runner,
            task_done,
            link,
        } = previous
        {
            if let Some(link) = link {
                link.close(TRANSPORT_CLOSE_TIMEOUT);
            }
            let _ = self.commands.send(SessionCommand::Stop);
            let _ = task_done.recv_timeout(TASK_STOP_TIMEOUT);
            self.shared.shutdown.store(true, Ordering::Release);
            match rt_runner {
                RtRunner::Thread(rt_thread) => {
                    if let Some(thread) = self.shared.thread.get() {
                        thread.unpark();
                    }
                    let _ = rt_thread.join();
                }
                RtRunner::Pool(ticket) => ticket.leave(),
            }
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
        self.check_alive("process_audio")?;
        self.host.push(pcm)
    }

    /// Copies the agent's audio out of the session (realtime-safe; see [`HostAudio::read`]).
    pub fn read(&self, out: &mut [i16]) -> Result<usize> {
        self.host.read(out)
    }

    /// Decodes one Opus packet into the session (realtime-safe; see [`HostAudio::push_opus`]).
    pub fn push_opus(&self, packet: Option<&[u8]>) -> Result<Result<PushOutcome, OpusRefusal>> {
        self.check_alive("process_opus")?;
        self.host.push_opus(packet)
    }

    /// The next Opus packet of the agent's audio (realtime-safe; see [`HostAudio::read_opus`]).
    pub fn read_opus(&self, buf: &mut [u8]) -> Result<Result<usize, OpusRefusal>> {
        self.host.read_opus(buf)
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

    /// `VB_ERR_INVALID_STATE` once the realtime loop has failed: nothing would hear the audio.
    fn check_alive(&self, call: &str) -> Result<()> {
        if self.shared.failed.load(Ordering::Relaxed) {
            return Err(Error::invalid_state(format!(
                "{call}: the session has ended: its realtime loop panicked"
            )));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs a transport's connection on the I/O runtime and waits for it on this thread (a host's
/// `vb_session_start`).
fn connect_blocking(
    runtime: &tokio::runtime::Handle,
    connecting: BoxFuture<'static, Result<MediaLink>>,
) -> Result<MediaLink> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    runtime.spawn(async move {
        let _ = tx.send(connecting.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(Error::internal(
            "the transport's connection task was dropped",
        ))
    })
}
