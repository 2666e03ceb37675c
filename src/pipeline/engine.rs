//! What every session of one backend is wired from: the backend kind's recipe (conversation and
//! transports), the audio processors the host added, the engine counters all realtime threads
//! bump, the doorbell that wakes session tasks and, in the pooled realtime mode
//! (`audio.realtime_threads` > 0), the pool of realtime threads that runs every session's loop.
//! The backend layer owns one [`Engine`] and asks it for each session's [`SessionWiring`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use super::bell::Doorbell;
use super::kinds::{BackendKind, Recipe};
use super::wiring::SessionWiring;
use crate::agent::{Agent, Tool};
use crate::config::{BackendConfig, SessionConfig};
use crate::error::{Error, Result, VbStatus};
use crate::infer::pool::InferencePool;
use crate::logging::LogPolicy;
use crate::provider::llm;
use crate::rt::pool::RealtimePool;
use crate::rt::processor::{ProcessorChain, ProcessorFactory};
use crate::rt::shared::EngineCounters;
use crate::telemetry::{EngineTotals, SessionTelemetry, TotalsSource};
use crate::transport::{Arrivals, Listener, MediaTransport};

/// The wiring shared by a backend's sessions. Any thread.
pub struct Engine {
    config: BackendConfig,
    recipe: Recipe,
    processors: Mutex<Vec<ProcessorFactory>>,
    counters: Arc<EngineCounters>,
    doorbell: Doorbell,
    /// The realtime pool, when `audio.realtime_threads` asks for one (its threads start with the
    /// first session).
    pool: Option<Arc<RealtimePool>>,
    /// The host's tools for the built-in agent.
    tools: Mutex<Vec<Tool>>,
    /// The built-in agent of the backend's `agent` section, made for the first session that
    /// uses it (the host's tools are all added by then) and shared by the sessions that do not
    /// override it (one HTTP client, its connections pooled).
    agent: OnceLock<Arc<dyn Agent>>,
    /// The inference pool, when `vad.engine` or `turn.end_of_turn` names a model (loaded at
    /// creation, so that a missing library or model fails the backend's creation).
    inference: Option<Arc<InferencePool>>,
}

impl Engine {
    /// Prepares `kind` with the validated `config` (see [`BackendKind::prepare`]).
    pub fn new(kind: &dyn BackendKind, config: &BackendConfig) -> Result<Engine> {
        if !config.agent.is_null() {
            llm::validate(&config.agent, None)?;
        }
        let inference = if config.uses_models() {
            Some(Arc::new(InferencePool::new(config)?))
        } else {
            None
        };
        Ok(Engine {
            tools: Mutex::new(Vec::new()),
            agent: OnceLock::new(),
            inference,
            recipe: kind.prepare(config)?,
            config: config.clone(),
            processors: Mutex::new(Vec::new()),
            counters: Arc::new(EngineCounters::default()),
            doorbell: Doorbell::new(config.max_concurrent_sessions),
            pool: (config.audio.realtime_threads > 0).then(|| {
                Arc::new(RealtimePool::new(
                    config.audio.realtime_threads as usize,
                    config.max_concurrent_sessions as usize,
                    std::time::Duration::from_millis(config.audio.frame_ms.into()),
                    config.audio.realtime_priority,
                ))
            }),
        })
    }

    /// Adds a custom audio processor; each session gets its own instance. Names must be unique
    /// and not empty. (Only before the backend starts: the backend checks.)
    pub fn add_processor(&self, factory: ProcessorFactory) -> Result<()> {
        let name = factory().name().to_owned();
        if name.is_empty() {
            return Err(Error::invalid_argument("processor name must not be empty"));
        }
        let mut processors = self.processors.lock().unwrap_or_else(|p| p.into_inner());
        if processors.iter().any(|f| f().name() == name) {
            return Err(Error::invalid_argument(format!(
                "a processor named '{name}' is already added"
            )));
        }
        processors.push(factory);
        Ok(())
    }

    /// Offers a tool to the built-in agent. Names must be unique. (Only before the backend
    /// starts: the backend checks.)
    pub fn add_tool(&self, tool: Tool) -> Result<()> {
        tool.validate()?;
        let mut tools = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        if tools.iter().any(|t| t.name == tool.name) {
            return Err(Error::invalid_argument(format!(
                "a tool named '{}' is already added",
                tool.name
            )));
        }
        tools.push(tool);
        Ok(())
    }

    /// The built-in agent for `session` when the backend's `agent` section or the session's own
    /// describes one (`None` otherwise, and for conversations that need no agent). A session's
    /// `agent` object overrides the backend's field by field and gets an agent of its own.
    pub fn builtin_agent(&self, session: &SessionConfig) -> Result<Option<Arc<dyn Agent>>> {
        if !self.needs_agent() || (self.config.agent.is_null() && session.agent.is_null()) {
            return Ok(None);
        }
        let tools = self.tools.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !session.agent.is_null() {
            let config = llm::merged(&self.config.agent, &session.agent);
            return llm::create_agent(&config, &tools, self.config.retry).map(Some);
        }
        if let Some(agent) = self.agent.get() {
            return Ok(Some(agent.clone()));
        }
        let agent = llm::create_agent(&self.config.agent, &tools, self.config.retry)?;
        Ok(Some(self.agent.get_or_init(|| agent).clone()))
    }

    /// Whether sessions need the host's agent callback (`stt_tts` conversations).
    pub fn needs_agent(&self) -> bool {
        self.recipe.conversation.needs_agent()
    }

    /// `VB_ERR_PROVIDER_NOT_FOUND` naming the available transports when the backend's sessions
    /// cannot use `session.transport`; `VB_ERR_INVALID_CONFIG` when a network transport cannot
    /// work with the session's settings.
    pub fn check_transport(&self, session: &SessionConfig) -> Result<()> {
        let transports = self.recipe.transports;
        if transports.contains(&session.transport.as_str()) {
            return match self.media_for(session) {
                Some(media) => media.check_session(session),
                None => Ok(()),
            };
        }
        Err(Error::new(
            VbStatus::VB_ERR_PROVIDER_NOT_FOUND,
            format!(
                "transport '{}' is not available on the '{}' backend (available: {})",
                session.transport,
                self.config.provider,
                transports.join(", ")
            ),
        ))
    }

    /// The network transport that carries `session`, if it names one.
    fn media_for(&self, session: &SessionConfig) -> Option<&Arc<dyn MediaTransport>> {
        self.recipe
            .media
            .as_ref()
            .filter(|media| media.name() == session.transport)
    }

    /// Starts the backend's network transport taking calls, if it is configured to (a LiveKit
    /// worker); `arrivals` opens the sessions they bring.
    pub fn listen(
        &self,
        arrivals: Arc<dyn Arrivals>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Option<Box<dyn Listener>>> {
        match &self.recipe.media {
            Some(media) => media.listen(arrivals, runtime),
            None => Ok(None),
        }
    }

    /// The totals of every session's realtime thread so far.
    pub fn totals(&self) -> EngineTotals {
        let c = &self.counters;
        EngineTotals {
            frames_processed: c.frames_processed.load(Ordering::Relaxed),
            frames_dropped: c.frames_dropped.load(Ordering::Relaxed),
            deadline_misses: c.deadline_misses.load(Ordering::Relaxed),
            media_packets_received: c.media_packets_received.load(Ordering::Relaxed),
            media_packets_lost: c.media_packets_lost.load(Ordering::Relaxed),
            media_frames_concealed: c.media_frames_concealed.load(Ordering::Relaxed),
        }
    }

    /// [`Engine::totals`] for telemetry, which reads them at each collection.
    pub fn totals_source(self: &Arc<Self>) -> TotalsSource {
        let engine = Arc::downgrade(self);
        Arc::new(move || {
            engine
                .upgrade()
                .map_or_else(EngineTotals::default, |e| e.totals())
        })
    }

    /// Wires one session with the validated `session` configuration, whose transport passed
    /// [`Engine::check_transport`]: its rings, realtime loop, transport ends, event queue and
    /// conversation, ready to start. Nothing runs yet. Its task and transport run in `span`; its
    /// log records show what `log_policy` allows of the conversation.
    pub fn wire(
        &self,
        session: &SessionConfig,
        telemetry: SessionTelemetry,
        span: tracing::Span,
        log_policy: LogPolicy,
    ) -> Result<SessionWiring> {
        let processors = {
            let factories = self.processors.lock().unwrap_or_else(|p| p.into_inner());
            ProcessorChain::from_factories(&factories)
        };
        SessionWiring::build(super::wiring::Parts {
            backend: &self.config,
            session,
            media: self.media_for(session).cloned(),
            processors,
            counters: self.counters.clone(),
            bell: self.doorbell.bell()?,
            pool: self.pool.clone(),
            inference: self.inference.clone(),
            conversation: self.recipe.conversation.clone(),
            telemetry,
            span,
            log_policy,
        })
    }
}
