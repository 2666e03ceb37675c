//! A session: one conversation, as the host sees it. Its wiring (rings, realtime thread, session
//! task: [`SessionWiring`]) comes from the pipeline layer; this handle adds what the backend owns:
//! the id, the host's agent and the bookkeeping that lets `stop` wait for it, push delivery of
//! events on an event thread, the session's record in the store, and its slot in the backend.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use super::backend::BackendInner;
use super::persist::{PersistedSession, SharedConversation};
use crate::agent::{Agent, History, Turn};
use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::event::{Event, VbSessionState};
use crate::pipeline::history::{Logs, TurnLog, TurnRecorder};
use crate::pipeline::{OpusRefusal, PushOutcome, SessionCommand, SessionWiring, Start};

/// Push delivery of events: called on the session's event thread, in order.
pub type EventCallback = Arc<dyn Fn(&Event) + Send + Sync>;

const CREATED: u8 = 0;
const RUNNING: u8 = 1;
const STOPPED: u8 = 2;

thread_local! {
    /// The session whose event callback or agent runs on this thread, if any (0: none).
    static CALLBACK_OF_SESSION: Cell<u64> = const { Cell::new(0) };
}

/// Marks the current thread as running a callback of session `key` while `f` runs.
pub(crate) fn in_callback_of<R>(key: u64, f: impl FnOnce() -> R) -> R {
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            CALLBACK_OF_SESSION.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CALLBACK_OF_SESSION.with(|c| c.replace(key)));
    f()
}

fn current_thread_is_callback_of(key: u64) -> bool {
    CALLBACK_OF_SESSION.with(|c| c.get() == key)
}

/// A handle to one session. Dropping it stops the session.
pub struct Session {
    pub(crate) inner: Arc<SessionInner>,
}

pub(crate) struct SessionInner {
    pub(crate) key: u64,
    pub(crate) id: String,
    config: SessionConfig,
    wiring: SessionWiring,
    needs_agent: bool,
    run_state: AtomicU8,
    /// Push delivery of events, when the host asked for it (at creation, or when it took a
    /// session that arrived by itself).
    on_event: OnceLock<EventCallback>,
    /// The host's agent, set the same way.
    agent: OnceLock<Arc<dyn Agent>>,
    /// Counts agent calls in flight; `stop` closes it and waits for them.
    agent_gate: Arc<AgentGate>,
    /// The thread delivering events to `on_event`, while the session runs.
    event_thread: Mutex<Option<JoinHandle<()>>>,
    /// Serializes `stop` calls for their whole duration.
    stopping: Mutex<()>,
    backend: Weak<BackendInner>,
    history: Arc<History>,
    /// Its record in the session store, when persistence is on.
    persisted: Option<Arc<PersistedSession>>,
    /// Its conversation in the shared store, when it has a `conversation_id` and the backend a
    /// `persistence.shared_dir`.
    shared: Option<Arc<SharedConversation>>,
    /// Set when the backend stops it: the conversation is handed to another process, not over.
    handing_off: AtomicBool,
}

/// The parts `Backend::create_session` assembles.
pub(crate) struct SessionParts {
    pub key: u64,
    pub id: String,
    pub config: SessionConfig,
    pub wiring: SessionWiring,
    /// The conversation runs the host's agent (`stt_tts`).
    pub needs_agent: bool,
    pub agent: Option<Arc<dyn Agent>>,
    pub on_event: Option<EventCallback>,
    pub backend: Weak<BackendInner>,
    pub history: Arc<History>,
    pub persisted: Option<Arc<PersistedSession>>,
    pub shared: Option<Arc<SharedConversation>>,
}

impl Session {
    pub(crate) fn assemble(parts: SessionParts) -> Session {
        Session {
            inner: Arc::new(SessionInner {
                key: parts.key,
                id: parts.id,
                config: parts.config,
                wiring: parts.wiring,
                needs_agent: parts.needs_agent,
                run_state: AtomicU8::new(CREATED),
                on_event: parts.on_event.map(OnceLock::from).unwrap_or_default(),
                agent: parts.agent.map(OnceLock::from).unwrap_or_default(),
                agent_gate: Arc::new(AgentGate::default()),
                event_thread: Mutex::new(None),
                stopping: Mutex::new(()),
                backend: parts.backend,
                history: parts.history,
                persisted: parts.persisted,
                shared: parts.shared,
                handing_off: AtomicBool::new(false),
            }),
        }
    }

    /// The session id (unique within the process).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The configuration the session was created with.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The current state.
    pub fn state(&self) -> VbSessionState {
        self.inner.wiring.state()
    }

    /// The finished turns so far, oldest first (a resumed session's earlier turns included).
    /// Any thread.
    pub fn history(&self) -> Vec<Turn> {
        self.inner.history.turns()
    }

    /// Starts the realtime thread and the session task. `VB_ERR_INVALID_STATE` when already
    /// started or stopped.
    pub fn start(&self) -> Result<()> {
        self.inner.start()
    }

    /// Stops the session: ends the session task, joins the realtime thread, waits for an agent
    /// call in flight, delivers the last events and deletes its record in the session store (it
    /// has completed). Idempotent.
    pub fn stop(&self) -> Result<()> {
        self.inner.stop()
    }

    /// Copies mono PCM at the input rate into the session (realtime-safe). Samples that do not fit
    /// are dropped and reported; see [`PushOutcome`].
    pub fn process_audio(&self, pcm: &[i16]) -> Result<PushOutcome> {
        self.inner.check_running("process_audio")?;
        self.inner.wiring.push(pcm)
    }

    /// Samples `process_audio` would take right now. A host that pushes a file faster than real
    /// time waits while this is smaller than its next piece, instead of losing audio.
    pub fn writable_samples(&self) -> usize {
        self.inner.wiring.writable()
    }

    /// Whether the realtime thread has processed everything pushed so far.
    pub fn all_audio_heard(&self) -> bool {
        self.inner.wiring.all_heard()
    }

    /// User turns the realtime thread has ended so far, counted on the audio clock. With
    /// [`Session::all_audio_heard`] it lets a host that pushes a file faster than real time stop
    /// at each turn end and wait for the reply, as a live user would.
    pub fn turns_ended(&self) -> u64 {
        self.inner.wiring.turns_ended()
    }

    /// Copies reply audio at the output rate into `out` (realtime-safe); returns the count.
    pub fn read_audio(&self, out: &mut [i16]) -> Result<usize> {
        self.inner.check_running("read_audio")?;
        self.inner.wiring.read(out)
    }

    /// Decodes one Opus packet of user audio (a session with `input_codec` `"opus"`) and queues
    /// it like [`Session::process_audio`]; `None` (or an empty packet) conceals a lost packet.
    /// Realtime-safe. The inner error is a refusal the host has to expect (a packet that does
    /// not decode: nothing was queued); the outer one a call that does not fit the session.
    pub fn process_opus(&self, packet: Option<&[u8]>) -> Result<Result<PushOutcome, OpusRefusal>> {
        self.inner.check_running("process_opus")?;
        self.inner.wiring.push_opus(packet)
    }

    /// Writes the next 20 ms Opus packet of reply audio (a session with `output_codec`
    /// `"opus"`) into `buf`; returns its length, 0 when no whole frame is ready. Realtime-safe.
    /// The inner error is a packet that does not fit in `buf` (kept for the next call).
    pub fn read_opus(&self, buf: &mut [u8]) -> Result<Result<usize, OpusRefusal>> {
        self.inner.check_running("read_opus")?;
        self.inner.wiring.read_opus(buf)
    }

    /// The next event, if any (non-blocking). `VB_ERR_INVALID_STATE` when events are pushed to an
    /// event callback instead.
    pub fn poll_event(&self) -> Result<Option<Event>> {
        if self.inner.on_event.get().is_some() {
            return Err(Error::invalid_state(
                "events go to the session's event callback; there is nothing to poll",
            ));
        }
        Ok(self.inner.wiring.events().try_recv().ok())
    }

    /// Speaks `text` without a user turn (a greeting), after any reply in progress.
    pub fn say(&self, text: &str) -> Result<()> {
        if text.trim().is_empty() {
            return Err(Error::invalid_argument("say: text is empty"));
        }
        if !self.inner.needs_agent {
            return Err(Error::invalid_state(
                "say needs a TTS provider; this session runs a speech-to-speech model",
            ));
        }
        self.inner
            .command("say", SessionCommand::Say(text.to_owned()))
    }

    /// Host-side barge-in: stops playback now and cancels the reply in progress.
    pub fn interrupt(&self) -> Result<()> {
        self.inner.command("interrupt", SessionCommand::Interrupt)
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .field("state", &self.state())
            .finish()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.inner.stop();
    }
}

impl SessionInner {
    fn check_running(&self, call: &str) -> Result<()> {
        match self.run_state.load(Ordering::Acquire) {
            RUNNING => Ok(()),
            CREATED => Err(Error::invalid_state(format!(
                "{call}: the session has not been started"
            ))),
            _ => Err(Error::invalid_state(format!(
                "{call}: the session has been stopped"
            ))),
        }
    }

    fn command(&self, call: &str, command: SessionCommand) -> Result<()> {
        self.check_running(call)?;
        self.wiring.command(call, command)
    }

    /// The host took a session that arrived by itself: its agent and event callback, before it
    /// starts. `VB_ERR_INVALID_ARGUMENT` when the conversation needs an agent and none came.
    pub(crate) fn accept(
        &self,
        agent: Option<Arc<dyn Agent>>,
        on_event: Option<EventCallback>,
    ) -> Result<()> {
        if self.needs_agent && agent.is_none() && self.agent.get().is_none() {
            return Err(Error::invalid_argument(
                "this backend runs an stt_tts pipeline: the session needs an agent (on_transcript)",
            ));
        }
        if let Some(agent) = agent {
            let _ = self.agent.set(agent);
        }
        if let Some(on_event) = on_event {
            let _ = self.on_event.set(on_event);
        }
        Ok(())
    }

    pub(crate) fn start(&self) -> Result<()> {
        let backend = self
            .backend
            .upgrade()
            .ok_or_else(|| Error::invalid_state("the backend has been freed"))?;
        let runtime = backend.runtime()?;
        let mut logs: Vec<Arc<dyn TurnLog>> = Vec::new();
        if let Some(persisted) = &self.persisted {
            logs.push(persisted.clone());
        }
        if let Some(shared) = &self.shared {
            logs.push(shared.clone());
        }
        let log = Logs::of(logs);
        if let Some(log) = &log {
            log.record(&self.history.turns(), None);
        }
        let started = self.wiring.start(Start {
            tag: self.key,
            runtime,
            agent: self.agent.get().cloned().map(|agent| self.gated(agent)),
            recorder: TurnRecorder::new(self.history.clone(), log),
            elevate: backend.config.audio.realtime_priority,
        });
        if let Err(e) = started {
            // Not taken after all (the room could not be joined, say): another process may.
            if let Some(shared) = &self.shared {
                shared.release();
            }
            return Err(e);
        }
        if let Some(callback) = self.on_event.get().cloned() {
            let events = self.wiring.events().clone();
            let key = self.key;
            let thread = std::thread::Builder::new()
                .name(format!("vb-events-{key}"))
                .spawn(move || {
                    in_callback_of(key, || {
                        for event in events.iter() {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                callback(&event)
                            }));
                        }
                    })
                })
                .expect("spawning the event thread");
            *self.event_thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        }
        self.run_state.store(RUNNING, Ordering::Release);
        self.wiring
            .span()
            .in_scope(|| tracing::info!("session started"));
        Ok(())
    }

    /// Wraps the agent so that each call is counted (stop waits for calls in flight) and marks its
    /// thread (a stop from inside the callback must not wait for itself).
    fn gated(&self, agent: Arc<dyn Agent>) -> Arc<dyn Agent> {
        Arc::new(GatedAgent {
            agent,
            gate: self.agent_gate.clone(),
            key: self.key,
        })
    }

    pub(crate) fn stop(&self) -> Result<()> {
        // One stop at a time, held until everything has ended, so that every caller may rely on
        // "no callback runs after stop returns". A stop from inside this session's own callback
        // cannot wait for itself: it does not wait for its own agent call or event thread.
        let own_callback = current_thread_is_callback_of(self.key);
        let _stopping =
            (!own_callback).then(|| self.stopping.lock().unwrap_or_else(|p| p.into_inner()));
        let was_running = self.run_state.swap(STOPPED, Ordering::AcqRel) == RUNNING;
        self.wiring.stop();
        if was_running {
            self.wiring
                .span()
                .in_scope(|| tracing::info!("session stopped"));
        }
        // Also when an earlier stop ended the session: a stop from inside a callback did not wait
        // for that callback, which may still run; the stop after it (vb_session_free's) must.
        self.agent_gate.close_and_wait(own_callback);
        if !own_callback {
            // Taken only by a stop that joins it: one from inside a callback leaves it here.
            let event_thread = self
                .event_thread
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(thread) = event_thread {
                let _ = thread.join();
            }
        }
        if let Some(persisted) = &self.persisted {
            persisted.delete();
        }
        // Only the stop that ends a running session ends or releases its shared conversation: one
        // that never started (a host that refused a dispatched room, say) leaves the record it
        // would have gone on with to the next session.
        if let Some(shared) = self.shared.as_ref().filter(|_| was_running) {
            if self.handing_off.load(Ordering::Acquire) {
                shared.release();
            } else {
                shared.delete();
            }
        }
        if let Some(backend) = self.backend.upgrade() {
            backend.forget_session(self.key);
        }
        Ok(())
    }

    pub(crate) fn state(&self) -> VbSessionState {
        self.wiring.state()
    }

    /// Stops the session because its backend stops: a conversation it shares with other
    /// processes goes on there (released, not ended).
    pub(crate) fn stop_handing_off(&self) -> Result<()> {
        self.handing_off.store(true, Ordering::Release);
        self.stop()
    }

    pub(crate) fn is_elevated(&self) -> bool {
        self.run_state.load(Ordering::Acquire) == RUNNING && self.wiring.is_elevated()
    }
}

/// Agent calls in flight, and whether new ones may start. After `close_and_wait` returns no agent
/// call of the session runs (except the caller's own, and others that stop the session from
/// inside at the same time).
#[derive(Default)]
struct AgentGate {
    calls: AtomicUsize,
    /// Callers of `close_and_wait` from inside a callback of the session, waiting now.
    stopping_inside: AtomicUsize,
    closed: AtomicBool,
}

impl AgentGate {
    /// Counts a call in; `false` when the gate is closed (the call must not run).
    fn enter(&self) -> bool {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.leave();
            return false;
        }
        true
    }

    fn leave(&self) {
        self.calls.fetch_sub(1, Ordering::SeqCst);
    }

    /// Refuses new calls and waits until none is in flight; from inside a callback of the session
    /// (`own`), until every call is one that stops the session from inside too: the caller's own,
    /// and calls that would otherwise wait for each other forever (an agent call that outlived its
    /// turn's `agent_timeout_ms` runs beside the next turn's).
    fn close_and_wait(&self, own: bool) {
        self.closed.store(true, Ordering::SeqCst);
        if own {
            self.stopping_inside.fetch_add(1, Ordering::SeqCst);
        }
        while self.calls.load(Ordering::SeqCst) > self.stopping_inside_now(own) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if own {
            self.stopping_inside.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The calls `close_and_wait` does not wait for.
    fn stopping_inside_now(&self, own: bool) -> usize {
        if own {
            self.stopping_inside.load(Ordering::SeqCst)
        } else {
            0
        }
    }
}

/// The host's agent plus the bookkeeping `stop` relies on.
struct GatedAgent {
    agent: Arc<dyn Agent>,
    gate: Arc<AgentGate>,
    key: u64,
}

impl GatedAgent {
    /// Runs `call` as a counted call of the agent; `None` once the session has stopped.
    fn call<T>(&self, call: impl FnOnce() -> T) -> Option<T> {
        if !self.gate.enter() {
            return None;
        }
        struct Leave<'a>(&'a AgentGate);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.leave();
            }
        }
        let _leave = Leave(&self.gate);
        Some(in_callback_of(self.key, call))
    }
}

impl Agent for GatedAgent {
    fn on_transcript(&self, transcript: &str, reply: &mut crate::agent::Reply) -> Result<()> {
        self.call(|| self.agent.on_transcript(transcript, reply))
            .unwrap_or_else(|| Err(Error::invalid_state("the session has stopped")))
    }

    fn prepare(&self, history: &[crate::agent::Turn]) {
        self.call(|| self.agent.prepare(history));
    }

    fn prepares(&self) -> bool {
        self.agent.prepares()
    }
}
