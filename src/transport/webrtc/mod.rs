//! Direct WebRTC, no SFU: browsers (or any WebRTC peer) call the `local` backend themselves. An
//! HTTP signalling server takes offers in the shape of Pipecat's SmallWebRTC runner
//! (`POST /api/offer`); each new offer becomes a session that arrives by itself (handed to the
//! host's `VbIncoming` hook), with one str0m peer connection carrying Opus both ways and the
//! session's events going back as RTVI messages on the client's data channel.
//!
//! | file | what | runs on |
//! |---|---|---|
//! | [`settings`] | `provider_config.webrtc` of the `local` backend: address, page, timeouts | the thread making the backend |
//! | [`offer`] | the signalling JSON (Pipecat's `SmallWebRTCRequest`), parsed and built | any |
//! | [`server`] | the listening socket: accepts, drains, stops | I/O runtime; `stop` any other thread |
//! | [`signal`] | one HTTP request: a new call, a renegotiation, candidates, the page | I/O runtime |
//! | [`live`] | calls under way by `pc_id`, for renegotiations | any |
//! | [`call`] | one call with its session: audio both ways at 20 ms, RTVI, restarts | I/O runtime |
//! | [`rtvi`] | the session's events as RTVI messages | the call's task |
//!
//! Calls waiting for their session are paired with it through `connection_token`
//! ([`crate::transport::pending`]), as phone calls are. The session's rate at the edge is Opus's
//! 48 kHz ([`WebRtc::sample_rate`]). Sessions name it with `transport: "webrtc"`; only the
//! server opens them.

pub mod call;
pub mod live;
pub mod offer;
pub mod rtvi;
pub mod server;
pub mod settings;
pub mod signal;

use std::sync::Arc;

use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::transport::media::opus::OPUS_RATE;
use crate::transport::pending::Calls;
use crate::transport::{Arrivals, BoxFuture, Listener, MediaEdge, MediaLink, MediaTransport};
use live::Live;
pub use settings::WebRtcSettings;

/// Who errors are attributed to, and the name in messages.
pub const NAME: &str = "webrtc";
/// The session `transport` value of direct WebRTC calls.
pub const TRANSPORT: &str = "webrtc";

/// The direct WebRTC transport of one backend.
pub struct WebRtc {
    settings: WebRtcSettings,
    calls: Arc<Calls>,
    live: Arc<Live>,
}

impl WebRtc {
    /// The transport for `settings` (its server starts with the backend).
    pub fn new(settings: WebRtcSettings) -> WebRtc {
        WebRtc {
            settings,
            calls: Arc::new(Calls::new(NAME)),
            live: Arc::new(Live::default()),
        }
    }
}

/// The key of the call `session` belongs to.
fn call_key(session: &SessionConfig) -> Option<&str> {
    session.connection_token.as_ref().map(|t| t.expose())
}

impl MediaTransport for WebRtc {
    fn name(&self) -> &str {
        TRANSPORT
    }

    fn provider_name(&self) -> &str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        OPUS_RATE
    }

    fn check_session(&self, session: &SessionConfig) -> Result<()> {
        match call_key(session) {
            Some(key) if self.calls.is_pending(key) => Ok(()),
            _ => Err(Error::invalid_config(format!(
                "transport: '{TRANSPORT}' sessions are opened by the WebRTC server when a browser's offer arrives (VbIncoming); this one names no call waiting for its session"
            ))),
        }
    }

    fn connect(
        &self,
        session: &SessionConfig,
        edge: MediaEdge,
    ) -> BoxFuture<'static, Result<MediaLink>> {
        let attached = match call_key(session) {
            Some(key) => self.calls.attach(key, edge),
            None => Err(Error::invalid_config(format!(
                "transport: '{TRANSPORT}' session without its call"
            ))),
        };
        Box::pin(async move { attached })
    }

    fn listen(
        &self,
        arrivals: Arc<dyn Arrivals>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Option<Box<dyn Listener>>> {
        let server = server::WebRtcServer::start(
            self.settings.clone(),
            self.calls.clone(),
            self.live.clone(),
            arrivals,
            runtime,
        )?;
        Ok(Some(Box::new(server)))
    }
}
