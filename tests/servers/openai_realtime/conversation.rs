//! One connection's session on the local OpenAI-protocol Realtime server: the client events it
//! takes, the session object, the input audio buffer with its stand-in server VAD, the
//! conversation items, and the response being streamed (created, cancelled, truncated).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::response::ResponseStream;
use super::schema::{check_session, merge};
use super::{Out, Shared};
use crate::servers::openai_engines::{Fault, OPENAI_RATE, transcribe};

/// A conversation item.
struct Item {
    id: String,
    /// User items: the transcript once whisper has it.
    transcript: Option<watch::Receiver<Option<String>>>,
    /// Assistant items: samples of audio sent.
    audio_sent: Arc<AtomicU64>,
}

/// The response being streamed.
struct Running {
    id: String,
    item_id: String,
    task: JoinHandle<()>,
    audio_sent: Arc<AtomicU64>,
}

/// The energy detector standing in for the server's VAD.
struct Vad {
    frame: Vec<i16>,
    speaking: bool,
    voiced_ms: u64,
    silent_ms: u64,
    start_ms: u64,
}

/// One connection's session.
pub(super) struct Connection {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Out>,
    pub(super) session: Value,
    buffer: Vec<i16>,
    /// Audio written to the buffer since the session began, in samples.
    written: u64,
    vad: Vad,
    items: Vec<Item>,
    response: Option<Running>,
    next_id: u64,
}

impl Connection {
    pub(super) fn new(shared: Arc<Shared>, out: mpsc::UnboundedSender<Out>, model: String) -> Self {
        let pcm = json!({"type": "audio/pcm", "rate": OPENAI_RATE});
        Connection {
            shared,
            out,
            session: json!({
                "type": "realtime",
                "object": "realtime.session",
                "id": "sess_local",
                "model": model,
                "output_modalities": ["audio"],
                "instructions": "You are a helpful assistant.",
                "tools": [],
                "tool_choice": "auto",
                "max_output_tokens": "inf",
                "tracing": null,
                "truncation": "auto",
                "prompt": null,
                "include": null,
                "audio": {
                    "input": {
                        "format": pcm,
                        "transcription": null,
                        "noise_reduction": null,
                        "turn_detection": {
                            "type": "server_vad",
                            "threshold": 0.5,
                            "prefix_padding_ms": 300,
                            "silence_duration_ms": 200,
                            "idle_timeout_ms": null,
                            "create_response": true,
                            "interrupt_response": true,
                        },
                    },
                    "output": {"format": pcm, "voice": "marin", "speed": 1.0},
                },
            }),
            buffer: Vec::new(),
            written: 0,
            vad: Vad {
                frame: Vec::new(),
                speaking: false,
                voiced_ms: 0,
                silent_ms: 0,
                start_ms: 0,
            },
            items: Vec::new(),
            response: None,
            next_id: 0,
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:04}", self.next_id)
    }

    /// Sends a server event of `kind` with `fields`, numbering it.
    pub(super) fn emit(&mut self, kind: &str, fields: Value) {
        let mut event = json!({"type": kind, "event_id": self.id("event")});
        if let (Some(event), Value::Object(fields)) = (event.as_object_mut(), fields) {
            event.extend(fields);
        }
        let _ = self.out.send(Out::Event(event));
    }

    pub(super) fn error(
        &mut self,
        kind: &str,
        code: Option<&str>,
        message: &str,
        param: Option<&str>,
        event_id: Option<&str>,
    ) {
        self.emit(
            "error",
            json!({"error": {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id}}),
        );
    }

    fn invalid(&mut self, code: &str, message: &str, param: Option<&str>, event_id: Option<&str>) {
        self.error(
            "invalid_request_error",
            Some(code),
            message,
            param,
            event_id,
        );
    }

    pub(super) fn on_client_message(&mut self, text: &str) {
        let Ok(event @ Value::Object(_)) = serde_json::from_str::<Value>(text) else {
            self.shared.events.lock().unwrap().push(json!(text));
            self.invalid(
                "invalid_json",
                "The server could not parse the event: it is not a JSON object.",
                None,
                None,
            );
            return;
        };
        self.shared.events.lock().unwrap().push(event.clone());
        let event_id = event["event_id"].as_str().map(str::to_owned);
        let event_id = event_id.as_deref();
        match event["type"].as_str().unwrap_or_default() {
            "session.update" => self.session_update(&event, event_id),
            "input_audio_buffer.append" => self.append(&event, event_id),
            "input_audio_buffer.commit" => {
                self.commit(event_id);
            }
            "input_audio_buffer.clear" => {
                self.buffer.clear();
                self.emit("input_audio_buffer.cleared", json!({}));
            }
            "response.create" => self.create_response(event_id),
            "response.cancel" => self.cancel(&event, event_id),
            "conversation.item.truncate" => self.truncate(&event, event_id),
            "" => self.invalid(
                "missing_required_parameter",
                "Missing required parameter: 'type'.",
                Some("type"),
                event_id,
            ),
            other => self.invalid(
                "invalid_value",
                &format!("Invalid value: '{other}'. This local server serves session.update, input_audio_buffer.append, input_audio_buffer.commit, input_audio_buffer.clear, response.create, response.cancel and conversation.item.truncate."),
                Some("type"),
                event_id,
            ),
        }
    }

    fn session_update(&mut self, event: &Value, event_id: Option<&str>) {
        let Some(update) = event["session"].as_object() else {
            return self.invalid(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                Some("session"),
                event_id,
            );
        };
        if let Err((code, message, param)) = check_session(update) {
            return self.invalid(code, &message, Some(&param), event_id);
        }
        merge(&mut self.session, &Value::Object(update.clone()));
        let session = self.session.clone();
        self.emit("session.updated", json!({"session": session}));
    }

    fn append(&mut self, event: &Value, event_id: Option<&str>) {
        let audio = event["audio"]
            .as_str()
            .and_then(|a| BASE64.decode(a).ok())
            .filter(|bytes| bytes.len() % 2 == 0);
        let Some(bytes) = audio else {
            return self.invalid(
                "invalid_value",
                "Invalid 'audio'. Expected base64-encoded 16-bit PCM.",
                Some("audio"),
                event_id,
            );
        };
        let samples: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        self.buffer.extend_from_slice(&samples);
        for sample in samples {
            self.written += 1;
            self.vad.frame.push(sample);
            if self.vad.frame.len() == OPENAI_RATE as usize / 50 {
                self.vad_frame();
            }
        }
    }

    /// One 20 ms frame through the server VAD (when it is on).
    fn vad_frame(&mut self) {
        let frame = std::mem::take(&mut self.vad.frame);
        let vad = self.session["audio"]["input"]["turn_detection"].clone();
        if vad.is_null() {
            return;
        }
        let threshold = vad["threshold"].as_f64().unwrap_or(0.5);
        let rms =
            (frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / frame.len() as f64).sqrt();
        let voiced = rms > threshold * 0.05 * 32768.0;
        let now_ms = self.written * 1000 / u64::from(OPENAI_RATE);
        let item_id = format!("item_{:04}", self.next_id + 1);
        if voiced {
            self.vad.voiced_ms += 20;
            self.vad.silent_ms = 0;
            if !self.vad.speaking && self.vad.voiced_ms >= 60 {
                self.vad.speaking = true;
                let prefix = vad["prefix_padding_ms"].as_u64().unwrap_or(300);
                self.vad.start_ms = now_ms.saturating_sub(self.vad.voiced_ms + prefix);
                let start = self.vad.start_ms;
                self.emit(
                    "input_audio_buffer.speech_started",
                    json!({"audio_start_ms": start, "item_id": item_id}),
                );
                if vad["interrupt_response"] != false && self.response.is_some() {
                    self.finish_cancelled("turn_detected");
                }
            }
        } else {
            self.vad.voiced_ms = 0;
            self.vad.silent_ms += 20;
            if self.vad.speaking
                && self.vad.silent_ms >= vad["silence_duration_ms"].as_u64().unwrap_or(200)
            {
                self.vad.speaking = false;
                self.emit(
                    "input_audio_buffer.speech_stopped",
                    json!({"audio_end_ms": now_ms, "item_id": item_id}),
                );
                if self.commit(None) && vad["create_response"] != false {
                    self.create_response(None);
                }
            }
        }
    }

    /// Commits the buffer as a user item and starts transcribing it; `false` when the buffer
    /// holds too little audio.
    fn commit(&mut self, event_id: Option<&str>) -> bool {
        let min = OPENAI_RATE as usize / 10;
        if self.buffer.len() < min {
            let ms = self.buffer.len() as f64 * 1000.0 / f64::from(OPENAI_RATE);
            self.invalid(
                "input_audio_buffer_commit_empty",
                &format!("Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has {ms:.2}ms of audio."),
                None,
                event_id,
            );
            return false;
        }
        let pcm = std::mem::take(&mut self.buffer);
        let previous = self.items.last().map(|i| i.id.clone());
        let item_id = self.id("item");
        self.emit(
            "input_audio_buffer.committed",
            json!({"previous_item_id": previous, "item_id": item_id}),
        );
        self.emit(
            "conversation.item.added",
            json!({"previous_item_id": previous, "item": {
                "id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": null}],
            }}),
        );
        let (transcript_tx, transcript_rx) = watch::channel(None);
        let announce = !self.session["audio"]["input"]["transcription"].is_null();
        let event_id = self.id("event");
        let out = self.out.clone();
        let id = item_id.clone();
        tokio::spawn(async move {
            let text = transcribe(&pcm, OPENAI_RATE).await;
            if announce {
                let seconds = pcm.len() as f64 / f64::from(OPENAI_RATE);
                let _ = out.send(Out::Event(json!({
                    "type": "conversation.item.input_audio_transcription.completed",
                    "event_id": event_id, "item_id": id, "content_index": 0,
                    "transcript": text, "usage": {"type": "duration", "seconds": seconds},
                })));
            }
            let _ = transcript_tx.send(Some(text));
        });
        self.items.push(Item {
            id: item_id,
            transcript: Some(transcript_rx),
            audio_sent: Arc::new(AtomicU64::new(0)),
        });
        true
    }

    fn create_response(&mut self, event_id: Option<&str>) {
        if self
            .response
            .as_ref()
            .is_some_and(|r| !r.task.is_finished())
        {
            return self.invalid(
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress. Wait until the response is finished before creating a new one.",
                None,
                event_id,
            );
        }
        let fault = self.shared.faults.take();
        match fault {
            Some(Fault::Stall) => return, // never answered
            Some(Fault::Status {
                kind,
                code,
                message,
                ..
            }) => return self.error(kind, code, message, None, event_id),
            _ => {}
        }
        let response_id = self.id("resp");
        let item_id = self.id("item");
        let transcript = self.items.iter().rev().find_map(|i| i.transcript.clone());
        let voice = self.session["audio"]["output"]["voice"].clone();
        self.emit(
            "response.created",
            json!({"response": {
                "id": response_id, "object": "realtime.response", "status": "in_progress",
                "status_details": null, "output": [], "output_modalities": ["audio"],
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": OPENAI_RATE}, "voice": voice}},
            }}),
        );
        let audio_sent = Arc::new(AtomicU64::new(0));
        self.items.push(Item {
            id: item_id.clone(),
            transcript: None,
            audio_sent: audio_sent.clone(),
        });
        let stream = ResponseStream {
            out: self.out.clone(),
            response_id: response_id.clone(),
            item_id: item_id.clone(),
            audio_sent: audio_sent.clone(),
            realtime: self.shared.realtime_pace.load(Ordering::Relaxed),
            fault,
            next_event: self.next_id * 1000,
        };
        let task = tokio::spawn(stream.run(transcript));
        self.response = Some(Running {
            id: response_id,
            item_id,
            task,
            audio_sent,
        });
    }

    fn cancel(&mut self, event: &Value, event_id: Option<&str>) {
        let active = self.response.as_ref().filter(|r| !r.task.is_finished());
        let matches = match event["response_id"].as_str() {
            None => active.is_some(),
            Some(id) => active.is_some_and(|r| r.id == id),
        };
        if !matches {
            return self.invalid(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                None,
                event_id,
            );
        }
        self.finish_cancelled("client_cancelled");
    }

    /// Stops the response being streamed and reports it `cancelled` for `reason`.
    fn finish_cancelled(&mut self, reason: &str) {
        let Some(running) = self.response.take() else {
            return;
        };
        if running.task.is_finished() {
            return;
        }
        running.task.abort();
        let heard = running.audio_sent.load(Ordering::Relaxed);
        self.emit(
            "response.done",
            json!({"response": {
                "id": running.id, "object": "realtime.response", "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": reason},
                "output": [{"id": running.item_id, "object": "realtime.item", "type": "message",
                            "role": "assistant", "status": "incomplete",
                            "content": [{"type": "output_audio", "transcript": null}]}],
                "usage": {"output_token_details": {"audio_tokens": heard / 480}},
            }}),
        );
    }

    pub(super) fn abort_response(&mut self) {
        if let Some(running) = self.response.take() {
            running.task.abort();
        }
    }

    fn truncate(&mut self, event: &Value, event_id: Option<&str>) {
        let item_id = event["item_id"].as_str().unwrap_or_default().to_owned();
        let Some(audio_end_ms) = event["audio_end_ms"].as_u64() else {
            return self.invalid(
                "missing_required_parameter",
                "Missing required parameter: 'audio_end_ms'.",
                Some("audio_end_ms"),
                event_id,
            );
        };
        if event["content_index"] != 0 {
            return self.invalid(
                "invalid_value",
                "Invalid 'content_index': set it to 0.",
                Some("content_index"),
                event_id,
            );
        }
        let Some(item) = self
            .items
            .iter()
            .find(|i| i.id == item_id && i.transcript.is_none())
        else {
            return self.invalid(
                "invalid_value",
                &format!(
                    "Invalid 'item_id': no assistant message item '{item_id}' in the conversation."
                ),
                Some("item_id"),
                event_id,
            );
        };
        let audio_ms = item.audio_sent.load(Ordering::Relaxed) * 1000 / u64::from(OPENAI_RATE);
        if audio_end_ms > audio_ms {
            return self.invalid(
                "invalid_value",
                &format!("Audio content of {audio_ms}ms is already shorter than {audio_end_ms}ms"),
                Some("audio_end_ms"),
                event_id,
            );
        }
        self.emit(
            "conversation.item.truncated",
            json!({"item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms}),
        );
    }
}
