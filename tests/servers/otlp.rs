//! A local OTLP/HTTP receiver (what an OpenTelemetry collector does on port 4318) that decodes
//! with the official `opentelemetry-proto` types, and a Prometheus scraper: how tests read back
//! what the engine exports.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// The longest the receiver waits for a request's bytes.
const PATIENCE: Duration = Duration::from_secs(30);

/// One request the receiver got.
pub struct Posted {
    /// Request path, e.g. `/v1/metrics`.
    pub path: String,
    /// The Content-Type header.
    pub content_type: String,
    /// The raw body.
    pub body: Vec<u8>,
}

/// An OTLP/HTTP receiver on 127.0.0.1 that answers every request with 200 and keeps it. Stops
/// when dropped.
pub struct OtlpReceiver {
    address: SocketAddr,
    posted: Arc<Mutex<Vec<Posted>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Listens on a free loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let posted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (posted, stop) = (posted.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let posted = posted.clone();
                    std::thread::spawn(move || {
                        let Some(mut stream) = stream.ok() else {
                            return;
                        };
                        if let Some(request) = read_request(&mut stream) {
                            // Kept before the answer: whoever got a 200 finds it here.
                            posted.lock().unwrap().push(request);
                            let _ = stream.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            );
                        }
                    });
                }
            })
        };
        OtlpReceiver {
            address,
            posted,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, for `telemetry.otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Bodies posted to `path`, in arrival order (every request must be OTLP protobuf).
    pub fn bodies(&self, path: &str) -> Vec<Vec<u8>> {
        let posted = self.posted.lock().unwrap();
        for p in posted.iter() {
            assert_eq!(p.content_type, "application/x-protobuf", "{}", p.path);
            assert!(
                ["/v1/metrics", "/v1/traces"].contains(&p.path.as_str()),
                "{}",
                p.path
            );
        }
        posted
            .iter()
            .filter(|p| p.path == path)
            .map(|p| p.body.clone())
            .collect()
    }

    /// Every metrics export so far, in arrival order.
    pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.bodies("/v1/metrics")
            .iter()
            .map(|b| ExportMetricsServiceRequest::decode(&b[..]).expect("a metrics request"))
            .collect()
    }

    /// Every span exported so far.
    pub fn spans(&self) -> Vec<Span> {
        self.bodies("/v1/traces")
            .iter()
            .map(|b| ExportTraceServiceRequest::decode(&b[..]).expect("a trace request"))
            .flat_map(|r| r.resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.address); // wakes the accept loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one HTTP/1.1 POST with a Content-Length body.
fn read_request(stream: &mut TcpStream) -> Option<Posted> {
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let length: usize = header("content-length")?.parse().ok()?;
    while data.len() < head_end + length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let mut request_line = head.lines().next()?.split(' ');
    assert_eq!(request_line.next(), Some("POST"));
    let path = request_line.next()?.to_owned();
    Some(Posted {
        path,
        content_type: header("content-type").unwrap_or_default(),
        body: data[head_end..head_end + length].to_vec(),
    })
}

/// `GET /metrics` from the Prometheus endpoint: (status line, content type, body).
pub fn scrape(address: SocketAddr) -> (String, String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or_default();
    (
        head.lines().next().unwrap().to_owned(),
        content_type.to_owned(),
        body.to_owned(),
    )
}
