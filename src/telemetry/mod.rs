//! OpenTelemetry metrics and traces of a backend, recorded with the OpenTelemetry SDK
//! (`opentelemetry_sdk`), exported over OTLP/HTTP with protobuf bodies (`opentelemetry-otlp`) and
//! as a Prometheus text endpoint (`opentelemetry-prometheus`).
//!
//! Metrics (names of the Go API this project descends from):
//! - `backend.latency` (histogram, ms): voice to voice per turn, the end of user speech to the
//!   first reply sample readable by the host (`VbTurnMetrics::first_output_audio_us`);
//! - `backend.stt.latency`, `backend.agent.latency`, `backend.tts.latency` (histograms, ms): each
//!   stage's own share of it: end of speech → final transcript → the agent's first text → TTS's
//!   first audio;
//! - `backend.sessions.active` (up-down counter): sessions created and not stopped;
//! - `backend.errors.total` (counter; attributes `code`, the C status name, and `provider`, the
//!   provider that failed, `agent` for the host's agent or `engine`): error events of sessions;
//! - `backend.throughput` (gauge, frames/s): frames the realtime threads processed, over the time
//!   since the exporter's previous collection;
//! - `backend.frames.dropped`, `backend.deadline.misses` (counters): from the realtime threads'
//!   atomic counters, read at collection;
//! - with OTLP, `backend.telemetry.export.failures` (by `signal`) and
//!   `backend.telemetry.spans.dropped`.
//!
//! Traces: a `backend` span from start to stop; per session a `session` span from creation to
//! stop, the root of its own trace (a backend lives far longer than a trace should), linked to
//! the backend span; per played turn a `turn` span (child of the session span) covering the voice
//! to voice interval, with children `stt`, `agent` and `tts` whose times come from the turn's
//! metrics. Spans carry ids, counts and provider names, never transcript text or secrets.
//!
//! Threads: the session tasks (through the event sink) and the backend's control calls record
//! into the SDK's instruments and end spans; the SDK's periodic reader and batch span processor
//! export from threads of their own (one each per backend with OTLP), their HTTP requests running
//! on the backend's I/O runtime; the Prometheus endpoint collects on the I/O runtime. The realtime
//! thread only bumps its atomic counters, which are read here at collection.

pub mod metrics;
pub mod otlp;
pub mod prometheus;
pub mod trace;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::PeriodicReader;
use tokio::task::JoinHandle;

use crate::config::{BackendConfig, PipelineType, TelemetryConfig};
use crate::error::{Error, Result, VbStatus};
use crate::event::VbTurnMetrics;
pub use metrics::LATENCY_BUCKETS_MS;
use metrics::{Instruments, Observed, Pipeline};
use otlp::{Endpoint, ExportCounters, RuntimeHttpClient, Signal};
use trace::{SessionSpan, Stage, Tracing};

/// The `provider` of errors raised by the host's agent.
pub const PROVIDER_AGENT: &str = "agent";
/// The `provider` of errors raised by the engine itself.
pub const PROVIDER_ENGINE: &str = "engine";

/// How long stopping waits for the final export beyond its own request timeout.
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// The engine's totals over every session of a backend, as the realtime threads count them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineTotals {
    /// Internal-rate frames processed.
    pub frames_processed: u64,
    /// Frames lost: input overruns, speech frames that found the I/O ring full.
    pub frames_dropped: u64,
    /// Frames processed more than one frame period after they arrived.
    pub deadline_misses: u64,
    /// Audio packets network transports received.
    pub media_packets_received: u64,
    /// Audio packets that never arrived in time.
    pub media_packets_lost: u64,
    /// Frames concealed or rebuilt from FEC.
    pub media_frames_concealed: u64,
}

/// Reads the engine's totals now (relaxed atomic loads; any thread).
pub type TotalsSource = Arc<dyn Fn() -> EngineTotals + Send + Sync>;

/// The telemetry of one backend. Cheap to share; every method may be called from any thread but
/// the realtime thread.
pub struct Telemetry {
    shared: Arc<Shared>,
}

/// Provider names that the stage spans carry.
struct StageProviders {
    stt: Option<String>,
    agent: Option<String>,
    tts: Option<String>,
}

struct Shared {
    config: TelemetryConfig,
    resource: Resource,
    stages: StageProviders,
    totals: TotalsSource,
    otlp: Option<Endpoint>,
    counters: Arc<ExportCounters>,
    run: Mutex<Run>,
}

#[derive(Default)]
enum Run {
    #[default]
    Idle,
    Running(Running),
    Stopped,
}

struct Running {
    /// The exporters' meter pipelines: Prometheus and/or OTLP.
    pipelines: Vec<Pipeline>,
    /// Their instruments, which sessions record into.
    instruments: Arc<[Instruments]>,
    /// With OTLP.
    tracing: Option<Arc<Tracing>>,
    prometheus: Option<(SocketAddr, JoinHandle<()>)>,
}

impl Telemetry {
    /// The telemetry of a backend with `config`, reading the realtime threads' counts through
    /// `totals` at each collection. An OTLP endpoint that is not an http(s) URL is
    /// `VB_ERR_INVALID_CONFIG`. Nothing runs until [`Telemetry::start`].
    pub(crate) fn new(config: &BackendConfig, totals: TotalsSource) -> Result<Self> {
        let t = &config.telemetry;
        let otlp = t
            .otlp_endpoint
            .as_deref()
            .map(Endpoint::parse)
            .transpose()?;
        let stages = match config.pipeline_type {
            PipelineType::SttTts => StageProviders {
                stt: config.stt_provider.clone(),
                agent: None,
                tts: config.tts_provider.clone(),
            },
            PipelineType::S2s => StageProviders {
                stt: config.s2s_provider.clone(),
                agent: config.s2s_provider.clone(),
                tts: config.s2s_provider.clone(),
            },
        };
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", t.service_name.clone()),
                KeyValue::new("backend.provider", config.provider.clone()),
            ])
            .build();
        Ok(Telemetry {
            shared: Arc::new(Shared {
                config: t.clone(),
                resource,
                stages,
                totals,
                otlp,
                counters: Arc::new(ExportCounters::default()),
                run: Mutex::new(Run::Idle),
            }),
        })
    }

    /// Starts the backend span and the exporters on `runtime`: the Prometheus endpoint (bound
    /// here; an address that cannot be bound is `VB_ERR_INVALID_CONFIG` naming it) and the
    /// periodic OTLP export. Runs on the thread that starts the backend.
    pub(crate) fn start(&self, runtime: &tokio::runtime::Handle) -> Result<()> {
        let shared = &self.shared;
        let observed = Observed {
            totals: shared.totals.clone(),
            export: shared.otlp.is_some().then(|| shared.counters.clone()),
        };
        let mut pipelines = Vec::new();
        let prometheus = match &shared.config.prometheus_addr {
            Some(configured) => {
                let listener = prometheus::bind(configured)?;
                let invalid = |e: std::io::Error| {
                    Error::invalid_config(format!("telemetry.prometheus_addr: '{configured}': {e}"))
                };
                let address = listener.local_addr().map_err(invalid)?;
                let listener = {
                    let _entered = runtime.enter();
                    tokio::net::TcpListener::from_std(listener).map_err(invalid)?
                };
                let (reader, registry) = prometheus::exporter()?;
                pipelines.push(Pipeline::new(
                    reader,
                    shared.resource.clone(),
                    observed.clone(),
                    true,
                ));
                Some((
                    address,
                    runtime.spawn(prometheus::serve(listener, registry)),
                ))
            }
            None => None,
        };
        let tracing = match &shared.otlp {
            Some(endpoint) => {
                let client = RuntimeHttpClient::new(runtime.clone())?;
                let interval = Duration::from_millis(shared.config.export_interval_ms.into());
                let exporter =
                    otlp::metric_exporter(endpoint, client.clone(), shared.counters.clone())?;
                let reader = PeriodicReader::builder(exporter)
                    .with_interval(interval)
                    .build();
                pipelines.push(Pipeline::new(
                    reader,
                    shared.resource.clone(),
                    observed,
                    false,
                ));
                let exporter = otlp::span_exporter(endpoint, client, shared.counters.clone())?;
                Some(Arc::new(Tracing::start(
                    exporter,
                    shared.resource.clone(),
                    interval,
                    shared.counters.clone(),
                )))
            }
            None => None,
        };
        let instruments = pipelines.iter().map(|p| p.instruments().clone()).collect();
        *shared.lock_run() = Run::Running(Running {
            pipelines,
            instruments,
            tracing,
            prometheus,
        });
        Ok(())
    }

    /// Ends the backend span, stops the Prometheus endpoint and makes the final OTLP exports of
    /// metrics and spans (side by side), waiting for them at most their request timeout (an
    /// unreachable endpoint delays stopping by no more). Call after every session has stopped,
    /// before the runtime shuts down; on the thread that stops the backend.
    pub(crate) fn stop(&self) {
        let Run::Running(running) = std::mem::replace(&mut *self.shared.lock_run(), Run::Stopped)
        else {
            return;
        };
        if let Some((_, task)) = &running.prometheus {
            task.abort();
        }
        let timeout = otlp::EXPORT_TIMEOUT + FLUSH_GRACE;
        std::thread::scope(|scope| {
            if let Some(tracing) = &running.tracing {
                scope.spawn(|| tracing.shutdown(timeout));
            }
            for pipeline in &running.pipelines {
                scope.spawn(|| pipeline.shutdown(timeout));
            }
        });
    }

    /// Where the Prometheus endpoint listens, while the backend runs and one is configured
    /// (useful with port 0).
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        match &*self.shared.lock_run() {
            Run::Running(running) => running.prometheus.as_ref().map(|(address, _)| *address),
            _ => None,
        }
    }

    /// OTLP export requests that failed so far (unreachable endpoint, a status other than 2xx).
    pub fn export_failures(&self) -> u64 {
        let counters = &self.shared.counters;
        counters.failures(Signal::Metrics) + counters.failures(Signal::Traces)
    }

    /// The telemetry of a new session: counts it active and opens its span until the returned
    /// value is dropped. Called by `Backend::create_session`.
    pub(crate) fn session(&self, session_id: &str) -> SessionTelemetry {
        let (instruments, span) = match &*self.shared.lock_run() {
            Run::Running(running) => (
                running.instruments.clone(),
                running.tracing.as_ref().map(|t| t.session(session_id)),
            ),
            _ => (Arc::from(Vec::new()), None),
        };
        for pipeline in instruments.iter() {
            pipeline.session(1);
        }
        SessionTelemetry {
            shared: self.shared.clone(),
            instruments,
            span,
            turns: 0,
            errors: 0,
        }
    }
}

impl Shared {
    fn lock_run(&self) -> std::sync::MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The telemetry of one session, owned by its event sink on the session task. Dropping it (when
/// the session stops) ends the session span and counts the session inactive.
pub struct SessionTelemetry {
    shared: Arc<Shared>,
    instruments: Arc<[Instruments]>,
    span: Option<SessionSpan>,
    turns: i64,
    errors: i64,
}

impl SessionTelemetry {
    /// Counts an error event raised by `provider` (a provider name, [`PROVIDER_AGENT`] or
    /// [`PROVIDER_ENGINE`]).
    pub fn error(&mut self, status: VbStatus, provider: &str) {
        self.errors += 1;
        for pipeline in self.instruments.iter() {
            pipeline.error(status, provider);
        }
    }

    /// A turn's reply started playing at `played_at_us` on the session clock (read as `now_us`):
    /// records its latencies and, with OTLP, its `turn` span and stage spans.
    pub fn turn_played(&mut self, turn: u32, played_at_us: u64, now_us: u64, m: &VbTurnMetrics) {
        self.turns += 1;
        // Each stage's own share: end of speech → final transcript → first agent text → first
        // TTS audio; a stage that did not happen (0) has none.
        let mut stages = [None; 3];
        let mut offsets = [0; 3];
        let mut previous_us = 0;
        for (i, done_us) in [m.stt_final_us, m.agent_first_text_us, m.tts_first_audio_us]
            .into_iter()
            .enumerate()
        {
            if done_us == 0 {
                continue;
            }
            stages[i] = Some(done_us.saturating_sub(previous_us));
            offsets[i] = previous_us;
            previous_us = previous_us.max(done_us);
        }
        for pipeline in self.instruments.iter() {
            pipeline.turn(m, &stages);
        }
        let Some(span) = &self.span else {
            return;
        };
        // The end of user speech in Unix time; stage times are offsets from it.
        let ago = Duration::from_micros(
            now_us.saturating_sub(played_at_us.saturating_sub(m.first_output_audio_us)),
        );
        let speech_end = SystemTime::now()
            .checked_sub(ago)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let providers = &self.shared.stages;
        let names = [
            ("stt", &providers.stt),
            ("agent", &providers.agent),
            ("tts", &providers.tts),
        ];
        let stage_spans: Vec<Stage<'_>> = names
            .iter()
            .zip(stages.iter().zip(offsets))
            .filter_map(|((name, provider), (took, offset))| {
                Some(Stage {
                    name,
                    provider: provider.as_deref(),
                    offset: Duration::from_micros(offset),
                    took: Duration::from_micros((*took)?),
                })
            })
            .collect();
        span.turn(
            turn,
            speech_end,
            Duration::from_micros(m.first_output_audio_us),
            &stage_spans,
        );
    }
}

impl Drop for SessionTelemetry {
    fn drop(&mut self) {
        for pipeline in self.instruments.iter() {
            pipeline.session(-1);
        }
        if let Some(span) = &self.span {
            span.end(self.turns, self.errors);
        }
    }
}
