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

use super::NAME;
use super::live::Live;
use super::settings::WebRtcSettings;
use crate::error::Result;
use crate::transport::acceptor::Acceptor;
use crate::transport::pending::Calls;
use crate::transport::{Arrivals, Listener};

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
    acceptor: Acceptor,
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
        let shared = Arc::new(Shared {
            settings,
            calls,
            live,
            arrivals,
            draining: AtomicBool::new(false),
        });
        let serving = shared.clone();
        let acceptor = Acceptor::start(
            NAME,
            "provider_config.webrtc.listen",
            address,
            runtime,
            move |stream, peer| {
                let local = stream.local_addr().unwrap_or(address);
                tokio::spawn(serve(stream, local, peer, serving.clone()));
            },
            || {},
        )?;
        tracing::info!(address = %acceptor.local_addr(), "{NAME}: taking calls at POST /api/offer");
        Ok(WebRtcServer { shared, acceptor })
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
        self.acceptor.stop();
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.acceptor.local_addr())
    }
}
