//! `voicebackend agent --room NAME`: the built-in agent in a LiveKit room, so that anyone with a
//! LiveKit server can talk to it from LiveKit's own frontends (the Agents Playground, any app on
//! `livekit-client`). One conversation at a time: when the user leaves, the agent waits in the
//! room for the next one (`--once`: it exits instead).
//!
//! `voicebackend agent --worker`: the same agent as a LiveKit agent worker — the server
//! dispatches rooms to it, each becomes a conversation of its own; SIGINT/SIGTERM drains (the
//! conversations under way finish, no new ones come) and exits.

use std::sync::Arc;
use std::time::Duration;

use voicebackend::backend::{Accepted, IncomingHandler};
use voicebackend::{Agent, Backend, Session, SessionConfig, VbEventKind as K, VbSessionState as S};

use super::signals::stop_requested;

/// What `agent` needs.
pub struct RoomOptions {
    /// Backend configuration JSON (provider `livekit`).
    pub backend_json: String,
    /// The room to join.
    pub room: String,
    /// The participant to listen to ("" for the first to speak).
    pub user: String,
    /// End after the first conversation.
    pub once: bool,
    /// Answers the user.
    pub agent: Arc<dyn Agent>,
}

/// Runs the agent in the room until SIGINT/SIGTERM (or, with `once`, the user leaves).
pub fn run(options: &RoomOptions) -> Result<(), String> {
    let backend = Backend::from_json(&options.backend_json).map_err(|e| e.to_string())?;
    backend.start().map_err(|e| e.to_string())?;
    loop {
        let config = SessionConfig {
            transport: "webrtc".into(),
            room: Some(options.room.clone()),
            user_id: options.user.clone(),
            ..SessionConfig::default()
        };
        let session = backend
            .create_session(config, Some(options.agent.clone()), None)
            .map_err(|e| e.to_string())?;
        session.start().map_err(|e| e.to_string())?;
        println!("agent: in room '{}', listening", options.room);
        let ended = converse(&session);
        let _ = session.stop();
        if let Some(reason) = &ended {
            println!("agent: {reason}");
        }
        if options.once || ended.is_none() {
            break;
        }
    }
    backend
        .stop(Duration::from_secs(5))
        .map_err(|e| e.to_string())
}

/// Runs `agent` as a LiveKit worker (the backend configured with `provider_config.worker`)
/// until SIGINT/SIGTERM, then drains for at most `drain`.
pub fn run_worker(
    backend_json: &str,
    drain: Duration,
    agent: Arc<dyn Agent>,
) -> Result<(), String> {
    let backend = Backend::from_json(backend_json).map_err(|e| e.to_string())?;
    backend
        .set_incoming(Arc::new(Conversations { agent }))
        .map_err(|e| e.to_string())?;
    backend.start().map_err(|e| e.to_string())?;
    println!("worker: registered, waiting for rooms (Ctrl-C drains and exits)");
    while !stop_requested() {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("worker: draining (conversations under way finish)");
    backend.stop(drain).map_err(|e| e.to_string())?;
    println!("worker: stopped");
    Ok(())
}

/// Takes every dispatched room with the CLI's agent; one thread prints each conversation.
struct Conversations {
    agent: Arc<dyn Agent>,
}

impl IncomingHandler for Conversations {
    fn on_session(
        &self,
        session: Session,
        info: &serde_json::Value,
    ) -> voicebackend::Result<Accepted> {
        let room = info["room"].as_str().unwrap_or_default().to_owned();
        std::thread::Builder::new()
            .name(format!("room {room}"))
            .spawn(move || {
                // Wait for the backend to start the session, then follow it to its end.
                while session.state() == S::VB_STATE_IDLE {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if session.state() == S::VB_STATE_STOPPED {
                    return; // it could not join: the job failed, the server was told why
                }
                println!("agent: joined room '{room}'");
                let ended = converse(&session);
                println!(
                    "agent: left room '{room}': {}",
                    ended.unwrap_or_else(|| "stopped".into())
                );
            })
            .map_err(|e| voicebackend::Error::internal(format!("no thread for the room: {e}")))?;
        Ok(Accepted {
            agent: Some(self.agent.clone()),
            on_event: None,
        })
    }
}

/// Prints the conversation until the session ends (its reason) or a signal arrives (`None`).
pub fn converse(session: &voicebackend::Session) -> Option<String> {
    let mut buf = vec![0i16; 4800];
    loop {
        if stop_requested() {
            return None;
        }
        // The copy of the agent's audio is not needed here: keep its ring empty.
        while session.read_audio(&mut buf).is_ok_and(|n| n > 0) {}
        match session.poll_event() {
            Ok(Some(event)) => match event.kind {
                K::VB_EVENT_TRANSCRIPT_FINAL => {
                    println!("user:  {}", event.text.unwrap_or_default())
                }
                K::VB_EVENT_AGENT_RESPONSE => {
                    println!("agent: {}", event.text.unwrap_or_default())
                }
                K::VB_EVENT_TURN_METRICS => println!(
                    "       voice to voice {:.0} ms (stt {:.0}, agent {:.0}, tts {:.0})",
                    event.metrics.first_output_audio_us as f64 / 1e3,
                    event.metrics.stt_final_us as f64 / 1e3,
                    event.metrics.agent_first_text_us as f64 / 1e3,
                    event.metrics.tts_first_audio_us as f64 / 1e3,
                ),
                K::VB_EVENT_ERROR => eprintln!("error: {}", event.text.unwrap_or_default()),
                K::VB_EVENT_STATE_CHANGED if event.state == S::VB_STATE_STOPPED => {
                    return Some(event.text.unwrap_or_else(|| "the session ended".into()));
                }
                _ => {}
            },
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Some(e.to_string()),
        }
    }
}
