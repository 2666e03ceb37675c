//! The metric instruments of one exporter's pipeline: an OpenTelemetry SDK meter provider with one
//! reader (the OTLP periodic reader or the Prometheus exporter), its instruments, and the
//! observable instruments that read the engine's counters at collection.
//!
//! Each exporter has a pipeline of its own rather than both readers sharing one provider:
//! `backend.throughput` is the rate since *that exporter's* previous collection (a shared
//! callback could not tell which reader asks), and the Prometheus pipeline renames
//! `backend.errors.total` so that the exporter's `_total` suffix is not doubled. Recording into
//! two pipelines costs one more aggregation per turn or error, never anything per frame.
//!
//! Recorded by the session tasks and the backend's control calls (never by the realtime thread:
//! what it counts is read from its atomics when a reader collects).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{Instrument as SdkInstrument, SdkMeterProvider, Stream};

use super::otlp::{ExportCounters, Signal};
use super::{EngineTotals, TotalsSource};
use crate::error::VbStatus;
use crate::event::VbTurnMetrics;

/// The identity of a metric.
#[derive(Debug)]
pub struct Instrument {
    /// Dotted OpenTelemetry name, e.g. `backend.latency`.
    pub name: &'static str,
    /// What it measures.
    pub description: &'static str,
    /// UCUM unit, e.g. `ms`, `{frame}/s`.
    pub unit: &'static str,
}

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
    }
}

/// `backend.latency` (histogram).
pub static LATENCY: Instrument = latency(
    "backend.latency",
    "Voice to voice latency per turn: end of user speech to the first reply sample readable by the host",
);
/// `backend.stt.latency` (histogram).
pub static STT_LATENCY: Instrument = latency(
    "backend.stt.latency",
    "End of user speech to the final transcript",
);
/// `backend.agent.latency` (histogram).
pub static AGENT_LATENCY: Instrument = latency(
    "backend.agent.latency",
    "Final transcript to the agent's first reply text",
);
/// `backend.tts.latency` (histogram).
pub static TTS_LATENCY: Instrument = latency(
    "backend.tts.latency",
    "The agent's first reply text to the first synthesized audio",
);
/// `backend.sessions.active` (up-down counter).
pub static SESSIONS_ACTIVE: Instrument = Instrument {
    name: "backend.sessions.active",
    description: "Sessions created and not yet stopped",
    unit: "{session}",
};
/// `backend.errors.total` (counter).
pub static ERRORS: Instrument = Instrument {
    name: "backend.errors.total",
    description: "Error events of sessions by status code and provider",
    unit: "{error}",
};
/// `backend.throughput` (observable gauge).
pub static THROUGHPUT: Instrument = Instrument {
    name: "backend.throughput",
    description: "Frames processed by the realtime threads per second since the previous collection",
    unit: "{frame}/s",
};
/// `backend.frames.dropped` (observable counter).
pub static FRAMES_DROPPED: Instrument = Instrument {
    name: "backend.frames.dropped",
    description: "Frames lost to input overruns or a stalled pipeline",
    unit: "{frame}",
};
/// `backend.deadline.misses` (observable counter).
pub static DEADLINE_MISSES: Instrument = Instrument {
    name: "backend.deadline.misses",
    description: "Frames processed more than one frame period after they arrived",
    unit: "{frame}",
};
/// `backend.telemetry.export.failures` (observable counter, by `signal`).
pub static EXPORT_FAILURES: Instrument = Instrument {
    name: "backend.telemetry.export.failures",
    description: "OTLP export requests that failed or were refused",
    unit: "{request}",
};
/// `backend.telemetry.spans.dropped` (observable counter).
pub static SPANS_DROPPED: Instrument = Instrument {
    name: "backend.telemetry.spans.dropped",
    description: "Finished spans dropped because too many were waiting for export",
    unit: "{span}",
};

/// The instrumentation scope of everything the engine records.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// What the observable instruments of a pipeline read at collection.
#[derive(Clone)]
pub(crate) struct Observed {
    /// The realtime threads' totals.
    pub totals: TotalsSource,
    /// OTLP's own counters, when OTLP is configured.
    pub export: Option<Arc<ExportCounters>>,
}

/// One exporter's meter provider and the instruments recorded into it.
pub(crate) struct Pipeline {
    provider: SdkMeterProvider,
    instruments: Instruments,
}

impl Pipeline {
    /// A provider for `resource` with `reader` as its only reader. `prometheus` renames
    /// `backend.errors.total` to `backend.errors` in this pipeline (the Prometheus exporter adds
    /// `_total` to every counter).
    pub(crate) fn new(
        reader: impl MetricReader,
        resource: Resource,
        observed: Observed,
        prometheus: bool,
    ) -> Pipeline {
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader);
        if prometheus {
            builder = builder.with_view(|instrument: &SdkInstrument| {
                (instrument.name() == ERRORS.name)
                    .then(|| Stream::builder().with_name("backend.errors").build().ok())
                    .flatten()
            });
        }
        let provider = builder.build();
        let meter = provider.meter_with_scope(scope());
        let instruments = Instruments::new(&meter);
        observe(&meter, observed);
        Pipeline {
            provider,
            instruments,
        }
    }

    /// Its instruments (cheap to clone: handles into the provider).
    pub(crate) fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    /// Collects and exports one last time (the OTLP reader) and stops, waiting at most
    /// `timeout`. Blocking.
    pub(crate) fn shutdown(&self, timeout: Duration) {
        let _ = self.provider.shutdown_with_timeout(timeout);
    }
}

/// The instruments the engine records into (the observable ones live in their callbacks).
#[derive(Clone)]
pub(crate) struct Instruments {
    latency: Histogram<f64>,
    stt_latency: Histogram<f64>,
    agent_latency: Histogram<f64>,
    tts_latency: Histogram<f64>,
    sessions_active: UpDownCounter<i64>,
    errors: Counter<u64>,
}

impl Instruments {
    fn new(meter: &Meter) -> Self {
        let histogram = |i: &'static Instrument| {
            meter
                .f64_histogram(i.name)
                .with_description(i.description)
                .with_unit(i.unit)
                .with_boundaries(LATENCY_BUCKETS_MS.to_vec())
                .build()
        };
        let sessions_active = meter
            .i64_up_down_counter(SESSIONS_ACTIVE.name)
            .with_description(SESSIONS_ACTIVE.description)
            .with_unit(SESSIONS_ACTIVE.unit)
            .build();
        // A data point from the start: exporters show 0 before the first session.
        sessions_active.add(0, &[]);
        Instruments {
            latency: histogram(&LATENCY),
            stt_latency: histogram(&STT_LATENCY),
            agent_latency: histogram(&AGENT_LATENCY),
            tts_latency: histogram(&TTS_LATENCY),
            sessions_active,
            errors: meter
                .u64_counter(ERRORS.name)
                .with_description(ERRORS.description)
                .with_unit(ERRORS.unit)
                .build(),
        }
    }

    /// A session was created (`+1`) or stopped (`-1`).
    pub(crate) fn session(&self, delta: i64) {
        self.sessions_active.add(delta, &[]);
    }

    /// An error event of `status` raised by `provider`.
    pub(crate) fn error(&self, status: VbStatus, provider: &str) {
        self.errors.add(
            1,
            &[
                KeyValue::new("code", status.name()),
                KeyValue::new("provider", provider.to_owned()),
            ],
        );
    }

    /// The latencies of a played turn: voice to voice, and the share of each stage that
    /// happened (`stages`: each stage's own duration, µs).
    pub(crate) fn turn(&self, m: &VbTurnMetrics, stages: &[Option<u64>; 3]) {
        let ms = |us: u64| us as f64 / 1000.0;
        self.latency.record(ms(m.first_output_audio_us), &[]);
        for (histogram, took) in [&self.stt_latency, &self.agent_latency, &self.tts_latency]
            .into_iter()
            .zip(stages)
        {
            if let Some(us) = took {
                histogram.record(ms(*us), &[]);
            }
        }
    }
}

/// Registers the observable instruments: throughput and the realtime threads' counters (read
/// through `observed.totals`), and with OTLP its failures and dropped spans.
fn observe(meter: &Meter, observed: Observed) {
    let totals = observed.totals.clone();
    let window = Mutex::new(Window::new((totals)()));
    meter
        .f64_observable_gauge(THROUGHPUT.name)
        .with_description(THROUGHPUT.description)
        .with_unit(THROUGHPUT.unit)
        .with_callback(move |gauge| {
            let now = (totals)();
            let rate = window
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .advance(now);
            gauge.observe(rate, &[]);
        })
        .build();
    let counter = |i: &'static Instrument, read: fn(&EngineTotals) -> u64| {
        let totals = observed.totals.clone();
        meter
            .u64_observable_counter(i.name)
            .with_description(i.description)
            .with_unit(i.unit)
            .with_callback(move |counter| counter.observe(read(&(totals)()), &[]))
            .build();
    };
    counter(&FRAMES_DROPPED, |t| t.frames_dropped);
    counter(&DEADLINE_MISSES, |t| t.deadline_misses);
    let Some(export) = observed.export else {
        return;
    };
    let failures = export.clone();
    meter
        .u64_observable_counter(EXPORT_FAILURES.name)
        .with_description(EXPORT_FAILURES.description)
        .with_unit(EXPORT_FAILURES.unit)
        .with_callback(move |counter| {
            for signal in [Signal::Metrics, Signal::Traces] {
                let attributes = [KeyValue::new("signal", signal.name())];
                counter.observe(failures.failures(signal), &attributes);
            }
        })
        .build();
    meter
        .u64_observable_counter(SPANS_DROPPED.name)
        .with_description(SPANS_DROPPED.description)
        .with_unit(SPANS_DROPPED.unit)
        .with_callback(move |counter| {
            counter.observe(export.spans_dropped.load(Ordering::Relaxed), &[])
        })
        .build();
}

/// Where one pipeline's throughput window starts: the frames processed then, and when.
struct Window {
    frames: u64,
    since: Instant,
}

impl Window {
    fn new(totals: EngineTotals) -> Self {
        Window {
            frames: totals.frames_processed,
            since: Instant::now(),
        }
    }

    /// Frames per second from the window's start to now (`totals` read now); the next window
    /// starts here.
    fn advance(&mut self, totals: EngineTotals) -> f64 {
        let next = Window::new(totals);
        let seconds = next.since.duration_since(self.since).as_secs_f64();
        let frames = next.frames.saturating_sub(self.frames);
        *self = next;
        if seconds > 0.0 {
            frames as f64 / seconds
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throughput_window_restarts_at_each_collection() {
        let at = |frames_processed| EngineTotals {
            frames_processed,
            ..EngineTotals::default()
        };
        let mut window = Window::new(at(10));
        std::thread::sleep(Duration::from_millis(20));
        let rate = window.advance(at(30));
        assert!(rate > 0.0 && rate <= 20.0 / 0.02, "{rate}");
        assert_eq!(window.frames, 30);
        assert_eq!(window.advance(at(30)), 0.0, "nothing processed since");
    }
}
