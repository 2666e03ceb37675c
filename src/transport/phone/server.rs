//! The phone server: a TCP listener on the I/O runtime whose every connection is a call
//! ([`super::call`]), and the backend's handle on it ([`Listener`]).
//!
//! - **Start** (`vb_backend_start`): binds `provider_config.phone.listen` or fails with
//!   `VB_ERR_INVALID_CONFIG` naming the address; then accepts on the I/O runtime.
//! - **Drain** ([`Listener::drain`]): new connections get HTTP 503 instead of the WebSocket
//!   upgrade, and a call that sends `start` now is refused; calls under way go on.
//! - **Stop** ([`Listener::stop`]): closes the listening socket and the connections that have no
//!   session yet; calls with a session end when the backend stops their sessions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::NAME;
use super::settings::PhoneSettings;
use crate::error::{Error, Result};
use crate::transport::pending::Calls;
use crate::transport::{Arrivals, Listener};

/// How long `stop` waits for the accepting task.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// What every call's task shares with the server.
pub struct Shared {
    /// The settings (paths, `start` deadline).
    pub settings: PhoneSettings,
    /// Calls waiting for their session.
    pub calls: Arc<Calls>,
    /// The backend, where calls become sessions.
    pub arrivals: Arc<dyn Arrivals>,
    /// No new calls.
    pub draining: AtomicBool,
    /// Calls from their `start` until they end.
    pub live: AtomicUsize,
    /// Becomes true when the server stops: calls without a session close.
    pub stopping: watch::Receiver<bool>,
}

/// Counts a call as live while it exists.
pub struct LiveCall(Arc<Shared>);

impl LiveCall {
    /// Counts one more live call.
    pub fn new(shared: &Arc<Shared>) -> LiveCall {
        shared.live.fetch_add(1, Ordering::AcqRel);
        LiveCall(shared.clone())
    }
}

impl Drop for LiveCall {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The running server, as the backend holds it. Any thread but the I/O runtime's.
pub struct PhoneServer {
    shared: Arc<Shared>,
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    done: crossbeam_channel::Receiver<()>,
    local_addr: SocketAddr,
}

impl PhoneServer {
    /// Binds the address and starts accepting calls on `runtime`. Blocks only to bind.
    pub fn start(
        settings: PhoneSettings,
        calls: Arc<Calls>,
        arrivals: Arc<dyn Arrivals>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<PhoneServer> {
        let address = settings.listen;
        let cannot = |e: std::io::Error| {
            Error::invalid_config(format!(
                "provider_config.phone.listen: cannot listen on {address}: {e}"
            ))
        };
        let socket = std::net::TcpListener::bind(address).map_err(cannot)?;
        socket.set_nonblocking(true).map_err(cannot)?;
        let local_addr = socket.local_addr().map_err(cannot)?;
        let listener = {
            let _runtime = runtime.enter();
            tokio::net::TcpListener::from_std(socket).map_err(cannot)?
        };
        let (stopping_tx, stopping) = watch::channel(false);
        let shared = Arc::new(Shared {
            settings,
            calls,
            arrivals,
            draining: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            stopping,
        });
        let (stop, stop_rx) = oneshot::channel();
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let accepting = shared.clone();
        runtime.spawn(async move {
            let _done = done_tx;
            accept(listener, accepting, stop_rx).await;
            let _ = stopping_tx.send(true);
        });
        tracing::info!(
            address = %local_addr,
            twilio = shared.settings.twilio_path,
            telnyx = shared.settings.telnyx_path,
            "{NAME}: taking calls"
        );
        Ok(PhoneServer {
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
                    tokio::spawn(super::call::serve(stream, peer, shared.clone()));
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

impl Listener for PhoneServer {
    fn drain(&self) {
        self.shared.draining.store(true, Ordering::Release);
    }

    fn busy(&self) -> bool {
        self.shared.live.load(Ordering::Acquire) > 0
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

impl Drop for PhoneServer {
    fn drop(&mut self) {
        self.stop();
    }
}
