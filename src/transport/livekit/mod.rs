//! The LiveKit transport: each session joins a LiveKit room as the agent participant, listens to
//! the user's microphone and publishes its own — a LiveKit participant in pure Rust (str0m for
//! WebRTC, libopus for Opus), no libwebrtc.
//!
//! | file | what |
//! |---|---|
//! | [`settings`] | `provider_config` (url, keys, identity, Opus complexity), tokens |
//! | [`signal`] | the `/rtc` WebSocket: join, resume, leave |
//! | [`room`] | who is in the room, whom the agent listens to |
//! | [`data`] | captions (`lk.transcription` text streams) and `lk.agent.state` |
//! | [`participant`] | the session's task: all of the above, and the 20 ms media clock |
//! | [`worker`] | worker mode: registered for jobs the server dispatches |
//! | [`rooms`] | the room service for hosts (create, list, delete, dispatch) |
//!
//! Sessions name it with `transport: "webrtc"` and a `room`; audio is 48 kHz both ways.
//! `vb_session_start` returns once the agent has joined the room (or why it could not).

pub mod data;
pub mod participant;
pub mod recover;
pub mod room;
pub mod rooms;
pub mod settings;
pub mod signal;
pub mod worker;

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;

use crate::config::{BackendConfig, SessionConfig};
use crate::error::{Error, Result, VbStatus};
use crate::transport::media::opus::OPUS_RATE;
use crate::transport::{
    Arrivals, BoxFuture, Listener, MediaEdge, MediaLink, MediaTransport, TransportNews,
};
use participant::{JoinSpec, Participant};
pub use rooms::RoomService;
pub use settings::{NAME, Settings};

/// The session `transport` value of LiveKit sessions.
pub const TRANSPORT: &str = "webrtc";

/// The LiveKit transport of one backend.
#[derive(Debug, Clone)]
pub struct LiveKit {
    settings: Settings,
}

impl LiveKit {
    /// Reads the backend's `provider_config` (see [`settings`]).
    pub fn from_backend_config(config: &BackendConfig) -> Result<LiveKit> {
        Ok(LiveKit {
            settings: Settings::from_backend_config(config)?,
        })
    }

    fn url_for(&self, session: &SessionConfig) -> Result<String> {
        match &session.connection_url {
            Some(url) => settings::websocket_base("connection_url", url),
            None => Ok(self.settings.url.clone()),
        }
    }
}

impl MediaTransport for LiveKit {
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
        let room = session.room.as_deref().ok_or_else(|| {
            Error::invalid_config("room: required for a 'webrtc' session on the livekit backend")
        })?;
        settings::check_name("room", room)?;
        self.url_for(session).map(drop)
    }

    fn connect(
        &self,
        session: &SessionConfig,
        edge: MediaEdge,
    ) -> BoxFuture<'static, Result<MediaLink>> {
        let spec = self.url_for(session).map(|url| JoinSpec {
            settings: self.settings.clone(),
            url,
            room: session.room.clone().unwrap_or_default(),
            user_id: session.user_id.clone(),
            token: session.connection_token.clone(),
        });
        let news = edge.news.clone();
        Box::pin(async move {
            let participant = Participant::join(spec?, edge).await?;
            let room = participant.room_name().to_owned();
            let (close, closed) = tokio::sync::oneshot::channel();
            let (done, finished) = crossbeam_channel::bounded::<()>(0);
            tokio::spawn(async move {
                let _done = done; // dropped when the participant has left
                let run = AssertUnwindSafe(participant.run(closed)).catch_unwind();
                if run.await.is_err() {
                    // A bug in the WebRTC stack must not take the process down: the session ends.
                    let _ = news.send(TransportNews::Ended {
                        reason: format!(
                            "{NAME}: the agent left room '{room}' after an internal error"
                        ),
                        error: Some(Error::new(
                            VbStatus::VB_ERR_PANIC,
                            format!("{NAME}: the participant panicked"),
                        )),
                    });
                }
            });
            Ok(MediaLink::new(close, finished))
        })
    }

    fn listen(
        &self,
        arrivals: std::sync::Arc<dyn Arrivals>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Option<Box<dyn Listener>>> {
        let Some(worker) = self.settings.worker.clone() else {
            return Ok(None);
        };
        let worker = worker::Worker::start(self.settings.clone(), worker, arrivals, runtime)?;
        Ok(Some(Box::new(worker)))
    }
}
