//! One response of the local OpenAI-protocol Realtime server: the reply to the last user item
//! ("You said: …"), spoken by eSpeak NG and streamed as 100 ms audio deltas with its transcript,
//! and the per-response faults (an unreadable message before it, a connection dropped halfway).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::Out;
use crate::servers::openai_engines::{Fault, OPENAI_RATE, le_bytes, speak};

/// Samples per audio delta: 100 ms.
pub const DELTA_SAMPLES: usize = OPENAI_RATE as usize / 10;

/// Streams one response: the reply to the last user item, spoken.
pub(super) struct ResponseStream {
    pub(super) out: mpsc::UnboundedSender<Out>,
    pub(super) response_id: String,
    pub(super) item_id: String,
    pub(super) audio_sent: Arc<AtomicU64>,
    pub(super) realtime: bool,
    pub(super) fault: Option<Fault>,
    pub(super) next_event: u64,
}

impl ResponseStream {
    fn emit(&mut self, kind: &str, fields: Value) {
        self.next_event += 1;
        let mut event = json!({"type": kind, "event_id": format!("event_r{}", self.next_event)});
        if let (Some(event), Value::Object(fields)) = (event.as_object_mut(), fields) {
            event.extend(fields);
        }
        let _ = self.out.send(Out::Event(event));
    }

    pub(super) async fn run(mut self, transcript: Option<watch::Receiver<Option<String>>>) {
        let heard = match transcript {
            Some(mut rx) => rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|t| t.clone())
                .unwrap_or_default(),
            None => String::new(),
        };
        let reply = if heard.is_empty() {
            "I did not hear anything.".to_owned()
        } else {
            format!("You said: {}.", heard.trim_end_matches(['.', '!', '?']))
        };
        if self.fault == Some(Fault::Malformed) {
            let _ = self.out.send(Out::Raw(
                "{\"type\": \"response.output_audio.delta\", \"delta\": ".into(),
            ));
        }
        let (response_id, item_id) = (self.response_id.clone(), self.item_id.clone());
        let ids = json!({"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0});
        let with_ids = |fields: Value| {
            let mut all = ids.clone();
            if let (Some(all), Value::Object(fields)) = (all.as_object_mut(), fields) {
                all.extend(fields);
            }
            all
        };
        self.emit(
            "response.output_item.added",
            json!({"response_id": response_id, "output_index": 0, "item": {
                "id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "in_progress", "content": [],
            }}),
        );
        self.emit(
            "response.content_part.added",
            with_ids(json!({"part": {"type": "audio", "transcript": ""}})),
        );
        let audio = speak(&reply, 175).await;
        let deltas: Vec<&[i16]> = audio.chunks(DELTA_SAMPLES).collect();
        let words: Vec<&str> = reply.split_inclusive(' ').collect();
        let mut words_sent = 0;
        for (i, delta) in deltas.iter().enumerate() {
            if self.fault == Some(Fault::DropMidStream) && i == deltas.len() / 2 {
                let _ = self.out.send(Out::Drop);
                return;
            }
            // The transcript keeps pace with the audio.
            let due = (i + 1) * words.len() / deltas.len();
            while words_sent < due {
                self.emit(
                    "response.output_audio_transcript.delta",
                    with_ids(json!({"delta": words[words_sent]})),
                );
                words_sent += 1;
            }
            self.emit(
                "response.output_audio.delta",
                with_ids(json!({"delta": BASE64.encode(le_bytes(delta))})),
            );
            self.audio_sent
                .fetch_add(delta.len() as u64, Ordering::Relaxed);
            if self.realtime {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        while words_sent < words.len() {
            self.emit(
                "response.output_audio_transcript.delta",
                with_ids(json!({"delta": words[words_sent]})),
            );
            words_sent += 1;
        }
        self.emit("response.output_audio.done", with_ids(json!({})));
        self.emit(
            "response.output_audio_transcript.done",
            with_ids(json!({"transcript": reply})),
        );
        let part = json!({"type": "output_audio", "transcript": reply});
        self.emit(
            "response.content_part.done",
            with_ids(json!({"part": part})),
        );
        let item = json!({
            "id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
            "status": "completed", "content": [part],
        });
        self.emit(
            "response.output_item.done",
            json!({"response_id": response_id, "output_index": 0, "item": item}),
        );
        self.emit(
            "response.done",
            json!({"response": {
                "id": response_id, "object": "realtime.response", "status": "completed",
                "status_details": null, "output": [item], "output_modalities": ["audio"],
            }}),
        );
    }
}
