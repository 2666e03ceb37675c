//! What the local vendor-protocol WebSocket servers share: a thread of their own running its own
//! tokio runtime, a listener on 127.0.0.1:0, one task per connection, records of what each
//! connection saw (for the tests' assertions), and a clean stop when the server is dropped.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

/// The longest a test waits for a server to have seen something.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A server's records, one per connection, in the order connections arrived.
pub struct Records<R> {
    list: Mutex<Vec<R>>,
    changed: Condvar,
}

impl<R: Clone + std::fmt::Debug> Records<R> {
    /// No records yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Records {
            list: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        })
    }

    /// Adds a record; returns its index.
    pub fn push(&self, record: R) -> usize {
        let mut list = self.list.lock().unwrap();
        list.push(record);
        self.changed.notify_all();
        list.len() - 1
    }

    /// Changes record `index`.
    pub fn update(&self, index: usize, change: impl FnOnce(&mut R)) {
        let mut list = self.list.lock().unwrap();
        change(&mut list[index]);
        self.changed.notify_all();
    }

    /// A copy of every record.
    pub fn snapshot(&self) -> Vec<R> {
        self.list.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the records and returns them; panics after [`PATIENCE`].
    pub fn wait_for(&self, mut done: impl FnMut(&[R]) -> bool) -> Vec<R> {
        let deadline = Instant::now() + PATIENCE;
        let mut list = self.list.lock().unwrap();
        while !done(&list) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the server never saw it; records: {list:#?}"
            );
            list = self.changed.wait_timeout(list, left).unwrap().0;
        }
        list.clone()
    }
}

/// A server thread: its runtime serves every accepted connection with `serve` until dropped.
pub struct ServerThread {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Binds 127.0.0.1:0 and serves each connection with `serve` on a thread named `name`.
    pub fn start<F, Fut>(name: &str, serve: F) -> ServerThread
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("{name}-rt"))
            .enable_all()
            .build()
            .expect("server runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => {
                                    tokio::spawn(serve(stream));
                                }
                                Err(_) => break,
                            },
                        }
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("server thread");
        ServerThread {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:<port>`: the `base_url` clients are configured with.
    pub fn base_url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a handshake callback learned about the request.
#[derive(Debug, Clone, Default)]
pub struct HandshakeInfo {
    /// The request path.
    pub path: String,
    /// The query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The request headers (names lower-case).
    pub headers: Vec<(String, String)>,
    /// The HTTP status of a refusal.
    pub refused: Option<u16>,
}

impl HandshakeInfo {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Accepts a WebSocket on `stream` after `check` approved the request; a refusal is answered
/// with its HTTP status, headers and body. `None` when the handshake did not complete.
// The callback's error type is tungstenite's (an HTTP response), large or not.
#[allow(clippy::result_large_err)]
pub async fn accept(
    stream: TcpStream,
    check: impl FnOnce(&HandshakeInfo) -> Result<(), Refusal> + Unpin,
) -> (HandshakeInfo, Option<WebSocketStream<TcpStream>>) {
    let mut info = HandshakeInfo::default();
    let callback = |request: &Request, response: Response| {
        info.path = request.uri().path().to_owned();
        info.query = parse_query(request.uri().query().unwrap_or_default());
        info.headers = request
            .headers()
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_ascii_lowercase(), value)
            })
            .collect();
        match check(&info) {
            Ok(()) => Ok(response),
            Err(refusal) => {
                info.refused = Some(refusal.status);
                Err(refusal.response())
            }
        }
    };
    let socket = tokio_tungstenite::accept_hdr_async(stream, callback)
        .await
        .ok();
    (info, socket)
}

/// An HTTP answer refusing a WebSocket handshake.
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: String,
}

impl Refusal {
    fn response(self) -> ErrorResponse {
        let mut response = ErrorResponse::new(Some(self.body));
        *response.status_mut() = StatusCode::from_u16(self.status).expect("HTTP status");
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// `a=1&b=x%20y` → pairs, percent- and plus-decoded.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Ends a connection the way a crashing server or a broken network does: no Close frame. The
/// write side is shut (the peer reads the end of the stream after everything already sent), then
/// whatever the peer still sends is read and dropped until it hangs up, so that no unread data
/// turns the close into a reset that could discard what the peer has not read yet.
pub async fn drop_connection(mut socket: WebSocketStream<TcpStream>) {
    let tcp = socket.get_mut();
    let _ = tcp.shutdown().await;
    let mut buf = [0u8; 4096];
    let drain = async { while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(PATIENCE, drain).await;
}

/// A random identifier in UUID v4 form (request ids).
pub fn uuid() -> String {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(1u8);
    let b = RandomState::new().hash_one(2u8);
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}
