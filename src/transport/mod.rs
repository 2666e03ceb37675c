//! Transports: how a session's audio reaches the engine and leaves it. A transport holds the
//! edge of the session's rings ([`edge`]) — it produces into the input ring and consumes the out
//! ring, exactly like a host does — and the realtime loop does not know which one feeds it.
//!
//! - `host`: the C calls (`process_audio` / `read_audio`), [`host`]; or Opus packets through
//!   them (`process_opus` / `read_opus`), [`host_opus`].
//! - media transports ([`MediaTransport`]) carry the audio over a network themselves, on the I/O
//!   runtime: [`livekit`] joins a LiveKit room as the agent participant; [`phone`] takes phone
//!   calls that Twilio or Telnyx stream to it over WebSocket; [`webrtc`] takes browsers' direct
//!   WebRTC calls (Pipecat's `POST /api/offer`). They share the media edge ([`media`]: Opus,
//!   jitter buffer, the str0m peer connection, G.711); listening ones accept connections with
//!   an [`acceptor`] and pair a call with its session through [`pending`].

pub mod acceptor;
pub mod cpu_load;
pub mod edge;
pub mod host;
pub mod host_opus;
pub mod livekit;
pub mod media;
pub mod pending;
pub mod phone;
pub mod webrtc;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::event::Event;
use edge::{EdgeReader, EdgeWriter};

/// The transport of sessions whose audio comes through the host's calls.
pub const HOST: &str = "host";

/// A boxed, sendable future (what a media transport's connection returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A transport that carries a session's audio over a network by itself (a LiveKit room, a
/// browser, a phone). One per backend; it connects each session that names it.
pub trait MediaTransport: Send + Sync {
    /// The session `transport` value that selects it (`"webrtc"`, …).
    fn name(&self) -> &str;
    /// Who errors are attributed to (`"livekit"`): the backend kind that owns the transport.
    fn provider_name(&self) -> &str;
    /// The rate the session's audio arrives and leaves at (the session's input and output rate).
    fn sample_rate(&self) -> u32;
    /// `VB_ERR_INVALID_CONFIG` naming the key when a session's settings cannot work with this
    /// transport (a LiveKit session without a `room`, say). Called before the session is made.
    fn check_session(&self, session: &SessionConfig) -> Result<()>;
    /// Connects one session: resolves once the session is reachable (joined the room) or could
    /// not be (the error `vb_session_start` returns), and keeps carrying its audio on the I/O
    /// runtime until [`MediaLink::close`] or until the peer goes away (then it reports).
    fn connect(
        &self,
        session: &SessionConfig,
        edge: MediaEdge,
    ) -> BoxFuture<'static, Result<MediaLink>>;
    /// Starts taking calls that arrive by themselves, when the backend is configured to (a
    /// LiveKit worker): each becomes a session through `arrivals`. `Ok(None)` when the transport
    /// only makes the calls sessions ask for (the default). Blocks until listening or failed
    /// (the error `vb_backend_start` returns); not on the I/O runtime.
    fn listen(
        &self,
        arrivals: Arc<dyn Arrivals>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Option<Box<dyn Listener>>> {
        let _ = (arrivals, runtime);
        Ok(None)
    }
}

/// Where a listening transport brings the sessions that arrive by themselves (the backend).
pub trait Arrivals: Send + Sync {
    /// Whether a host takes such sessions at all (a worker that nobody would serve refuses
    /// every job).
    fn accepting(&self) -> bool;
    /// Opens a session from `config`, hands it to the host with `info` (a JSON object describing
    /// the call) and starts it once the host took it. Blocks until the session has joined its
    /// call or failed to: call it from a blocking thread (`spawn_blocking`), never from an async
    /// task. The error is the host's refusal or why the session could not start.
    fn arrive(&self, config: SessionConfig, info: serde_json::Value) -> Result<Arc<dyn Arrived>>;
    /// Sessions of the backend not yet stopped (all of them, not only those that arrived).
    fn active_sessions(&self) -> u32;
}

/// A session that arrived, as its listener follows it.
pub trait Arrived: Send + Sync {
    /// The session's id.
    fn id(&self) -> String;
    /// Whether the session has stopped (the peer left, the host stopped it, or it failed).
    fn is_over(&self) -> bool;
    /// Stops the session (the server ended the call). Blocks: a blocking thread only.
    fn end(&self);
}

/// A transport taking calls for a backend (a LiveKit worker registered for jobs), while the
/// backend runs. Any thread but the I/O runtime's.
pub trait Listener: Send + Sync {
    /// Takes no new calls from now on (the server is told the worker is full); calls under way
    /// go on.
    fn drain(&self);
    /// Whether calls taken are still under way.
    fn busy(&self) -> bool;
    /// Stops listening (unregisters) and waits briefly for that; calls under way are the
    /// backend's to stop.
    fn stop(&self);
    /// The address it takes calls on, when it listens on a socket (the phone server; useful when
    /// it was configured with port 0). Default: none.
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }
    /// Whether a conversation whose last session had `config` is this listener's to bring back
    /// (a LiveKit worker: a LiveKit room). Default: none is.
    fn can_recover(&self, config: &SessionConfig) -> bool {
        let _ = config;
        false
    }
    /// Brings back conversation `id`, whose process died while its last session (`config`) was
    /// under way: sees whether anyone is left to talk to and, if so, has the call come to a
    /// listening process again (LiveKit: an explicit dispatch to the room; the server picks the
    /// worker, whose session goes on with the conversation). Blocking: on the backend's recovery
    /// thread.
    fn recover(&self, id: &str, config: &SessionConfig) -> Result<Recovered> {
        let _ = (id, config);
        Ok(Recovered::NotYet(
            "this transport brings no conversation back".into(),
        ))
    }
}

/// What [`Listener::recover`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The call was placed again (how, e.g. the dispatch id).
    Dispatched(String),
    /// Nobody is left to talk to (why): the conversation is over.
    Over(String),
    /// Not now (why): try again later.
    NotYet(String),
}

/// What a media transport gets of one session.
pub struct MediaEdge {
    /// User audio into the session, at [`MediaTransport::sample_rate`].
    pub writer: EdgeWriter,
    /// The agent's audio out of the session, at the same rate.
    pub reader: EdgeReader,
    /// A copy of what the transport played, for `vb_session_read_audio`: what does not fit (a
    /// host that does not read it) is dropped, as nobody listens.
    pub monitor: rtrb::Producer<i16>,
    /// Every event the session emits, in order (transcripts, replies, states).
    pub events: mpsc::UnboundedReceiver<Event>,
    /// What the transport has to tell the session.
    pub news: mpsc::UnboundedSender<TransportNews>,
    /// The backend's counters (packets received, lost, concealed go to health).
    pub counters: std::sync::Arc<crate::rt::shared::EngineCounters>,
}

/// What a media transport tells its session.
#[derive(Debug)]
pub enum TransportNews {
    /// Something went wrong and the session goes on (a connection lost and being resumed, a
    /// message that did not parse).
    Error(Error),
    /// The caller pressed a key (a phone call's DTMF): `0`–`9`, `*`, `#`, `A`–`D`.
    Dtmf(String),
    /// The conversation is over: the peer left (`None`) or the transport failed for good.
    Ended {
        /// Why, for the host (`"livekit: user 'u' left room 'r'"`).
        reason: String,
        /// The failure, when it was one.
        error: Option<Error>,
    },
}

/// A connected session's transport: closes it (leaving the room) when closed or dropped.
pub struct MediaLink {
    close: Option<tokio::sync::oneshot::Sender<()>>,
    /// Disconnected once the transport's task has ended.
    done: crossbeam_channel::Receiver<()>,
}

impl MediaLink {
    /// A link to a task that ends when `close` fires and drops the sender of `done` as it ends.
    pub fn new(
        close: tokio::sync::oneshot::Sender<()>,
        done: crossbeam_channel::Receiver<()>,
    ) -> Self {
        MediaLink {
            close: Some(close),
            done,
        }
    }

    /// Asks the transport to leave and waits up to `timeout` for its task to end. Any thread
    /// but the I/O runtime's.
    pub fn close(mut self, timeout: std::time::Duration) {
        if let Some(close) = self.close.take() {
            let _ = close.send(());
        }
        let _ = self.done.recv_timeout(timeout);
    }
}

impl Drop for MediaLink {
    fn drop(&mut self) {
        if let Some(close) = self.close.take() {
            let _ = close.send(());
        }
    }
}
