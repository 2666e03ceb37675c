//! The TCP listener of a transport that takes calls (phone media streams, WebRTC signalling):
//! binding its address, the accept loop on the I/O runtime, and stopping it.
//!
//! [`Acceptor::start`] and [`Acceptor::stop`] are called on control threads (the backend's start
//! and stop), never on the I/O runtime: `stop` waits for the accepting task to end. The
//! connection handler runs on the I/O runtime, once per accepted connection.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// How long `stop` waits for the accepting task.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the loop waits after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A listening socket being accepted on the I/O runtime.
pub struct Acceptor {
    name: &'static str,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    done: crossbeam_channel::Receiver<()>,
    local_addr: SocketAddr,
}

impl Acceptor {
    /// Binds `address` (the configuration key `key` names it: a failure is
    /// `VB_ERR_INVALID_CONFIG` naming both) and accepts on `runtime`: each connection, with
    /// `TCP_NODELAY` set, goes to `on_connection` with its peer's address (on the runtime: it
    /// spawns what serves it). `finished` runs on the runtime once accepting has stopped. Blocks
    /// only to bind. `name` is the transport's, for logs.
    pub fn start(
        name: &'static str,
        key: &str,
        address: SocketAddr,
        runtime: &tokio::runtime::Handle,
        on_connection: impl Fn(TcpStream, SocketAddr) + Send + 'static,
        finished: impl FnOnce() + Send + 'static,
    ) -> Result<Acceptor> {
        let cannot = |e: std::io::Error| {
            Error::invalid_config(format!("{key}: cannot listen on {address}: {e}"))
        };
        let socket = std::net::TcpListener::bind(address).map_err(cannot)?;
        socket.set_nonblocking(true).map_err(cannot)?;
        let local_addr = socket.local_addr().map_err(cannot)?;
        let listener = {
            let _runtime = runtime.enter();
            tokio::net::TcpListener::from_std(socket).map_err(cannot)?
        };
        let (stop, stop_rx) = oneshot::channel();
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        runtime.spawn(async move {
            let _done = done_tx;
            accept(name, listener, stop_rx, on_connection).await;
            finished();
        });
        Ok(Acceptor {
            name,
            stop: Mutex::new(Some(stop)),
            done,
            local_addr,
        })
    }

    /// The address it listens on (the port chosen when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Closes the listening socket: ends the accept loop and waits (at most 2 s) until it has
    /// ended. Connections already accepted are their handlers' business. Idempotent.
    pub fn stop(&self) {
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
            let _ = self.done.recv_timeout(STOP_TIMEOUT);
            tracing::info!(address = %self.local_addr, "{}: no longer taking calls", self.name);
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept(
    name: &'static str,
    listener: tokio::net::TcpListener,
    mut stop: oneshot::Receiver<()>,
    on_connection: impl Fn(TcpStream, SocketAddr),
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    on_connection(stream, peer);
                }
                Err(e) => {
                    // Out of file descriptors, say: the calls under way go on; try again soon.
                    tracing::warn!("{name}: accepting a connection failed: {e}");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
}
