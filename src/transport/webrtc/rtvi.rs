//! What the agent tells a direct WebRTC client on its data channel: the session's events as RTVI
//! messages, the JSON protocol of Pipecat's clients (`{"label": "rtvi-ai", "type": …, "data":
//! …}`, protocol 2.2.0 as pipecat-ai 1.14.0 sends it; the same shapes the `pipecat` backend reads
//! in `provider/network/pipecat/rtvi.rs`), so that a Pipecat client shows captions with no glue.
//!
//! | session event | RTVI messages |
//! |---|---|
//! | data channel open, `client-ready` | `bot-ready` |
//! | `SPEECH_STARTED` / `SPEECH_STOPPED` | `user-started-speaking` / `user-stopped-speaking` |
//! | `TRANSCRIPT_PARTIAL` / `_FINAL` | `user-transcription` (`final` false / true) |
//! | `AGENT_RESPONSE` | `bot-llm-started`, `bot-llm-text`, `bot-llm-stopped`, `bot-output`, `bot-tts-text` |
//! | state becomes / stops being `SPEAKING` | `bot-started-speaking` / `bot-stopped-speaking` |
//! | every state change | `server-message` `{"type": "agent-state", "state": …}` |
//! | `INTERRUPTED` | `server-message` `{"type": "interrupted"}` |
//! | `TURN_METRICS` | `metrics`: `ttfb` of `stt` (end of speech to final transcript), `agent` (to its first text), `tts` (to its first audio); `processing` of `voice-to-voice` (end of speech to the first reply sample); seconds |
//! | `ERROR` | `error` (`fatal`: false) |
//! | the session stopped by the host | `{"type": "signalling", "message": {"type": "peerLeft"}}` (Pipecat's, not RTVI), then the channel closes |
//!
//! Pure data, on the call's task.

use serde_json::{Value, json};

use crate::event::{Event, VbEventKind as K, VbSessionState as S};

/// The RTVI protocol version spoken.
pub const PROTOCOL_VERSION: &str = "2.2.0";
const LABEL: &str = "rtvi-ai";

/// One RTVI message of `kind` carrying `data`, as JSON text.
pub fn message(kind: &str, data: Value) -> String {
    json!({ "label": LABEL, "type": kind, "data": data }).to_string()
}

/// `bot-ready`, answering `client-ready` (with its `id`) or sent when the channel opens.
pub fn bot_ready(id: Option<&str>) -> String {
    let mut ready = json!({
        "label": LABEL,
        "type": "bot-ready",
        "data": {
            "version": PROTOCOL_VERSION,
            "about": {"library": "voicebackend", "library_version": env!("CARGO_PKG_VERSION")},
        },
    });
    if let Some(id) = id {
        ready["id"] = id.into();
    }
    ready.to_string()
}

/// Pipecat's signalling message that the bot left the call (`PeerLeftMessage` of
/// `pipecat/transports/smallwebrtc/connection.py`), sent on the data channel before it closes.
pub fn peer_left() -> String {
    json!({"type": "signalling", "message": {"type": "peerLeft"}}).to_string()
}

/// The `id` of a `client-ready` message from the client, `None` for anything else.
pub fn client_ready(bytes: &[u8]) -> Option<Option<String>> {
    let message: Value = serde_json::from_slice(bytes).ok()?;
    (message["label"] == LABEL && message["type"] == "client-ready")
        .then(|| message["id"].as_str().map(str::to_owned))
}

/// The name of a state for clients (`lk.agent.state`'s words).
pub fn state_name(state: S) -> &'static str {
    match state {
        S::VB_STATE_IDLE => "initializing",
        S::VB_STATE_LISTENING => "listening",
        S::VB_STATE_PROCESSING => "thinking",
        S::VB_STATE_SPEAKING => "speaking",
        S::VB_STATE_STOPPED => "stopped",
        S::VB_STATE_ERROR => "error",
    }
}

/// Turns one session's events into RTVI messages.
pub struct Rtvi {
    user_id: String,
    state: Option<S>,
}

impl Rtvi {
    /// For the session of `user_id`.
    pub fn new(user_id: &str) -> Rtvi {
        Rtvi {
            user_id: user_id.to_owned(),
            state: None,
        }
    }

    /// The messages `event` becomes (often none), in order.
    pub fn on_event(&mut self, event: &Event, timestamp: &str) -> Vec<String> {
        let text = event.text.as_deref().unwrap_or_default();
        match event.kind {
            K::VB_EVENT_SPEECH_STARTED => vec![message("user-started-speaking", Value::Null)],
            K::VB_EVENT_SPEECH_STOPPED => vec![message("user-stopped-speaking", Value::Null)],
            K::VB_EVENT_TRANSCRIPT_PARTIAL | K::VB_EVENT_TRANSCRIPT_FINAL => {
                let is_final = event.kind == K::VB_EVENT_TRANSCRIPT_FINAL;
                if text.trim().is_empty() {
                    return Vec::new();
                }
                vec![message(
                    "user-transcription",
                    json!({"text": text, "user_id": self.user_id, "timestamp": timestamp, "final": is_final}),
                )]
            }
            K::VB_EVENT_AGENT_RESPONSE if !text.trim().is_empty() => vec![
                message("bot-llm-started", Value::Null),
                message("bot-llm-text", json!({ "text": text })),
                message("bot-llm-stopped", Value::Null),
                message(
                    "bot-output",
                    json!({"text": text, "spoken": true, "aggregated_by": "sentence"}),
                ),
                message("bot-tts-text", json!({ "text": text })),
            ],
            K::VB_EVENT_STATE_CHANGED => self.on_state(event.state),
            K::VB_EVENT_INTERRUPTED => {
                vec![message("server-message", json!({"type": "interrupted"}))]
            }
            K::VB_EVENT_TURN_METRICS => {
                let m = &event.metrics;
                let seconds = |us: u64| us as f64 / 1e6;
                // The metrics count from the end of the user's speech; each stage's own time is
                // from the stage before it (none when a stage did not happen).
                let stage =
                    |at: u64, after: u64| (at > 0 && after > 0).then(|| at.saturating_sub(after));
                let mut ttfb = Vec::new();
                for (processor, us) in [
                    ("stt", (m.stt_final_us > 0).then_some(m.stt_final_us)),
                    ("agent", stage(m.agent_first_text_us, m.stt_final_us)),
                    ("tts", stage(m.tts_first_audio_us, m.agent_first_text_us)),
                ] {
                    if let Some(us) = us {
                        ttfb.push(json!({"processor": processor, "value": seconds(us)}));
                    }
                }
                vec![message(
                    "metrics",
                    json!({
                        "ttfb": ttfb,
                        "processing": [{"processor": "voice-to-voice", "value": seconds(m.first_output_audio_us)}],
                    }),
                )]
            }
            K::VB_EVENT_ERROR => vec![message(
                "error",
                json!({"error": text, "fatal": false, "code": event.error.name()}),
            )],
            _ => Vec::new(),
        }
    }

    fn on_state(&mut self, state: S) -> Vec<String> {
        let before = self.state.replace(state);
        if before == Some(state) {
            return Vec::new();
        }
        let mut out = Vec::new();
        if before == Some(S::VB_STATE_SPEAKING) {
            out.push(message("bot-stopped-speaking", Value::Null));
        }
        if state == S::VB_STATE_SPEAKING {
            out.push(message("bot-started-speaking", Value::Null));
        }
        out.push(message(
            "server-message",
            json!({"type": "agent-state", "state": state_name(state)}),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::VbTurnMetrics;

    fn types(messages: &[String]) -> Vec<String> {
        messages
            .iter()
            .map(|m| {
                let v: Value = serde_json::from_str(m).unwrap();
                assert_eq!(v["label"], "rtvi-ai");
                v["type"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn a_turn_becomes_the_messages_pipecat_clients_read() {
        let mut rtvi = Rtvi::new("pc-1");
        let at = |kind| Event::new(kind, 0, S::VB_STATE_LISTENING);
        assert_eq!(
            types(&rtvi.on_event(&at(K::VB_EVENT_SPEECH_STARTED), "t")),
            ["user-started-speaking"]
        );
        let final_ = at(K::VB_EVENT_TRANSCRIPT_FINAL).with_text("What time is it?");
        let out = rtvi.on_event(&final_, "t");
        let v: Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(v["data"]["text"], "What time is it?");
        assert_eq!(v["data"]["final"], true);
        assert_eq!(v["data"]["user_id"], "pc-1");
        assert!(
            rtvi.on_event(&at(K::VB_EVENT_TRANSCRIPT_FINAL), "t")
                .is_empty()
        );
        let reply = at(K::VB_EVENT_AGENT_RESPONSE).with_text("It is noon.");
        assert_eq!(
            types(&rtvi.on_event(&reply, "t")),
            [
                "bot-llm-started",
                "bot-llm-text",
                "bot-llm-stopped",
                "bot-output",
                "bot-tts-text"
            ]
        );
        let state = |s| Event::new(K::VB_EVENT_STATE_CHANGED, 0, s);
        assert_eq!(
            types(&rtvi.on_event(&state(S::VB_STATE_SPEAKING), "t")),
            ["bot-started-speaking", "server-message"]
        );
        assert!(rtvi.on_event(&state(S::VB_STATE_SPEAKING), "t").is_empty());
        let back = rtvi.on_event(&state(S::VB_STATE_LISTENING), "t");
        assert_eq!(types(&back), ["bot-stopped-speaking", "server-message"]);
        let v: Value = serde_json::from_str(&back[1]).unwrap();
        assert_eq!(
            v["data"],
            json!({"type": "agent-state", "state": "listening"})
        );
    }

    #[test]
    fn metrics_are_in_seconds_and_client_ready_is_answered() {
        let mut rtvi = Rtvi::new("u");
        let mut event = Event::new(K::VB_EVENT_TURN_METRICS, 0, S::VB_STATE_SPEAKING);
        event.metrics = VbTurnMetrics {
            stt_final_us: 250_000,
            agent_first_text_us: 300_000,
            tts_first_audio_us: 450_000,
            first_output_audio_us: 900_000,
        };
        let v: Value = serde_json::from_str(&rtvi.on_event(&event, "t")[0]).unwrap();
        assert_eq!(
            v["data"]["ttfb"],
            json!([
                {"processor": "stt", "value": 0.25},
                {"processor": "agent", "value": 0.05},
                {"processor": "tts", "value": 0.15}
            ])
        );
        assert_eq!(v["data"]["processing"][0]["value"], 0.9);
        event.metrics.agent_first_text_us = 0; // an S2S turn: no agent text
        let v: Value = serde_json::from_str(&rtvi.on_event(&event, "t")[0]).unwrap();
        assert_eq!(v["data"]["ttfb"].as_array().unwrap().len(), 1);
        let ready = br#"{"label": "rtvi-ai", "type": "client-ready", "id": "7", "data": {}}"#;
        assert_eq!(client_ready(ready), Some(Some("7".into())));
        assert_eq!(client_ready(b"{}"), None);
        let answer: Value = serde_json::from_str(&bot_ready(Some("7"))).unwrap();
        assert_eq!(
            (answer["type"].as_str(), answer["id"].as_str()),
            (Some("bot-ready"), Some("7"))
        );
    }
}
