//! `voicebackend serve`: the built-in agent for browsers, over direct WebRTC (no SFU). Starts
//! the `local` backend with `provider_config.webrtc` on 127.0.0.1 and the page in `page/`
//! (embedded) served at `/`: a talk button, live captions of both sides, the agent's state, a
//! microphone level meter and per-turn latency. Each browser call becomes a conversation with the
//! rule-based agent, printed like `agent`'s. SIGINT/SIGTERM drains (calls under way finish, up to
//! a minute) and exits.
//!
//! Threads: the main thread waits for a signal; each call gets a thread that prints it; the
//! engine's own threads do the rest.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use voicebackend::backend::{Accepted, IncomingHandler};
use voicebackend::{Agent, Backend, Session, VbSessionState as S};

use super::room::converse;
use super::signals::stop_requested;

/// The page served at `/`.
pub const PAGE: &str = include_str!("page/index.html");

/// The `local` backend configuration for `serve`: `base` (a whole configuration; `--config`),
/// or the embedded providers without a session store (and the CLI's turn settings), with `provider_config.webrtc` listening on 127.0.0.1:`port` and
/// serving the page, unless `base` sets its own `webrtc` section's keys.
pub fn backend_json(base: Option<&str>, stt: &str, tts: &str, port: u16) -> Result<String, String> {
    let mut config: Value = match base {
        Some(text) => serde_json::from_str(text).map_err(|e| format!("--config: not JSON: {e}"))?,
        // No session store: a browser's call cannot be brought back after a crash, and two
        // `serve`s (or a `serve` and an `agent`) must not contend for the default store file.
        None => json!({"provider": "local", "stt_provider": stt, "tts_provider": tts,
                       "persistence": {"path": ""}, "turn": crate::cli_turn()}),
    };
    let Some(object) = config.as_object_mut() else {
        return Err("--config: the configuration must be a JSON object".into());
    };
    let provider_config = object.entry("provider_config").or_insert_with(|| json!({}));
    let Some(provider_config) = provider_config.as_object_mut() else {
        return Err("--config: provider_config must be a JSON object".into());
    };
    let webrtc = provider_config.entry("webrtc").or_insert_with(|| json!({}));
    let Some(webrtc) = webrtc.as_object_mut() else {
        return Err("--config: provider_config.webrtc must be a JSON object".into());
    };
    webrtc
        .entry("listen")
        .or_insert_with(|| format!("127.0.0.1:{port}").into());
    webrtc.entry("page").or_insert_with(|| PAGE.into());
    Ok(config.to_string())
}

/// Serves until SIGINT/SIGTERM, then drains for at most `drain`; `agent` answers every call.
pub fn run(backend_json: &str, drain: Duration, agent: Arc<dyn Agent>) -> Result<(), String> {
    let backend = Backend::from_json(backend_json).map_err(|e| e.to_string())?;
    backend
        .set_incoming(Arc::new(Calls { agent }))
        .map_err(|e| e.to_string())?;
    backend.start().map_err(|e| e.to_string())?;
    let Some(address) = backend.listening_address() else {
        return Err("the backend does not listen (provider_config.webrtc missing?)".into());
    };
    println!(
        "serve: open http://{address}/ (offers: POST http://{address}/api/offer; Ctrl-C stops)"
    );
    while !stop_requested() {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("serve: draining (calls under way finish)");
    backend.stop(drain).map_err(|e| e.to_string())?;
    println!("serve: stopped");
    Ok(())
}

/// Takes every call with the CLI's agent; one thread prints each conversation.
struct Calls {
    agent: Arc<dyn Agent>,
}

impl IncomingHandler for Calls {
    fn on_session(&self, session: Session, info: &Value) -> voicebackend::Result<Accepted> {
        let pc_id = info["pc_id"].as_str().unwrap_or_default().to_owned();
        let peer = info["peer"].as_str().unwrap_or_default().to_owned();
        std::thread::Builder::new()
            .name("webrtc call".into())
            .spawn(move || {
                // Wait for the backend to start the session, then follow it to its end.
                while session.state() == S::VB_STATE_IDLE {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if session.state() == S::VB_STATE_STOPPED {
                    return;
                }
                println!("call {pc_id} from {peer}: connected");
                let ended = converse(&session);
                println!(
                    "call {pc_id}: ended: {}",
                    ended.unwrap_or_else(|| "stopped".into())
                );
            })
            .map_err(|e| voicebackend::Error::internal(format!("no thread for the call: {e}")))?;
        Ok(Accepted {
            agent: Some(self.agent.clone()),
            on_event: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_address_are_added_and_a_config_keeps_its_own() {
        let config: Value =
            serde_json::from_str(&backend_json(None, "whisper", "espeak", 8080).unwrap()).unwrap();
        assert_eq!(
            config["provider_config"]["webrtc"]["listen"],
            "127.0.0.1:8080"
        );
        assert!(
            config["provider_config"]["webrtc"]["page"]
                .as_str()
                .unwrap()
                .contains("/api/offer")
        );
        assert_eq!(config["stt_provider"], "whisper");
        let own = r#"{"provider": "local", "stt_provider": "x", "provider_config": {"webrtc": {"listen": "127.0.0.1:9"}}}"#;
        let config: Value =
            serde_json::from_str(&backend_json(Some(own), "whisper", "espeak", 0).unwrap())
                .unwrap();
        assert_eq!(config["provider_config"]["webrtc"]["listen"], "127.0.0.1:9");
        assert_eq!(config["stt_provider"], "x");
        assert!(backend_json(Some("[]"), "a", "b", 0).is_err());
        assert!(backend_json(Some("{"), "a", "b", 0).is_err());
    }
}
