//! OTLP over HTTP with protobuf bodies, through `opentelemetry-otlp`: the endpoint's validation,
//! the exporters of metrics and spans, the HTTP client they post with, and the counting of
//! failed exports.
//!
//! The HTTP client is the engine's own reqwest 0.12 (`opentelemetry-otlp` 0.33's `reqwest-client`
//! feature would compile reqwest 0.13, a second HTTP stack). The SDK calls exporters on its own
//! threads (the periodic metric reader's, the batch span processor's) and blocks on them there;
//! each request is therefore spawned onto the backend's I/O runtime, where reqwest's connections
//! live, and awaited from that thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::error::{Error, Result};
use crate::net::redact_url;

/// How long one export request may take before it counts as failed.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer read from a collector (it sends a small `Export…ServiceResponse`).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Which kind of data a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `/v1/metrics`.
    Metrics,
    /// `/v1/traces`.
    Traces,
}

impl Signal {
    /// The name in the `signal` attribute of the export failure counter.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }
}

/// The two URLs of a validated `telemetry.otlp_endpoint`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    metrics_url: String,
    traces_url: String,
}

impl Endpoint {
    /// `endpoint` (`http(s)://host[:port][/base]`) with `/v1/metrics` and `/v1/traces` appended;
    /// anything else is `VB_ERR_INVALID_CONFIG` naming `telemetry.otlp_endpoint` (without the
    /// URL's user info).
    pub fn parse(endpoint: &str) -> Result<Self> {
        let invalid = |why: &str| {
            Error::invalid_config(format!(
                "telemetry.otlp_endpoint: '{}' {why}",
                redact_url(endpoint)
            ))
        };
        let url = reqwest::Url::parse(endpoint).map_err(|_| invalid("is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid("is not an http:// or https:// URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or fragment"));
        }
        let base = endpoint.trim_end_matches('/');
        Ok(Endpoint {
            metrics_url: format!("{base}/v1/metrics"),
            traces_url: format!("{base}/v1/traces"),
        })
    }
}

/// What OTLP counts about itself; read by the observable instruments. Any thread.
#[derive(Debug, Default)]
pub struct ExportCounters {
    /// Failed exports: metrics, traces.
    failed: [AtomicU64; 2],
    /// Finished spans dropped because [`super::trace::MAX_PENDING_SPANS`] were waiting.
    pub spans_dropped: AtomicU64,
    /// Finished spans handed to the batch processor and not yet given to the exporter.
    pub spans_pending: AtomicUsize,
}

impl ExportCounters {
    /// Failed exports of `signal` so far.
    pub fn failures(&self, signal: Signal) -> u64 {
        self.failed[signal as usize].load(Ordering::Relaxed)
    }

    fn failed(&self, signal: Signal, error: &dyn std::fmt::Display) {
        let failures = self.failed[signal as usize].fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            target: "voicebackend::telemetry",
            signal = signal.name(),
            failures,
            "OTLP export failed: {error}"
        );
    }
}

/// reqwest 0.12 as the exporters' HTTP client, its requests run on the backend's I/O runtime.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeHttpClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl RuntimeHttpClient {
    /// A client with [`EXPORT_TIMEOUT`] per request, running on `runtime`.
    pub(crate) fn new(runtime: tokio::runtime::Handle) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| {
                Error::internal(format!("telemetry: could not create the HTTP client: {e}"))
            })?;
        Ok(RuntimeHttpClient { http, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> std::result::Result<http::Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let http = self.http.clone();
        let exchange = async move {
            let mut response = http.execute(request).await?;
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(HttpError::from("the collector's answer is too large"));
                }
                body.extend_from_slice(&chunk);
            }
            let mut answer = http::Response::builder()
                .status(status)
                .body(Bytes::from(body))?;
            *answer.headers_mut() = headers;
            Ok::<_, HttpError>(answer)
        };
        // A runtime that is shutting down cancels the task: the export failed.
        self.runtime.spawn(exchange).await?
    }
}

/// The OTLP metric exporter for `endpoint` over `client`, counting its failures in `counters`.
pub(crate) fn metric_exporter(
    endpoint: &Endpoint,
    client: RuntimeHttpClient,
    counters: Arc<ExportCounters>,
) -> Result<Counted<opentelemetry_otlp::MetricExporter>> {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.metrics_url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
        .with_temporality(Temporality::Cumulative)
        .build()
        .map_err(|e| Error::internal(format!("telemetry: the OTLP metric exporter: {e}")))?;
    Ok(Counted {
        inner: exporter,
        counters,
    })
}

/// The OTLP span exporter for `endpoint` over `client`, counting its failures in `counters`.
pub(crate) fn span_exporter(
    endpoint: &Endpoint,
    client: RuntimeHttpClient,
    counters: Arc<ExportCounters>,
) -> Result<Counted<opentelemetry_otlp::SpanExporter>> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.traces_url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
        .build()
        .map_err(|e| Error::internal(format!("telemetry: the OTLP span exporter: {e}")))?;
    Ok(Counted {
        inner: exporter,
        counters,
    })
}

/// An exporter whose failed exports are counted (and logged). One request per export: a failed
/// one is not retried, the next export carries the cumulative metrics again.
#[derive(Debug)]
pub(crate) struct Counted<E> {
    inner: E,
    counters: Arc<ExportCounters>,
}

impl PushMetricExporter for Counted<opentelemetry_otlp::MetricExporter> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        if let Err(e) = &result {
            self.counters.failed(Signal::Metrics, e);
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

impl SpanExporter for Counted<opentelemetry_otlp::SpanExporter> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.counters
            .spans_pending
            .fetch_sub(batch.len(), Ordering::Relaxed);
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            self.counters.failed(Signal::Traces, e);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        for bad in [
            "localhost:4318",
            "ftp://127.0.0.1",
            "http://",
            "http://h/?k=secret",
        ] {
            let e = Endpoint::parse(bad).expect_err(bad);
            assert_eq!(e.status(), crate::VbStatus::VB_ERR_INVALID_CONFIG);
            assert!(e.message().starts_with("telemetry.otlp_endpoint: "), "{e}");
            assert!(!e.message().contains("secret"), "{e}");
        }
        let endpoint = Endpoint::parse("http://127.0.0.1:4318/otel/").unwrap();
        assert_eq!(
            endpoint.metrics_url,
            "http://127.0.0.1:4318/otel/v1/metrics"
        );
        assert_eq!(endpoint.traces_url, "http://127.0.0.1:4318/otel/v1/traces");
    }
}
