//! OpenTelemetry metrics and traces of a backend, exported over OTLP/HTTP (protobuf) and as a
//! Prometheus text endpoint.
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
//! Threads: the session tasks (through the event sink) and the backend's control calls update
//! the registry and hand over finished spans; the exporters run on the backend's I/O runtime. The
//! realtime thread only bumps its atomic counters, which are read here at collection.

pub mod metrics;
pub mod otlp;
pub mod prometheus;
pub mod trace;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::{BackendConfig, PipelineType, TelemetryConfig};
use crate::error::{Error, Result, VbStatus};
use crate::event::VbTurnMetrics;
use metrics::{Attributes, Instrument, Kind, MetricPoints, Registry, Value};
use otlp::{OtlpClient, Signal};
use trace::{AttrValue, SpanBuffer, SpanContext, SpanData, unix_now_ns};

/// Upper bounds (ms) of the latency histograms' buckets.
pub static LATENCY_BUCKETS_MS: [f64; 18] = [
    5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0, 750.0, 1000.0, 1500.0,
    2000.0, 3000.0, 5000.0, 10000.0,
];

const fn latency(name: &'static str, description: &'static str) -> Instrument {
    Instrument {
        name,
        description,
        unit: "ms",
        kind: Kind::Histogram(&LATENCY_BUCKETS_MS),
    }
}

/// `backend.latency`.
pub static LATENCY: Instrument = latency(
    "backend.latency",
    "Voice to voice latency per turn: end of user speech to the first reply sample readable by the host",
);
/// `backend.stt.latency`.
pub static STT_LATENCY: Instrument = latency(
    "backend.stt.latency",
    "End of user speech to the final transcript",
);
/// `backend.agent.latency`.
pub static AGENT_LATENCY: Instrument = latency(
    "backend.agent.latency",
    "Final transcript to the agent's first reply text",
);
/// `backend.tts.latency`.
pub static TTS_LATENCY: Instrument = latency(
    "backend.tts.latency",
    "The agent's first reply text to the first synthesized audio",
);
/// `backend.sessions.active`.
pub static SESSIONS_ACTIVE: Instrument = Instrument {
    name: "backend.sessions.active",
    description: "Sessions created and not yet stopped",
    unit: "{session}",
    kind: Kind::UpDownCounter,
};
/// `backend.errors.total`.
pub static ERRORS: Instrument = Instrument {
    name: "backend.errors.total",
    description: "Error events of sessions by status code and provider",
    unit: "{error}",
    kind: Kind::Counter,
};
/// `backend.throughput`.
pub static THROUGHPUT: Instrument = Instrument {
    name: "backend.throughput",
    description: "Frames processed by the realtime threads per second since the previous collection",
    unit: "{frame}/s",
    kind: Kind::Gauge,
};
/// `backend.frames.dropped`.
pub static FRAMES_DROPPED: Instrument = Instrument {
    name: "backend.frames.dropped",
    description: "Frames lost to input overruns or a stalled pipeline",
    unit: "{frame}",
    kind: Kind::Counter,
};
/// `backend.deadline.misses`.
pub static DEADLINE_MISSES: Instrument = Instrument {
    name: "backend.deadline.misses",
    description: "Frames processed more than one frame period after they arrived",
    unit: "{frame}",
    kind: Kind::Counter,
};
/// `backend.telemetry.export.failures`.
pub static EXPORT_FAILURES: Instrument = Instrument {
    name: "backend.telemetry.export.failures",
    description: "OTLP export requests that failed or were refused",
    unit: "{request}",
    kind: Kind::Counter,
};
/// `backend.telemetry.spans.dropped`.
pub static SPANS_DROPPED: Instrument = Instrument {
    name: "backend.telemetry.spans.dropped",
    description: "Finished spans dropped because too many were waiting for export",
    unit: "{span}",
    kind: Kind::Counter,
};

/// The `provider` of errors raised by the host's agent.
pub const PROVIDER_AGENT: &str = "agent";
/// The `provider` of errors raised by the engine itself.
pub const PROVIDER_ENGINE: &str = "engine";

/// How long stopping waits for the final export beyond its own request timeout.
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// What an exporter reads at one instant.
#[derive(Debug, Clone)]
pub struct Collection {
    /// Resource attributes: `service.name`, `backend.provider`.
    pub resource: Attributes,
    /// Start of the cumulative counts (the backend's creation), Unix ns.
    pub start_unix_ns: u64,
    /// Start of the window the gauges were sampled over (the previous collection), Unix ns.
    pub window_start_unix_ns: u64,
    /// When this collection was made, Unix ns.
    pub time_unix_ns: u64,
    /// Every metric with its data points.
    pub metrics: Vec<MetricPoints>,
}

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

/// The previous collection of one exporter: where its throughput window starts.
#[derive(Debug)]
pub(crate) struct ThroughputWindow {
    frames: u64,
    since_unix_ns: u64,
}

impl ThroughputWindow {
    pub(crate) fn new(shared: &Shared) -> Self {
        ThroughputWindow {
            frames: (shared.totals)().frames_processed,
            since_unix_ns: unix_now_ns(),
        }
    }
}

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

pub(crate) struct Shared {
    config: TelemetryConfig,
    resource: Attributes,
    stages: StageProviders,
    registry: Registry,
    spans: SpanBuffer,
    totals: TotalsSource,
    start_unix_ns: u64,
    otlp: Option<OtlpClient>,
    /// Failed exports: metrics, traces.
    export_failures: [AtomicU64; 2],
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
    backend_span: SpanContext,
    started_unix_ns: u64,
    prometheus: Option<(SocketAddr, JoinHandle<()>)>,
    exporter: Option<(Arc<Notify>, crossbeam_channel::Receiver<()>)>,
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
            .map(OtlpClient::new)
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
        Ok(Telemetry {
            shared: Arc::new(Shared {
                config: t.clone(),
                resource: vec![
                    ("service.name", t.service_name.clone()),
                    ("backend.provider", config.provider.clone()),
                ],
                stages,
                registry: Registry::new(&[
                    &LATENCY,
                    &STT_LATENCY,
                    &AGENT_LATENCY,
                    &TTS_LATENCY,
                    &SESSIONS_ACTIVE,
                    &ERRORS,
                ]),
                spans: SpanBuffer::new(otlp.is_some()),
                totals,
                start_unix_ns: unix_now_ns(),
                otlp,
                export_failures: [AtomicU64::new(0), AtomicU64::new(0)],
                run: Mutex::new(Run::Idle),
            }),
        })
    }

    /// Starts the backend span and the exporters on `runtime`: the Prometheus endpoint (bound
    /// here; an address that cannot be bound is `VB_ERR_INVALID_CONFIG` naming it) and the
    /// periodic OTLP export. Runs on the thread that starts the backend.
    pub(crate) fn start(&self, runtime: &tokio::runtime::Handle) -> Result<()> {
        let shared = &self.shared;
        let prometheus = match &shared.config.prometheus_addr {
            Some(configured) => {
                let listener = prometheus::bind(configured)?;
                let address = listener.local_addr().map_err(|e| {
                    Error::invalid_config(format!("telemetry.prometheus_addr: '{configured}': {e}"))
                })?;
                let _entered = runtime.enter();
                let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| {
                    Error::invalid_config(format!("telemetry.prometheus_addr: '{configured}': {e}"))
                })?;
                Some((
                    address,
                    runtime.spawn(prometheus::serve(
                        listener,
                        shared.clone(),
                        ThroughputWindow::new(shared),
                    )),
                ))
            }
            None => None,
        };
        let exporter = shared.otlp.is_some().then(|| {
            let stop = Arc::new(Notify::new());
            let (done_tx, done_rx) = crossbeam_channel::bounded(1);
            let window = ThroughputWindow::new(shared);
            runtime.spawn(export_periodically(
                shared.clone(),
                window,
                stop.clone(),
                done_tx,
            ));
            (stop, done_rx)
        });
        *shared.lock_run() = Run::Running(Running {
            backend_span: SpanContext::new_root(),
            started_unix_ns: unix_now_ns(),
            prometheus,
            exporter,
        });
        Ok(())
    }

    /// Ends the backend span, stops the Prometheus endpoint and makes the final OTLP export,
    /// waiting for it at most its request timeout (an unreachable endpoint delays stopping by
    /// no more). Call after every session has stopped, before the runtime shuts down; on the
    /// thread that stops the backend.
    pub(crate) fn stop(&self) {
        let Run::Running(running) = std::mem::replace(&mut *self.shared.lock_run(), Run::Stopped)
        else {
            return;
        };
        self.shared.spans.push(SpanData::new(
            running.backend_span,
            "backend",
            running.started_unix_ns,
            unix_now_ns(),
        ));
        if let Some((_, task)) = running.prometheus {
            task.abort();
        }
        if let Some((stop, done)) = running.exporter {
            stop.notify_one();
            let _ = done.recv_timeout(otlp::EXPORT_TIMEOUT + FLUSH_GRACE);
        }
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
        self.shared
            .export_failures
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    /// The telemetry of a new session: counts it active and opens its span until the returned
    /// value is dropped. Called by `Backend::create_session`.
    pub(crate) fn session(&self, session_id: &str) -> SessionTelemetry {
        let backend_span = match &*self.shared.lock_run() {
            Run::Running(running) => Some(running.backend_span),
            _ => None,
        };
        self.shared.registry.add(&SESSIONS_ACTIVE, Vec::new(), 1);
        SessionTelemetry {
            shared: self.shared.clone(),
            span: SpanContext::new_root(),
            backend_span,
            start_unix_ns: unix_now_ns(),
            session_id: session_id.to_owned(),
            turns: 0,
            errors: 0,
        }
    }
}

impl Shared {
    fn lock_run(&self) -> std::sync::MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_error(&self, status: VbStatus, provider: &str) {
        self.registry.add(
            &ERRORS,
            vec![
                ("code", status.name().to_owned()),
                ("provider", provider.to_owned()),
            ],
            1,
        );
    }

    /// The registry's metrics plus those read from counters now; moves `window` to now.
    pub(crate) fn collect(&self, window: &mut ThroughputWindow) -> Collection {
        let now = unix_now_ns();
        let totals = (self.totals)();
        let frames = totals.frames_processed;
        let elapsed_ns = now.saturating_sub(window.since_unix_ns);
        let throughput = if elapsed_ns == 0 {
            0.0
        } else {
            frames.saturating_sub(window.frames) as f64 * 1e9 / elapsed_ns as f64
        };
        let window_start_unix_ns = std::mem::replace(
            window,
            ThroughputWindow {
                frames,
                since_unix_ns: now,
            },
        )
        .since_unix_ns;
        let one = |instrument, value| MetricPoints {
            instrument,
            points: vec![(Vec::new(), value)],
        };
        let count = |n: &AtomicU64| Value::Int(n.load(Ordering::Relaxed) as i64);
        let mut metrics = self.registry.snapshot();
        metrics.push(one(&THROUGHPUT, Value::Double(throughput)));
        let total = |n: u64| Value::Int(n as i64);
        metrics.push(one(&FRAMES_DROPPED, total(totals.frames_dropped)));
        metrics.push(one(&DEADLINE_MISSES, total(totals.deadline_misses)));
        if self.otlp.is_some() {
            metrics.push(MetricPoints {
                instrument: &EXPORT_FAILURES,
                points: [Signal::Metrics, Signal::Traces]
                    .into_iter()
                    .zip(&self.export_failures)
                    .map(|(signal, n)| (vec![("signal", signal.name().to_owned())], count(n)))
                    .collect(),
            });
            metrics.push(one(&SPANS_DROPPED, Value::Int(self.spans.dropped() as i64)));
        }
        Collection {
            resource: self.resource.clone(),
            start_unix_ns: self.start_unix_ns,
            window_start_unix_ns,
            time_unix_ns: now,
            metrics,
        }
    }

    /// One OTLP export: every metric, and the spans finished since the previous export.
    async fn export(&self, otlp: &OtlpClient, window: &mut ThroughputWindow) {
        let metrics = otlp::encode_metrics(&self.collect(window));
        let spans = self.spans.take();
        let traces = async {
            spans.is_empty()
                || otlp
                    .post(Signal::Traces, otlp::encode_spans(&self.resource, &spans))
                    .await
        };
        let (metrics_ok, traces_ok) = tokio::join!(otlp.post(Signal::Metrics, metrics), traces);
        for (ok, failures) in [metrics_ok, traces_ok]
            .into_iter()
            .zip(&self.export_failures)
        {
            if !ok {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The OTLP export task: every `telemetry.export_interval_ms`, and once more when told to stop.
/// Throughput is measured from `window` on.
async fn export_periodically(
    shared: Arc<Shared>,
    mut window: ThroughputWindow,
    stop: Arc<Notify>,
    done: crossbeam_channel::Sender<()>,
) {
    let Some(otlp) = shared.otlp.as_ref() else {
        return;
    };
    let period = Duration::from_millis(shared.config.export_interval_ms.into());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.notified() => true,
        };
        shared.export(otlp, &mut window).await;
        if last {
            break;
        }
    }
    let _ = done.send(());
}

/// The telemetry of one session, owned by its event sink on the session task. Dropping it (when
/// the session stops) ends the session span and counts the session inactive.
pub struct SessionTelemetry {
    shared: Arc<Shared>,
    span: SpanContext,
    backend_span: Option<SpanContext>,
    start_unix_ns: u64,
    session_id: String,
    turns: i64,
    errors: i64,
}

impl SessionTelemetry {
    /// Counts an error event raised by `provider` (a provider name, [`PROVIDER_AGENT`] or
    /// [`PROVIDER_ENGINE`]).
    pub fn error(&mut self, status: VbStatus, provider: &str) {
        self.errors += 1;
        self.shared.record_error(status, provider);
    }

    /// A turn's reply started playing at `played_at_us` on the session clock (read as `now_us`):
    /// records its latencies and, with OTLP, its `turn` span and stage spans.
    pub fn turn_played(&mut self, turn: u32, played_at_us: u64, now_us: u64, m: &VbTurnMetrics) {
        self.turns += 1;
        let registry = &self.shared.registry;
        let ms = |us: u64| us as f64 / 1000.0;
        registry.record(&LATENCY, Vec::new(), ms(m.first_output_audio_us));
        let spans = &self.shared.spans;
        // The end of user speech in Unix time; stage times are offsets from it.
        let speech_end_us = played_at_us.saturating_sub(m.first_output_audio_us);
        let speech_end_ns =
            unix_now_ns().saturating_sub(now_us.saturating_sub(speech_end_us) * 1000);
        let turn_span = self.span.new_child();
        let providers = &self.shared.stages;
        let stages = [
            (&STT_LATENCY, "stt", m.stt_final_us, &providers.stt),
            (
                &AGENT_LATENCY,
                "agent",
                m.agent_first_text_us,
                &providers.agent,
            ),
            (&TTS_LATENCY, "tts", m.tts_first_audio_us, &providers.tts),
        ];
        let mut previous_us = 0;
        for (instrument, name, done_us, provider) in stages {
            if done_us == 0 {
                continue; // the stage did not happen
            }
            let took_us = done_us.saturating_sub(previous_us);
            registry.record(instrument, Vec::new(), ms(took_us));
            if spans.enabled() {
                let start = speech_end_ns + previous_us * 1000;
                let mut span =
                    SpanData::new(turn_span.new_child(), name, start, start + took_us * 1000);
                span.parent = Some(turn_span.span_id);
                if let Some(provider) = provider {
                    span.attributes
                        .push(("provider", AttrValue::Str(provider.clone())));
                }
                spans.push(span);
            }
            previous_us = previous_us.max(done_us);
        }
        if spans.enabled() {
            let mut span = SpanData::new(
                turn_span,
                "turn",
                speech_end_ns,
                speech_end_ns + m.first_output_audio_us * 1000,
            );
            span.parent = Some(self.span.span_id);
            span.attributes
                .push(("turn.number", AttrValue::Int(i64::from(turn))));
            spans.push(span);
        }
    }
}

impl Drop for SessionTelemetry {
    fn drop(&mut self) {
        self.shared.registry.add(&SESSIONS_ACTIVE, Vec::new(), -1);
        if !self.shared.spans.enabled() {
            return;
        }
        let mut span = SpanData::new(self.span, "session", self.start_unix_ns, unix_now_ns());
        span.links.extend(self.backend_span);
        span.attributes = vec![
            (
                "session.id",
                AttrValue::Str(std::mem::take(&mut self.session_id)),
            ),
            ("session.turns", AttrValue::Int(self.turns)),
            ("session.errors", AttrValue::Int(self.errors)),
        ];
        self.shared.spans.push(span);
    }
}
