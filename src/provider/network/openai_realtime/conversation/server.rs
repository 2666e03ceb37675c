//! What the server sends: audio and transcript deltas, the end of responses, errors, a lost
//! connection.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::super::{SESSION_UPDATE_ID, TurnDetection};
use super::{Active, Conversation, Spoken};
use crate::error::{Error, Result, VbStatus};
use crate::net::{WebSocket, scrub};
use crate::provider::S2sEvent;

impl Conversation {
    pub(super) async fn on_message(
        &mut self,
        ws: &mut WebSocket,
        message: Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<()> {
        let text = match message {
            None => return Err(self.lost("closed")),
            Some(Err(e)) => return Err(self.lost(&e.to_string())),
            Some(Ok(Message::Close(frame))) => {
                return Err(self.lost(&match frame {
                    Some(f) => format!("closed by the server: {} {}", f.code, f.reason),
                    None => "closed by the server".into(),
                }));
            }
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                self.emit(S2sEvent::Error(self.unreadable("a binary message")));
                return Ok(());
            }
            Some(Ok(_)) => return Ok(()), // ping/pong: tungstenite answers pings itself
        };
        if self.busy() {
            self.touch();
        }
        let event: Value = match serde_json::from_str(text.as_str()) {
            Ok(event @ Value::Object(_)) => event,
            _ => {
                // Blanked before it is cut: a cut key would not be found.
                let text = scrub(text.as_str(), &self.config.key);
                let start: String = text.chars().take(80).collect();
                self.emit(S2sEvent::Error(self.unreadable(&format!("'{start}'"))));
                return Ok(());
            }
        };
        if let Err(e) = self.on_event(ws, &event).await {
            if e.status() != VbStatus::VB_ERR_PROVIDER || self.refused {
                return Err(e);
            }
            self.emit(S2sEvent::Error(e));
        }
        Ok(())
    }

    /// One server event. `VB_ERR_PROVIDER` errors are reported and the session goes on; others
    /// mean the connection is broken.
    async fn on_event(&mut self, ws: &mut WebSocket, event: &Value) -> Result<()> {
        let kind = event["type"].as_str().unwrap_or_default();
        let field = |name: &str| -> Result<&str> {
            event[name]
                .as_str()
                .ok_or_else(|| self.unreadable(&format!("{kind} without '{name}'")))
        };
        match kind {
            "response.created" => {
                let id = event["response"]["id"]
                    .as_str()
                    .ok_or_else(|| self.unreadable("response.created without response.id"))?
                    .to_owned();
                self.requested = None;
                self.answered_in_turn = true;
                if std::mem::take(&mut self.cancel_requested) {
                    self.cancelled.push(id);
                } else {
                    if self.active.is_some() {
                        self.emit(S2sEvent::ResponseDone); // only one response at a time
                    }
                    self.active = Some(Active { id, audio: None });
                }
            }
            "response.output_audio.delta" => {
                let response_id = field("response_id")?;
                let item_id = field("item_id")?;
                let audio = BASE64
                    .decode(field("delta")?)
                    .map_err(|e| self.unreadable(&format!("audio delta: {e}")))?;
                if audio.len() % 2 != 0 {
                    return Err(self.unreadable("audio delta with an odd byte count"));
                }
                let Some(active) = self.active.as_mut().filter(|a| a.id == response_id) else {
                    return Ok(()); // a cancelled response's audio: dropped
                };
                let samples: Vec<i16> = audio
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                let spoken = active.audio.get_or_insert_with(|| Spoken {
                    item_id: item_id.to_owned(),
                    first_audio: Instant::now(),
                    samples: 0,
                });
                spoken.samples += samples.len() as u64;
                self.last_spoken = Some(spoken.clone());
                self.emit(S2sEvent::Audio(samples));
            }
            "response.output_audio_transcript.delta" | "response.output_text.delta" => {
                let delta = field("delta")?;
                let response_id = field("response_id")?;
                if self.is_active(response_id) {
                    self.emit(S2sEvent::ResponseText(delta.to_owned()));
                }
            }
            "conversation.item.input_audio_transcription.completed" => {
                let transcript = field("transcript")?.trim().to_owned();
                self.emit(S2sEvent::UserTranscript(transcript));
            }
            "conversation.item.input_audio_transcription.failed" => {
                return Err(self.server_error("input transcription failed", &event["error"]));
            }
            // The server's VAD took the turn.
            "input_audio_buffer.committed"
                if self.config.turn_detection == TurnDetection::Server =>
            {
                self.uncommitted.clear();
            }
            "response.done" => self.response_done(ws, event).await?,
            "error" => return self.error_event(&event["error"]),
            _ => {} // events this client does not need
        }
        Ok(())
    }

    async fn response_done(&mut self, ws: &mut WebSocket, event: &Value) -> Result<()> {
        let response = &event["response"];
        let id = response["id"]
            .as_str()
            .ok_or_else(|| self.unreadable("response.done without response.id"))?;
        if let Some(i) = self.cancelled.iter().position(|c| c == id) {
            self.cancelled.swap_remove(i);
        } else if self.is_active(id) {
            self.active = None;
            if response["status"] == "failed" {
                let details = &response["status_details"]["error"];
                self.emit(S2sEvent::Error(
                    self.server_error("the response failed", details),
                ));
            }
            self.emit(S2sEvent::ResponseDone);
        }
        if !self.busy() {
            self.deadline = None;
            if self.queued_creates > 0 {
                self.queued_creates -= 1;
                self.create_response(ws).await?;
            }
        }
        Ok(())
    }

    /// An `error` event: reported, and the response it refused (by `event_id`) is ended. A
    /// refused `session.update` ends the connection.
    fn error_event(&mut self, error: &Value) -> Result<()> {
        // Cancelling a response that ended meanwhile: the cancel's aim is met.
        if error["code"] == "response_cancel_not_active" {
            return Ok(());
        }
        if error["event_id"] == SESSION_UPDATE_ID {
            self.refused = true;
            return Err(self.server_error("the server refused the session settings", error));
        }
        let refused_create =
            self.requested.is_some() && error["event_id"].as_str() == self.requested.as_deref();
        self.emit(S2sEvent::Error(
            self.server_error("the server reported an error", error),
        ));
        if refused_create {
            self.requested = None;
            if std::mem::take(&mut self.cancel_requested) {
                return Ok(()); // its cancel was answered already
            }
            self.emit(S2sEvent::ResponseDone);
            if !self.busy() {
                self.deadline = None;
            }
        }
        Ok(())
    }

    /// The connection ended (`error`: it broke or timed out): end what it carried, keep the
    /// uncommitted turn. The error is reported when it cut a response short or was a timeout.
    pub(super) fn connection_lost(&mut self, error: Option<Error>) {
        let cut_response =
            (self.requested.is_some() && !self.cancel_requested) || self.active.is_some();
        let reported = error.filter(|e| cut_response || e.status() == VbStatus::VB_ERR_TIMEOUT);
        if let Some(error) = reported {
            self.emit(S2sEvent::Error(error));
        }
        if cut_response {
            self.emit(S2sEvent::ResponseDone);
        }
        self.requested = None;
        self.cancel_requested = false;
        self.active = None;
        self.cancelled.clear();
        self.queued_creates = 0;
        self.last_spoken = None;
        self.deadline = None;
    }
}
