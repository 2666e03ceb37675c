//! The `openai` text-to-speech provider: one streamed speech request per sentence (see the
//! parent module for the wire format).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Endpoint, NAME, SPEECH_RATE, non_empty};
use crate::config::{Secret, parse_section};
use crate::error::{Error, Result};
use crate::net::with_retry;
use crate::provider::tts::{SentenceSplitter, TtsProvider, TtsRequest};
use crate::provider::{BoxFuture, ProviderSetup};

const TTS_KEYS: [&str; 7] = [
    "api_key",
    "base_url",
    "model",
    "voice",
    "speed",
    "instructions",
    "timeout_ms",
];

/// Settings of the `openai` TTS provider (`tts_config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct TtsSettings {
    api_key: Option<Secret>,
    base_url: Option<String>,
    model: Option<String>,
    voice: Option<String>,
    speed: Option<f64>,
    instructions: Option<String>,
    timeout_ms: Option<u32>,
}

/// The `openai` text-to-speech provider.
pub struct OpenAiTts {
    inner: Arc<TtsInner>,
}

struct TtsInner {
    endpoint: Endpoint,
    /// The request body without `input`.
    body: serde_json::Map<String, Value>,
}

impl OpenAiTts {
    /// Validates `tts_config` and prepares the endpoint (no request is made yet).
    pub fn new(setup: &ProviderSetup) -> Result<OpenAiTts> {
        let s: TtsSettings = parse_section("tts_config", setup.config, &TTS_KEYS)?;
        let endpoint = Endpoint::new(
            "tts_config",
            s.api_key.as_ref(),
            s.base_url.as_deref(),
            s.timeout_ms,
            "audio/speech",
            setup.retry,
        )?;
        let model =
            non_empty("tts_config.model", s.model)?.unwrap_or_else(|| "gpt-4o-mini-tts".into());
        let voice = non_empty("tts_config.voice", s.voice)?.unwrap_or_else(|| "alloy".into());
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!(model));
        body.insert("voice".into(), json!(voice));
        body.insert("response_format".into(), json!("pcm"));
        if let Some(speed) = s.speed {
            if !(0.25..=4.0).contains(&speed) {
                return Err(Error::invalid_config(format!(
                    "tts_config.speed: {speed} is outside 0.25–4.0"
                )));
            }
            body.insert("speed".into(), json!(speed));
        }
        if let Some(instructions) = non_empty("tts_config.instructions", s.instructions)? {
            body.insert("instructions".into(), json!(instructions));
        }
        Ok(OpenAiTts {
            inner: Arc::new(TtsInner { endpoint, body }),
        })
    }

    /// The speech endpoint, as shown in messages.
    pub fn url(&self) -> &str {
        &self.inner.endpoint.shown
    }
}

impl TtsProvider for OpenAiTts {
    fn name(&self) -> &str {
        NAME
    }

    fn sample_rate(&self) -> u32 {
        SPEECH_RATE
    }

    fn synthesize(&self, request: TtsRequest) -> BoxFuture<'static, Result<()>> {
        Box::pin(speak_reply(self.inner.clone(), request))
    }
}

/// One reply: a request per sentence, in order, as the sentences complete.
async fn speak_reply(tts: Arc<TtsInner>, mut request: TtsRequest) -> Result<()> {
    let mut splitter = SentenceSplitter::default();
    let mut sentences: VecDeque<String> = VecDeque::new();
    let mut text_open = true;
    loop {
        if let Some(sentence) = sentences.pop_front() {
            if !tts.speak(&sentence, &request.audio).await? {
                return Ok(()); // nobody plays this reply any more
            }
            continue;
        }
        if !text_open {
            return Ok(());
        }
        tokio::select! {
            chunk = request.text.recv() => match chunk {
                Some(chunk) => sentences.extend(splitter.push(&chunk)),
                None => {
                    text_open = false;
                    sentences.extend(splitter.finish());
                }
            },
            () = request.audio.closed() => return Ok(()),
        }
    }
}

impl TtsInner {
    /// Speaks one sentence into `audio`, retrying per the rules; a retry resumes after the audio
    /// already forwarded. `false` when the receiver of the audio is gone.
    async fn speak(&self, sentence: &str, audio: &mpsc::Sender<Vec<i16>>) -> Result<bool> {
        let mut body = self.body.clone();
        body.insert("input".into(), json!(sentence));
        let body = Value::Object(body).to_string();
        // Bytes of this sentence's PCM forwarded so far (always even).
        let forwarded = AtomicUsize::new(0);
        with_retry(&self.endpoint.retry, || {
            self.stream_once(&body, audio, &forwarded)
        })
        .await
    }

    /// One request: forwards the PCM after the first `forwarded` bytes, piece by piece.
    async fn stream_once(
        &self,
        body: &str,
        audio: &mpsc::Sender<Vec<i16>>,
        forwarded: &AtomicUsize,
    ) -> Result<bool> {
        let e = &self.endpoint;
        let mut response = e
            .send(|r| {
                r.header(CONTENT_TYPE, "application/json")
                    .body(body.to_owned())
            })
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if content_type.starts_with("application/json") || content_type.starts_with("text/") {
            return Err(e.unreadable(
                "speech",
                format!("Content-Type {content_type} where PCM audio was expected"),
            ));
        }
        let mut position = 0usize; // bytes of this answer seen so far
        let mut odd_byte: Option<u8> = None;
        while let Some(chunk) = e.chunk(&mut response).await? {
            let skip = forwarded
                .load(Ordering::Relaxed)
                .saturating_sub(position)
                .min(chunk.len());
            position += chunk.len();
            let fresh = &chunk[skip..];
            if fresh.is_empty() {
                continue;
            }
            let mut pcm = Vec::with_capacity(fresh.len() / 2 + 1);
            let mut rest = fresh;
            if let Some(low) = odd_byte.take() {
                pcm.push(i16::from_le_bytes([low, rest[0]]));
                rest = &rest[1..];
            }
            let pairs = rest.chunks_exact(2);
            odd_byte = pairs.remainder().first().copied();
            pcm.extend(pairs.map(|b| i16::from_le_bytes([b[0], b[1]])));
            forwarded.fetch_add(pcm.len() * 2, Ordering::Relaxed);
            if !pcm.is_empty() && audio.send(pcm).await.is_err() {
                return Ok(false);
            }
        }
        // A trailing odd byte is half a sample: not audio, dropped.
        Ok(true)
    }
}
