//! The Prometheus endpoint: `opentelemetry-prometheus` turns the Prometheus pipeline's metrics
//! into the `prometheus` crate's families, its text encoder writes the exposition format 0.0.4,
//! and hyper's HTTP/1.1 server (hyper is in the tree already, under reqwest) answers
//! `GET /metrics` on a tokio listener of the backend's I/O runtime.
//!
//! Names: dots become underscores; counters end in `_total` (`backend.errors.total` is renamed
//! `backend.errors` in this pipeline so that it is not doubled); histograms give
//! `_bucket{le=…}` (cumulative), `_sum` and `_count`; units are not appended; the resource
//! attributes are the labels of `target_info`.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use opentelemetry_prometheus::PrometheusExporter;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::error::{Error, Result};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a client may take for one request and its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `configured` (`host:port`; `:port` alone means `127.0.0.1:port`). Failure is
/// `VB_ERR_INVALID_CONFIG` naming the field and the address. Blocking (name resolution); runs on
/// the thread that starts the backend.
pub fn bind(configured: &str) -> Result<TcpListener> {
    let address = if configured.starts_with(':') {
        format!("127.0.0.1{configured}")
    } else {
        configured.to_owned()
    };
    let fail = |why: String| {
        Error::invalid_config(format!(
            "telemetry.prometheus_addr: cannot listen on '{configured}': {why}"
        ))
    };
    let candidates: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .collect();
    let listener = TcpListener::bind(&candidates[..]).map_err(|e| fail(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| fail(e.to_string()))?;
    Ok(listener)
}

/// The Prometheus reader of a pipeline and the registry it fills at each scrape.
pub(crate) fn exporter() -> Result<(PrometheusExporter, Registry)> {
    let registry = Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_units()
        .scope_info_enabled(false)
        .build()
        .map_err(|e| Error::internal(format!("telemetry: the Prometheus exporter: {e}")))?;
    Ok((exporter, registry))
}

/// Serves `GET /metrics` from `registry` on `listener` until the task is aborted. Each
/// connection gets its own task, one request and a fresh collection (throughput is measured
/// between successive scrapes).
pub(crate) async fn serve(listener: tokio::net::TcpListener, registry: Registry) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let answer = hyper::service::service_fn(move |request| {
                let answer = respond(&request, &registry);
                async move { Ok::<_, Infallible>(answer) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), answer);
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, connection).await;
        });
    }
}

fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut body = Vec::new();
            match TextEncoder::new().encode(&registry.gather(), &mut body) {
                Ok(()) => (StatusCode::OK, CONTENT_TYPE, body),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("{e}\n").into_bytes(),
                ),
            }
        }
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"only GET\n".to_vec(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            b"metrics are at /metrics\n".to_vec(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry::KeyValue;
    use opentelemetry_sdk::Resource;

    use super::*;
    use crate::event::VbTurnMetrics;
    use crate::telemetry::metrics::{Observed, Pipeline};
    use crate::telemetry::{EngineTotals, TotalsSource};

    #[test]
    fn the_exposition_keeps_the_metric_names() {
        let (reader, registry) = exporter().unwrap();
        let totals: TotalsSource = Arc::new(|| EngineTotals {
            frames_dropped: 7,
            ..EngineTotals::default()
        });
        let resource = Resource::builder_empty()
            .with_attributes([KeyValue::new("service.name", "vb \"one\"")])
            .build();
        let observed = Observed {
            totals,
            export: None,
        };
        let pipeline = Pipeline::new(reader, resource, observed, true);
        let instruments = pipeline.instruments();
        instruments.error(crate::VbStatus::VB_ERR_PROVIDER, "a\\b");
        let turn = VbTurnMetrics {
            stt_final_us: 100_000,
            agent_first_text_us: 0,
            tts_first_audio_us: 350_000,
            first_output_audio_us: 912_500,
        };
        instruments.turn(&turn, &[Some(100_000), None, Some(250_000)]);
        let mut body = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut body)
            .unwrap();
        let text = String::from_utf8(body).unwrap();
        for line in [
            "target_info{service_name=\"vb \\\"one\\\"\"} 1",
            "# TYPE backend_errors_total counter",
            "backend_errors_total{code=\"VB_ERR_PROVIDER\",provider=\"a\\\\b\"} 1",
            "backend_frames_dropped_total 7",
            "backend_deadline_misses_total 0",
            "backend_sessions_active 0",
            "# TYPE backend_latency histogram",
            "backend_latency_bucket{le=\"750\"} 0",
            "backend_latency_bucket{le=\"1000\"} 1",
            "backend_latency_bucket{le=\"+Inf\"} 1",
            "backend_latency_sum 912.5",
            "backend_latency_count 1",
            "backend_stt_latency_sum 100",
            "backend_tts_latency_sum 250",
            "# TYPE backend_throughput gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no '{line}' in:\n{text}");
        }
        assert!(
            !text.contains("backend_agent_latency"),
            "a histogram appears with its first value"
        );
        assert!(!text.contains("_total_total"), "{text}");
        assert!(!text.contains("milliseconds"), "no unit suffixes: {text}");
        assert!(!text.contains("otel_scope"), "no scope labels: {text}");
        assert!(
            !text.contains("backend_telemetry"),
            "no OTLP metrics without OTLP"
        );
    }

    #[test]
    fn a_bare_port_listens_on_loopback_and_a_taken_address_names_itself() {
        let listener = bind(":0").unwrap();
        let address = listener.local_addr().unwrap();
        assert!(address.ip().is_loopback());
        let taken = address.to_string();
        let e = bind(&taken).unwrap_err();
        assert_eq!(e.status(), crate::VbStatus::VB_ERR_INVALID_CONFIG);
        assert!(
            e.message().starts_with(&format!(
                "telemetry.prometheus_addr: cannot listen on '{taken}'"
            )),
            "{e}"
        );
        assert!(bind("no-port").is_err());
    }
}
