//! The signalling server: an HTTP/1.1 listener (hyper) on the I/O runtime, and the backend's
//! handle on it ([`Listener`]).
//!
//! - **Start** (`vb_backend_start`): binds `provider_config.webrtc.listen` or fails with
//!   `VB_ERR_INVALID_CONFIG` naming the address; then accepts on the I/O runtime. Each
//!   connection is served by hyper; each request by [`super::signal::respond`].
//! - **Drain** ([`Listener::drain`]): new offers get 503; calls under way go on (their
//!   renegotiations too).
//! - **Stop** ([`Listener::stop`]): closes the listening socket; calls with a session end when
//!   the backend stops their sessions.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::NAME;
use super::live::Live;
use super::settings::WebRtcSettings;
use crate::error::{Error, Result};
use crate::transport::pending::Calls;
use crate::transport::{Arrivals, Listener};

/// How long `stop` waits for the accepting task.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client may take for one request and its answer (an offer waits for the host's
/// decision and the session's start).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every request shares with the server.
pub struct Shared {
    /// The settings.
    pub settings: WebRtcSettings,
    /// Calls waiting for their session.
    pub calls: Arc<Calls>,
    /// Calls under way, by `pc_id`.
    pub live: Arc<Live>,
    /// The backend, where calls become sessions.
    pub arrivals: Arc<dyn Arrivals>,
    /// No new calls.
    pub draining: AtomicBool,
}

/// The running server, as the backend holds it. Any thread but the I/O runtime's.
pub struct WebRtcServer {
    shared: Arc<Shared>,
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    done: crossbeam_channel::Receiver<()>,
    local_addr: SocketAddr,
}

impl WebRtcServer {
    /// Binds the address and starts serving on `runtime`. Blocks only to bind.
    pub fn start(
        settings: WebRtcSettings,
        calls: Arc<Calls>,
        live: Arc<Live>,
        arrivals: Arc<dyn Arrivals>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<WebRtcServer> {
        let address = settings.listen;
        let cannot = |e: std::io::Error| {
            Error::invalid_config(format!(
                "provider_config.webrtc.listen: cannot listen on {address}: {e}"
            ))
        };
        let socket = std::net::TcpListener::bind(address).map_err(cannot)?;
        socket.set_nonblocking(true).map_err(cannot)?;
        let local_addr = socket.local_addr().map_err(cannot)?;
        let listener = {
            let _runtime = runtime.enter();
            tokio::net::TcpListener::from_std(socket).map_err(cannot)?
        };
        let shared = Arc::new(Shared {
            settings,
            calls,
            live,
            arrivals,
            draining: AtomicBool::new(false),
        });
        let (stop, stop_rx) = oneshot::channel();
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let serving = shared.clone();
        runtime.spawn(async move {
            let _done = done_tx;
            accept(listener, serving, stop_rx).await;
        });
        tracing::info!(address = %local_addr, "{NAME}: taking calls at POST /api/offer");
        Ok(WebRtcServer {
            shared,
            stop: std::sync::Mutex::new(Some(stop)),
            done,
            local_addr,
        })
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap_or(shared.settings.listen);
                    tokio::spawn(serve(stream, local, peer, shared.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, say: the calls under way go on; try again soon.
                    tracing::warn!("{NAME}: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves one HTTP connection: one request (no keep-alive), within [`REQUEST_TIMEOUT`].
async fn serve(
    stream: tokio::net::TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    shared: Arc<Shared>,
) {
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(super::signal::respond(request, local, peer, shared).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, connection).await;
}

impl Listener for WebRtcServer {
    fn drain(&self) {
        self.shared.draining.store(true, Ordering::Release);
    }

    fn busy(&self) -> bool {
        self.shared.live.count() > 0
    }

    fn stop(&self) {
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
            let _ = self.done.recv_timeout(STOP_TIMEOUT);
            tracing::info!(address = %self.local_addr, "{NAME}: no longer taking calls");
        }
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.local_addr)
    }
}

impl Drop for WebRtcServer {
    fn drop(&mut self) {
        self.stop();
    }
}
