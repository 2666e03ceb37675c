//! Transports: how a session's audio reaches the engine and leaves it. A transport holds the
//! edge of the session's rings ([`edge`]) — it produces into the input ring and consumes the out
//! ring, exactly like a host does — and the realtime loop does not know which one feeds it.
//!
//! - `host`: the C calls (`process_audio` / `read_audio`), [`host`].
//! - media transports ([`MediaTransport`]) carry the audio over a network themselves, on the I/O
//!   runtime: [`livekit`] joins a LiveKit room as the agent participant. They share the media
//!   edge ([`media`]: Opus, jitter buffer).

pub mod edge;
pub mod host;
pub mod livekit;
pub mod media;

use std::future::Future;
use std::pin::Pin;

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
