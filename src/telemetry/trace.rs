//! Spans, through the OpenTelemetry SDK's tracer: the `backend` span, one `session` span per
//! session (the root of its own trace, linked to the backend span), and per played turn a `turn`
//! span with `stt`, `agent` and `tts` children whose times come from the turn's metrics. The SDK's
//! batch span processor exports them over OTLP; a bound in front of it counts the spans it has to
//! drop.
//!
//! Spans are made with explicit start and end times (a turn is measured by the realtime thread's
//! clock, and known only once its reply plays), which is why they are built with the SDK's tracer
//! and not through `tracing` spans (`tracing-opentelemetry` times a span by when it is entered
//! and closed). Recorded by the session tasks and the backend's control calls, never by the
//! realtime thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Link, Span as _, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanProcessor,
};

use super::metrics::scope;
use super::otlp::ExportCounters;

/// Finished spans waiting for export, at most; beyond that new spans are dropped and counted.
pub const MAX_PENDING_SPANS: usize = 4096;

/// The tracer of a backend and its `backend` span, while OTLP is configured and the backend runs.
pub(crate) struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    backend: Context,
}

impl Tracing {
    /// A tracer exporting through `exporter` every `interval`, and the `backend` span, started
    /// now.
    pub(crate) fn start(
        exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
        resource: Resource,
        interval: Duration,
        counters: Arc<ExportCounters>,
    ) -> Tracing {
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(MAX_PENDING_SPANS)
                    .with_scheduled_delay(interval)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_span_processor(Bounded {
                inner: batch,
                counters,
            })
            .build();
        let tracer = provider.tracer_with_scope(scope());
        let backend = tracer
            .span_builder("backend")
            .start_with_context(&tracer, &Context::new());
        Tracing {
            provider,
            tracer,
            backend: Context::new().with_span(backend),
        }
    }

    /// The span of a new session, started now: the root of its own trace (a backend lives far
    /// longer than a trace should), linked to the backend span.
    pub(crate) fn session(&self, session_id: &str) -> SessionSpan {
        let link = Link::with_context(self.backend.span().span_context().clone());
        let span = self
            .tracer
            .span_builder("session")
            .with_links(vec![link])
            .with_attributes([KeyValue::new("session.id", session_id.to_owned())])
            .start_with_context(&self.tracer, &Context::new());
        SessionSpan {
            tracer: self.tracer.clone(),
            cx: Context::new().with_span(span),
        }
    }

    /// Ends the backend span and exports every span still waiting, waiting at most `timeout`.
    /// Blocking.
    pub(crate) fn shutdown(&self, timeout: Duration) {
        self.backend.span().end();
        let _ = self.provider.shutdown_with_timeout(timeout);
    }
}

/// One stage of a turn for its span: its name, the provider that ran it, its start as an offset
/// from the end of user speech, and how long it took.
pub(crate) struct Stage<'a> {
    pub name: &'static str,
    pub provider: Option<&'a str>,
    pub offset: Duration,
    pub took: Duration,
}

/// The span of one session; ended by [`SessionSpan::end`].
pub(crate) struct SessionSpan {
    tracer: SdkTracer,
    cx: Context,
}

impl SessionSpan {
    /// A played turn: its `turn` span from `speech_end` for `voice_to_voice`, child of the
    /// session span, and a child span per stage.
    pub(crate) fn turn(
        &self,
        number: u32,
        speech_end: SystemTime,
        voice_to_voice: Duration,
        stages: &[Stage<'_>],
    ) {
        let turn = self
            .tracer
            .span_builder("turn")
            .with_start_time(speech_end)
            .with_attributes([KeyValue::new("turn.number", i64::from(number))])
            .start_with_context(&self.tracer, &self.cx);
        let turn = self.cx.with_span(turn);
        for stage in stages {
            let start = speech_end + stage.offset;
            let mut builder = self.tracer.span_builder(stage.name).with_start_time(start);
            if let Some(provider) = stage.provider {
                builder = builder.with_attributes([KeyValue::new("provider", provider.to_owned())]);
            }
            builder
                .start_with_context(&self.tracer, &turn)
                .end_with_timestamp(start + stage.took);
        }
        turn.span().end_with_timestamp(speech_end + voice_to_voice);
    }

    /// Ends the session span now with its counts.
    pub(crate) fn end(&self, turns: i64, errors: i64) {
        let span = self.cx.span();
        span.set_attributes([
            KeyValue::new("session.turns", turns),
            KeyValue::new("session.errors", errors),
        ]);
        span.end();
    }
}

/// Bounds the spans waiting for export to [`MAX_PENDING_SPANS`] in front of the SDK's batch
/// processor (whose own count of what it drops is not readable), counting what it drops.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    counters: Arc<ExportCounters>,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // Pending spans leave the count when the exporter takes them (`otlp::Counted`), so the
        // batch processor's queue, of the same size, never overflows.
        let pending = &self.counters.spans_pending;
        if pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING_SPANS {
            pending.fetch_sub(1, Ordering::Relaxed);
            self.counters.spans_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
