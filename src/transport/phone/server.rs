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

use tokio::sync::watch;

use super::NAME;
use super::settings::PhoneSettings;
use crate::error::Result;
use crate::transport::acceptor::Acceptor;
use crate::transport::pending::Calls;
use crate::transport::{Arrivals, Listener};

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
    acceptor: Acceptor,
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
        let (stopping_tx, stopping) = watch::channel(false);
        let shared = Arc::new(Shared {
            settings,
            calls,
            arrivals,
            draining: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            stopping,
        });
        let accepting = shared.clone();
        let acceptor = Acceptor::start(
            NAME,
            "provider_config.phone.listen",
            address,
            runtime,
            move |stream, peer| {
                tokio::spawn(super::call::serve(stream, peer, accepting.clone()));
            },
            move || {
                let _ = stopping_tx.send(true);
            },
        )?;
        tracing::info!(
            address = %acceptor.local_addr(),
            twilio = shared.settings.twilio_path,
            telnyx = shared.settings.telnyx_path,
            "{NAME}: taking calls"
        );
        Ok(PhoneServer { shared, acceptor })
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
        self.acceptor.stop();
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.acceptor.local_addr())
    }
}
