//! The Prometheus text exposition format 0.0.4 on `GET /metrics`: rendering a collection, and a
//! small HTTP/1.1 server on a tokio listener of the backend's I/O runtime.
//!
//! Names: dots become underscores; counters end in `_total`; histograms give `_bucket{le=…}`
//! (cumulative), `_sum` and `_count`; the resource attributes are the labels of `target_info`.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::metrics::{Attributes, Kind, Value};
use super::{Collection, ThroughputWindow};
use crate::error::{Error, Result};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Longest request head read; longer requests are refused.
const MAX_REQUEST_HEAD: usize = 8192;

/// How long a client may take to send its request.
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

/// Serves `GET /metrics` on `listener` until the task is aborted. Each connection gets its own
/// task and a fresh collection; throughput is measured between successive scrapes, from `window`
/// on.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: Arc<super::Shared>,
    window: ThroughputWindow,
) {
    let window = Arc::new(std::sync::Mutex::new(window));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let telemetry = telemetry.clone();
        let window = window.clone();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &telemetry, &window)).await;
        });
    }
}

async fn answer(
    mut stream: tokio::net::TcpStream,
    telemetry: &super::Shared,
    window: &std::sync::Mutex<ThroughputWindow>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = std::str::from_utf8(request_line).unwrap_or("").split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let collection = {
                let mut window = window.lock().unwrap_or_else(|p| p.into_inner());
                telemetry.collect(&mut window)
            };
            ("200 OK", CONTENT_TYPE, render(&collection))
        }
        (_, "/metrics") => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            "metrics are at /metrics\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The exposition of a collection.
pub fn render(collection: &Collection) -> String {
    let mut out = String::new();
    out.push_str("# HELP target_info Attributes of the exporting service\n");
    out.push_str("# TYPE target_info gauge\n");
    let _ = writeln!(out, "target_info{} 1", labels(&collection.resource, None));
    for metric in &collection.metrics {
        let instrument = metric.instrument;
        let base = sanitize(instrument.name);
        let (name, kind) = match instrument.kind {
            Kind::Counter if base.ends_with("_total") => (base, "counter"),
            Kind::Counter => (format!("{base}_total"), "counter"),
            Kind::UpDownCounter | Kind::Gauge => (base, "gauge"),
            Kind::Histogram(_) => (base, "histogram"),
        };
        let help = format!("{} ({})", instrument.description, instrument.unit)
            .replace('\\', "\\\\")
            .replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (attributes, value) in &metric.points {
            match (value, instrument.kind) {
                (Value::Int(v), _) => {
                    let _ = writeln!(out, "{name}{} {v}", labels(attributes, None));
                }
                (Value::Double(v), _) => {
                    let _ = writeln!(out, "{name}{} {v}", labels(attributes, None));
                }
                (Value::Histogram(h), Kind::Histogram(bounds)) => {
                    let mut cumulative = 0;
                    for (i, count) in h.bucket_counts.iter().enumerate() {
                        cumulative += count;
                        let le = bounds.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {cumulative}",
                            labels(attributes, Some(&le))
                        );
                    }
                    let _ = writeln!(out, "{name}_sum{} {}", labels(attributes, None), h.sum);
                    let _ = writeln!(out, "{name}_count{} {}", labels(attributes, None), h.count);
                }
                (Value::Histogram(_), _) => {}
            }
        }
    }
    out
}

/// `{k="v",…}` (with `le` last when given), or nothing without labels.
fn labels(attributes: &Attributes, le: Option<&str>) -> String {
    let mut pairs: Vec<String> = attributes
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", sanitize(k), escape(v)))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// A Prometheus name: every character other than ASCII letters, digits, `_` and `:` becomes `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::{HistogramValue, Instrument, MetricPoints};

    static LATENCY: Instrument = Instrument {
        name: "backend.latency",
        description: "Voice to voice",
        unit: "ms",
        kind: Kind::Histogram(&[100.0, 250.5]),
    };
    static ERRORS: Instrument = Instrument {
        name: "backend.errors.total",
        description: "Errors",
        unit: "1",
        kind: Kind::Counter,
    };
    static DROPPED: Instrument = Instrument {
        name: "backend.frames.dropped",
        description: "Frames lost",
        unit: "{frame}",
        kind: Kind::Counter,
    };

    #[test]
    fn the_exposition_follows_the_text_format() {
        let collection = Collection {
            resource: vec![("service.name", "vb \"one\"".to_owned())],
            start_unix_ns: 1,
            window_start_unix_ns: 1,
            time_unix_ns: 2,
            metrics: vec![
                MetricPoints {
                    instrument: &LATENCY,
                    points: vec![(
                        Vec::new(),
                        Value::Histogram(HistogramValue {
                            bucket_counts: vec![1, 0, 2],
                            count: 3,
                            sum: 912.5,
                            min: 12.5,
                            max: 500.0,
                        }),
                    )],
                },
                MetricPoints {
                    instrument: &ERRORS,
                    points: vec![(
                        vec![
                            ("code", "VB_ERR_PROVIDER".into()),
                            ("provider", "a\\b".into()),
                        ],
                        Value::Int(4),
                    )],
                },
                MetricPoints {
                    instrument: &DROPPED,
                    points: vec![(Vec::new(), Value::Int(7))],
                },
            ],
        };
        assert_eq!(
            render(&collection),
            "# HELP target_info Attributes of the exporting service\n\
             # TYPE target_info gauge\n\
             target_info{service_name=\"vb \\\"one\\\"\"} 1\n\
             # HELP backend_latency Voice to voice (ms)\n\
             # TYPE backend_latency histogram\n\
             backend_latency_bucket{le=\"100\"} 1\n\
             backend_latency_bucket{le=\"250.5\"} 1\n\
             backend_latency_bucket{le=\"+Inf\"} 3\n\
             backend_latency_sum 912.5\n\
             backend_latency_count 3\n\
             # HELP backend_errors_total Errors (1)\n\
             # TYPE backend_errors_total counter\n\
             backend_errors_total{code=\"VB_ERR_PROVIDER\",provider=\"a\\\\b\"} 4\n\
             # HELP backend_frames_dropped_total Frames lost ({frame})\n\
             # TYPE backend_frames_dropped_total counter\n\
             backend_frames_dropped_total 7\n"
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
