//! Phone calls: a WebSocket server that Twilio Media Streams and Telnyx media streaming connect
//! to, one connection per call. Each call that sends `start` becomes a session that arrives by
//! itself (handed to the host's `VbIncoming` hook); its audio is G.711 at 8 kHz both ways.
//!
//! | file | what |
//! |---|---|
//! | [`settings`] | `provider_config.phone` of the `local` backend: address, paths |
//! | [`protocol`] | the two vendors' JSON messages, parsed and built |
//! | [`server`] | the listening socket: accepts, routes by path, drains, stops |
//! | [`call`] | one call until its session starts: handshake, `start`, the host's decision |
//! | [`stream`] | one call with its session: audio both ways at 20 ms, marks, `clear`, DTMF |
//!
//! The session's rate is G.711's 8000 Hz at the edge ([`Phone::sample_rate`]): the realtime
//! loop converts it to and from the internal rate, as it does for a host or for LiveKit's 48 kHz.
//! Sessions name it with `transport: "phone"`; only the server opens them (a host cannot: it
//! does not know a pending call's key).

pub mod call;
pub mod protocol;
pub mod server;
pub mod settings;
pub mod stream;

use std::sync::Arc;

use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::transport::media::g711::G711_RATE;
use crate::transport::pending::Calls;
use crate::transport::{Arrivals, BoxFuture, Listener, MediaEdge, MediaLink, MediaTransport};
pub use settings::PhoneSettings;

/// Who errors are attributed to, and the name in messages.
pub const NAME: &str = "phone";
/// The session `transport` value of phone calls.
pub const TRANSPORT: &str = "phone";

/// The phone transport of one backend.
pub struct Phone {
    settings: PhoneSettings,
    calls: Arc<Calls>,
}

impl Phone {
    /// The transport for `settings` (its server starts with the backend).
    pub fn new(settings: PhoneSettings) -> Phone {
        Phone {
            settings,
            calls: Arc::new(Calls::new(NAME)),
        }
    }
}

/// The key of the call `session` belongs to.
fn call_key(session: &SessionConfig) -> Option<&str> {
    session.connection_token.as_ref().map(|t| t.expose())
}

impl MediaTransport for Phone {
    fn name(&self) -> &str {
        TRANSPORT
    }

    fn provider_name(&self) -> &str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        G711_RATE
    }

    fn check_session(&self, session: &SessionConfig) -> Result<()> {
        match call_key(session) {
            Some(key) if self.calls.is_pending(key) => Ok(()),
            _ => Err(Error::invalid_config(format!(
                "transport: '{TRANSPORT}' sessions are opened by the phone server when a call arrives (VbIncoming); this one names no call waiting for its session"
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
        let server = server::PhoneServer::start(
            self.settings.clone(),
            self.calls.clone(),
            arrivals,
            runtime,
        )?;
        Ok(Some(Box::new(server)))
    }
}
