//! A backend: one configured engine with its I/O runtime, its sessions and their limits.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::admission::{Admission, logged};
use super::auth::{AuthHook, SESSION_CREATE};
use super::health::{VbHealth, VbHealthStatus};
use super::incoming::{BackendArrivals, IncomingHandler};
use super::limits::RateLimiter;
use super::persist::{SessionStore, SharedStore, StoredSession};
use super::privacy::{DataKind, DataOwner, PrivacyPolicy};
use super::recovery::Recovery;
use super::session::{EventCallback, Session, SessionInner, SessionParts};
use crate::agent::{Agent, History, Tool};
use crate::config::{BackendConfig, SessionConfig};
use crate::error::{Error, Result, VbStatus};
use crate::event::VbSessionState;
use crate::logging::LogPolicy;
use crate::pipeline::kinds::{self, BackendKind};
use crate::pipeline::{Engine, Listener, ProcessorFactory, RoomService};
use crate::registry::NameMap;
use crate::telemetry::Telemetry;

/// The process-wide backend registry: backend kinds by name (`local`, `pipecat`, `livekit`, …),
/// built by the pipeline layer ([`crate::pipeline::kinds`]).
pub fn backend_registry() -> &'static NameMap<Arc<dyn BackendKind>> {
    static GLOBAL: std::sync::OnceLock<NameMap<Arc<dyn BackendKind>>> = std::sync::OnceLock::new();
    GLOBAL.get_or_init(|| {
        let map: NameMap<Arc<dyn BackendKind>> = NameMap::new("backend");
        for kind in kinds::builtin() {
            let name = kind.name().to_owned();
            map.register(&name, kind).expect("valid name");
        }
        map
    })
}

/// Worker threads of the I/O runtime (provider I/O and session tasks).
const IO_THREADS: usize = 2;

/// A handle to a backend. Dropping it stops every session and the I/O runtime.
pub struct Backend {
    pub(super) inner: Arc<BackendInner>,
}

enum BackendState {
    Created,
    Running(tokio::runtime::Runtime),
    Draining(tokio::runtime::Handle),
    Stopped,
}

pub(crate) struct BackendInner {
    pub(crate) config: BackendConfig,
    /// Wires the sessions: the backend kind's conversation and transports, processors, counters.
    engine: Arc<Engine>,
    state: Mutex<BackendState>,
    sessions: Mutex<HashMap<u64, Weak<SessionInner>>>,
    /// Auth hook and rate limiter of new sessions.
    pub(crate) admission: Admission,
    telemetry: Telemetry,
    /// The host's hook for sessions that arrive by themselves.
    incoming: Mutex<Option<Arc<dyn IncomingHandler>>>,
    /// The backend's transport taking calls (a LiveKit worker), while running.
    listener: Mutex<Option<Arc<dyn Listener>>>,
    /// Brings back the conversations of dead processes, while the listener runs.
    recovery: Mutex<Option<Recovery>>,
    next_key: AtomicU64,
    /// (frames_dropped, deadline_misses) at the last health check.
    last_check: Mutex<(u64, u64)>,
    /// The session store; `None` when persistence is off.
    pub(super) store: Option<SessionStore>,
    /// The conversations shared with other processes (`persistence.shared_dir`).
    pub(super) shared: Option<Arc<SharedStore>>,
    /// What sessions may persist and log; replaceable until the backend starts.
    privacy: Mutex<Arc<dyn PrivacyPolicy>>,
    /// The backend's `tracing` span: its control calls and its sessions' spans are in it.
    span: tracing::Span,
}

impl Backend {
    /// Creates a backend from validated configuration: resolves the backend provider and every
    /// pipeline provider (unknown names give `VB_ERR_PROVIDER_NOT_FOUND`) and opens the session
    /// store (`VB_ERR_INVALID_CONFIG` naming the path when it cannot).
    pub fn new(config: BackendConfig) -> Result<Backend> {
        config.validate()?;
        let kind = backend_registry().get(&config.provider)?;
        let engine = Arc::new(Engine::new(kind.as_ref(), &config)?);
        let telemetry = Telemetry::new(&config, engine.totals_source())?;
        let store = SessionStore::open(&config.persistence)?;
        let shared = SharedStore::open(&config.persistence)?;
        let privacy: Arc<dyn PrivacyPolicy> = Arc::new(config.privacy);
        let span = tracing::error_span!(parent: None, "backend", provider = %config.provider);
        Ok(Backend {
            inner: Arc::new(BackendInner {
                admission: Admission::new(&config),
                config,
                engine,
                state: Mutex::new(BackendState::Created),
                sessions: Mutex::new(HashMap::new()),
                telemetry,
                incoming: Mutex::new(None),
                listener: Mutex::new(None),
                recovery: Mutex::new(None),
                next_key: AtomicU64::new(1),
                last_check: Mutex::new((0, 0)),
                store,
                shared,
                privacy: Mutex::new(privacy),
                span,
            }),
        })
    }

    /// Parses, validates and creates (see [`Backend::new`]).
    pub fn from_json(json: &str) -> Result<Backend> {
        Backend::new(BackendConfig::from_json(json)?)
    }

    /// The configuration.
    pub fn config(&self) -> &BackendConfig {
        &self.inner.config
    }

    /// Adds a custom audio processor; each session gets its own instance. Only before `start`;
    /// names must be unique.
    pub fn add_processor(&self, factory: ProcessorFactory) -> Result<()> {
        self.inner.before_start("processors can only be added")?;
        self.inner.engine.add_processor(factory)
    }

    /// Offers `tool` to the built-in agent (the `agent` section): the model may call it while it
    /// answers; see [`Tool`]. Only before `start`; names must be unique.
    pub fn add_tool(&self, tool: Tool) -> Result<()> {
        self.inner.before_start("tools can only be added")?;
        self.inner.engine.add_tool(tool)
    }

    /// Installs the hook that authenticates and authorizes new sessions, replacing the built-in
    /// one of `auth.jwt_hs256_secret`. Only before `start`. See [`AuthHook`].
    pub fn set_auth_hook(&self, hook: Arc<dyn AuthHook>) -> Result<()> {
        self.inner.before_start("the auth hook can only be set")?;
        self.inner.admission.set_hook(hook);
        Ok(())
    }

    /// The room service of this backend's LiveKit server (create, list and delete rooms, list
    /// and remove participants, dispatch agents). `VB_ERR_INVALID_CONFIG` on other backends.
    /// Any state; each call blocks its thread (not from async code).
    pub fn room_service(&self) -> Result<RoomService> {
        RoomService::from_backend_config(&self.inner.config)
    }

    /// Installs the host's hook for sessions that arrive by themselves (a LiveKit worker's
    /// dispatched jobs): see [`IncomingHandler`]. Only before `start`.
    pub fn set_incoming(&self, handler: Arc<dyn IncomingHandler>) -> Result<()> {
        self.inner
            .before_start("the incoming-session hook can only be set")?;
        *lock(&self.inner.incoming) = Some(handler);
        Ok(())
    }

    /// Installs the limiter that admits new sessions by rate, replacing the built-in token
    /// buckets of `rate_limit`. Only before `start`. See [`RateLimiter`].
    pub fn set_rate_limiter(&self, limiter: Arc<dyn RateLimiter>) -> Result<()> {
        self.inner
            .before_start("the rate limiter can only be set")?;
        self.inner.admission.set_limiter(limiter);
        Ok(())
    }

    /// Starts the I/O runtime and the telemetry exporters; sessions can be created from now on.
    /// `VB_ERR_INVALID_CONFIG` when `auth.required` has no auth hook to check tokens with, or
    /// when `telemetry.prometheus_addr` cannot be bound.
    pub fn start(&self) -> Result<()> {
        let mut state = self.inner.lock_state();
        match *state {
            BackendState::Created => self.inner.admission.check_ready()?,
            BackendState::Running(_) => {
                return Err(Error::invalid_state("the backend is already running"));
            }
            _ => {
                return Err(Error::invalid_state(
                    "a stopped backend cannot be started again",
                ));
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(IO_THREADS)
            .thread_name("vb-io")
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("could not start the I/O runtime: {e}")))?;
        self.inner.telemetry.start(runtime.handle())?;
        let arrivals = Arc::new(BackendArrivals {
            backend: Arc::downgrade(&self.inner),
        });
        // A worker that cannot register fails the start; telemetry started on the runtime
        // that is dropped here stops with it (a later start begins afresh).
        let listener = match self.inner.engine.listen(arrivals, runtime.handle()) {
            Ok(listener) => listener,
            Err(e) => {
                self.inner.telemetry.stop();
                return Err(e);
            }
        };
        let listener: Option<Arc<dyn Listener>> = listener.map(Arc::from);
        if let (Some(listener), Some(shared)) = (&listener, &self.inner.shared) {
            let recovery =
                Recovery::start(shared.clone(), listener.clone(), self.inner.span.clone());
            *lock(&self.inner.recovery) = Some(recovery);
        }
        *lock(&self.inner.listener) = listener;
        *state = BackendState::Running(runtime);
        self.inner
            .span
            .in_scope(|| tracing::info!("backend started"));
        Ok(())
    }

    /// Graceful stop: refuses new sessions, lets replies in flight finish for up to `drain`, then
    /// stops every session (deleting their records: they completed; a conversation shared with
    /// other processes is handed off to them instead) and the I/O runtime.
    /// `VB_ERR_INTERNAL` when the session store could not be updated (stopped all the same).
    pub fn stop(&self, drain: Duration) -> Result<()> {
        {
            let mut state = self.inner.lock_state();
            match std::mem::replace(&mut *state, BackendState::Stopped) {
                BackendState::Running(runtime) => {
                    *state = BackendState::Draining(runtime.handle().clone());
                    drop(state);
                    let deadline = Instant::now() + drain;
                    self.drain_listener(deadline);
                    self.drain(deadline.saturating_duration_since(Instant::now()));
                    self.inner.stop_all_sessions();
                    self.inner.telemetry.stop();
                    runtime.shutdown_background();
                    *self.inner.lock_state() = BackendState::Stopped;
                    self.inner
                        .span
                        .in_scope(|| tracing::info!("backend stopped"));
                    // The stopped sessions completed: their records are gone once this returns.
                    return self.flush_store();
                }
                BackendState::Created => {}
                BackendState::Draining(handle) => {
                    *state = BackendState::Draining(handle);
                    return Err(Error::invalid_state("the backend is already stopping"));
                }
                BackendState::Stopped => {
                    return Err(Error::invalid_state("the backend is already stopped"));
                }
            }
        }
        self.inner.stop_all_sessions();
        Ok(())
    }

    /// A listening transport takes no new calls; those under way may finish until `deadline`;
    /// then it stops listening.
    fn drain_listener(&self, deadline: Instant) {
        // A process on its way out brings no conversation back.
        drop(lock(&self.inner.recovery).take());
        let Some(listener) = lock(&self.inner.listener).take() else {
            return;
        };
        listener.drain();
        while listener.busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        listener.stop();
    }

    fn drain(&self, drain: Duration) {
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline {
            let busy = self.inner.live_sessions().iter().any(|s| {
                matches!(
                    s.state(),
                    VbSessionState::VB_STATE_PROCESSING | VbSessionState::VB_STATE_SPEAKING
                )
            });
            if !busy {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Creates a session (not started). `agent` is required by `stt_tts` pipelines; `on_event`
    /// switches from polling to push delivery on an event thread. The session is admitted first
    /// (auth hook, rate limiter; see `auth` and `rate_limit` in the configuration): a refusal
    /// (`VB_ERR_UNAUTHORIZED`, `VB_ERR_RATE_LIMITED`) creates nothing. An authenticated
    /// session's `user_id` is the token's user.
    pub fn create_session(
        &self,
        config: SessionConfig,
        agent: Option<Arc<dyn Agent>>,
        on_event: Option<EventCallback>,
    ) -> Result<Session> {
        self.open_session(config, None, agent, on_event)
    }

    /// Replaces the privacy policy (default: the `privacy` configuration section). Only before
    /// `start`.
    pub fn set_privacy_policy(&self, policy: Arc<dyn PrivacyPolicy>) -> Result<()> {
        if !matches!(*self.inner.lock_state(), BackendState::Created) {
            return Err(Error::invalid_state(
                "the privacy policy can only be set before the backend starts",
            ));
        }
        *self.inner.privacy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
        Ok(())
    }

    /// Creates a new session, or reopens `resumed` under its id with its history.
    pub(super) fn open_session(
        &self,
        mut config: SessionConfig,
        resumed: Option<&StoredSession>,
        agent: Option<Arc<dyn Agent>>,
        on_event: Option<EventCallback>,
    ) -> Result<Session> {
        config.validate()?;
        let inner = &self.inner;
        inner.accepts_sessions()?;
        inner.engine.check_transport(&config)?;
        // The host's agent, else the built-in one the configuration describes.
        let agent = match agent {
            Some(agent) => Some(agent),
            None => inner.engine.builtin_agent(&config)?,
        };
        if inner.engine.needs_agent() && agent.is_none() {
            return Err(Error::invalid_argument(
                "this backend runs an stt_tts pipeline: the session needs an agent (on_transcript, or the backend's agent section)",
            ));
        }
        // At the limit, refuse before admission takes a rate-limit token; admission runs host
        // hooks, so it cannot hold the sessions lock.
        inner.check_session_limit(&inner.sessions.lock().unwrap_or_else(|p| p.into_inner()))?;
        let admitted = match resumed {
            None => inner.admission.admit(&config, SESSION_CREATE),
            Some(_) => inner.admission.admit_resumed(&config),
        };
        config.user_id = inner
            .span
            .in_scope(|| logged(admitted, resumed.is_some()))?;
        inner.register(config, resumed, agent, on_event)
    }

    /// Where the backend's transport takes calls while it runs (the phone server's address,
    /// with the port it was given when `provider_config.phone.listen` asked for port 0); `None`
    /// when it takes none.
    pub fn listening_address(&self) -> Option<std::net::SocketAddr> {
        lock(&self.inner.listener)
            .as_ref()
            .and_then(|listener| listener.local_addr())
    }

    /// The backend's telemetry (where its Prometheus endpoint listens, failed OTLP exports).
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// Sessions created and not yet stopped.
    pub fn active_sessions(&self) -> u32 {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len() as u32
    }

    /// Tasks alive on the backend's I/O runtime (each session's task, provider connections and
    /// their helpers, listeners); `None` when it is not running. A diagnostic: with as many
    /// sessions doing as much, the count stays level; one that keeps rising is work that never
    /// ends (a leak).
    pub fn io_tasks(&self) -> Option<usize> {
        match &*self.inner.lock_state() {
            BackendState::Running(runtime) => Some(runtime.metrics().num_alive_tasks()),
            BackendState::Draining(handle) => Some(handle.metrics().num_alive_tasks()),
            _ => None,
        }
    }

    /// A health snapshot. Degraded when sessions are at 90% of the limit or audio was dropped or
    /// late since the previous check; unhealthy when not running.
    pub fn health(&self) -> VbHealth {
        let inner = &self.inner;
        let running = matches!(*inner.lock_state(), BackendState::Running(_));
        let live = inner.live_sessions();
        let active = live.len() as u32;
        let totals = inner.engine.totals();
        let (frames_dropped, deadline_misses) = (totals.frames_dropped, totals.deadline_misses);
        let mut last = inner.last_check.lock().unwrap_or_else(|p| p.into_inner());
        let lost_since_last = frames_dropped > last.0 || deadline_misses > last.1;
        *last = (frames_dropped, deadline_misses);
        let near_limit =
            u64::from(active) * 10 >= u64::from(inner.config.max_concurrent_sessions) * 9;
        let status = if !running {
            VbHealthStatus::VB_HEALTH_UNHEALTHY
        } else if near_limit || lost_since_last {
            VbHealthStatus::VB_HEALTH_DEGRADED
        } else {
            VbHealthStatus::VB_HEALTH_HEALTHY
        };
        VbHealth {
            status,
            active_sessions: active,
            frames_processed: totals.frames_processed,
            frames_dropped,
            deadline_misses,
            realtime_threads_elevated: live.iter().filter(|s| s.is_elevated()).count() as u32,
            media_packets_received: totals.media_packets_received,
            media_packets_lost: totals.media_packets_lost,
            media_frames_concealed: totals.media_frames_concealed,
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("provider", &self.inner.config.provider)
            .field("active_sessions", &self.active_sessions())
            .finish()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.stop(Duration::ZERO);
    }
}

impl BackendInner {
    /// The host's hook for sessions that arrive, if it set one.
    pub(crate) fn incoming_handler(&self) -> Option<Arc<dyn IncomingHandler>> {
        lock(&self.incoming).clone()
    }

    /// Sessions created and not yet stopped.
    pub(crate) fn active_session_count(&self) -> u32 {
        lock(&self.sessions).len() as u32
    }

    /// Opens a session that arrived by itself (not started; no agent yet: the host gives it).
    pub(crate) fn open_arrival(self: &Arc<Self>, mut config: SessionConfig) -> Result<Session> {
        config.validate()?;
        self.accepts_sessions()?;
        self.engine.check_transport(&config)?;
        self.check_session_limit(&lock(&self.sessions))?;
        let admitted = self.admission.admit_arrival(&config);
        config.user_id = self.span.in_scope(|| logged(admitted, false))?;
        self.register(config, None, None, None)
    }

    /// Makes an admitted session and registers it. Again under the sessions lock: a stop that
    /// began during admission has either refused it here or will find it when it stops them all.
    fn register(
        self: &Arc<Self>,
        config: SessionConfig,
        resumed: Option<&StoredSession>,
        agent: Option<Arc<dyn Agent>>,
        on_event: Option<EventCallback>,
    ) -> Result<Session> {
        let agent = match agent {
            Some(agent) => Some(agent),
            None => self.engine.builtin_agent(&config)?,
        };
        let mut sessions = lock(&self.sessions);
        self.accepts_sessions()?;
        self.check_session_limit(&sessions)?;
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let session = self.assemble(key, config, resumed, agent, on_event)?;
        sessions.insert(key, Arc::downgrade(&session.inner));
        Ok(session)
    }

    /// Wires and assembles session `key` (a new one, or `resumed` under its id and with its
    /// history); the caller registers it.
    fn assemble(
        self: &Arc<Self>,
        key: u64,
        config: SessionConfig,
        resumed: Option<&StoredSession>,
        agent: Option<Arc<dyn Agent>>,
        on_event: Option<EventCallback>,
    ) -> Result<Session> {
        let id = resumed.map_or_else(|| new_session_id(key), |r| r.session_id.clone());
        let policy = lock(&self.privacy).clone();
        let owner = DataOwner {
            session_id: &id,
            user_id: &config.user_id,
            metadata: &config.metadata,
        };
        let log_policy = LogPolicy {
            transcripts: policy.may_log(DataKind::Transcript, &owner),
            agent_text: policy.may_log(DataKind::AgentText, &owner),
        };
        let span = tracing::error_span!(parent: &self.span, "session", session.id = %id);
        let wiring = self.engine.wire(
            &config,
            self.telemetry.session(&id),
            span.clone(),
            log_policy,
        )?;
        // A conversation another process began goes on here (unless resumed from this
        // process's own store, which has its history already).
        let conversation = config.conversation_id.as_deref();
        let shared_store = self.shared.as_ref().zip(conversation);
        let adopted = shared_store
            .filter(|_| resumed.is_none())
            .and_then(|(shared, id)| shared.adopt(id));
        let earlier = resumed.map(|r| r.history.clone());
        let history = Arc::new(History::new(
            earlier
                .or_else(|| adopted.as_ref().map(|a| a.history.clone()))
                .unwrap_or_default(),
            self.config.history_max_turns as usize,
        ));
        let persisted = self.store.as_ref().map(|store| {
            let created = resumed.map(|r| r.created_at_ms);
            let internal_rate = wiring.spec().internal_rate;
            store.session(&id, &config, created, internal_rate, policy.clone())
        });
        let shared = shared_store.map(|(shared, conversation)| {
            let began = adopted.as_ref().map(|a| a.created_at_ms);
            shared.conversation(conversation, &id, &config, began, policy)
        });
        span.in_scope(|| {
            tracing::info!(
                resumed = resumed.is_some(),
                turns_before = adopted.as_ref().map_or(0, |a| a.history.len()),
                "session created"
            )
        });
        Ok(Session::assemble(SessionParts {
            key,
            id,
            config,
            history,
            persisted,
            shared,
            wiring,
            needs_agent: self.engine.needs_agent(),
            agent,
            on_event,
            backend: Arc::downgrade(self),
        }))
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, BackendState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `VB_ERR_INVALID_STATE` ("<what> before the backend starts") once it has started.
    fn before_start(&self, what: &str) -> Result<()> {
        match *self.lock_state() {
            BackendState::Created => Ok(()),
            _ => Err(Error::invalid_state(format!(
                "{what} before the backend starts"
            ))),
        }
    }

    fn check_session_limit(&self, sessions: &HashMap<u64, Weak<SessionInner>>) -> Result<()> {
        let limit = self.config.max_concurrent_sessions;
        if sessions.len() >= limit as usize {
            return Err(Error::new(
                VbStatus::VB_ERR_SESSION_LIMIT,
                format!("max_concurrent_sessions ({limit}) reached"),
            ));
        }
        Ok(())
    }

    /// The I/O runtime, while running.
    pub(crate) fn runtime(&self) -> Result<tokio::runtime::Handle> {
        match &*self.lock_state() {
            BackendState::Running(runtime) => Ok(runtime.handle().clone()),
            BackendState::Created => Err(Error::invalid_state("the backend has not been started")),
            _ => Err(Error::invalid_state("the backend is stopping or stopped")),
        }
    }

    /// `Ok` while the backend is running (new sessions are welcome), else `VB_ERR_INVALID_STATE`.
    fn accepts_sessions(&self) -> Result<()> {
        match *self.lock_state() {
            BackendState::Running(_) => Ok(()),
            BackendState::Created => Err(Error::invalid_state(
                "start the backend before creating sessions",
            )),
            _ => Err(Error::invalid_state(
                "the backend is stopping or stopped: no new sessions",
            )),
        }
    }

    fn live_sessions(&self) -> Vec<Arc<SessionInner>> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.values().filter_map(Weak::upgrade).collect()
    }

    /// Stops every session; conversations they share with other processes are handed off.
    fn stop_all_sessions(&self) {
        for session in self.live_sessions() {
            let _ = session.stop_handing_off();
        }
    }

    /// Removes a stopped session from the map (its slot counts against the limit no more).
    pub(crate) fn forget_session(&self, key: u64) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// `sess-<key>-<16 random hex digits>`: unique in the process, unguessable across processes.
fn new_session_id(key: u64) -> String {
    format!("sess-{key}-{:016x}", RandomState::new().hash_one(key))
}
