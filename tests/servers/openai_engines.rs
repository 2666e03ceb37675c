//! What the local OpenAI-protocol servers share: a server thread with its own tokio runtime on
//! 127.0.0.1, the real speech engines behind them (voicebackend's embedded `whisper` STT and
//! `espeak` TTS, so that what they answer is real speech and real transcripts), the faults a
//! test can inject, and OpenAI's error object.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use voicebackend::dsp::resample::StreamResampler;
use voicebackend::provider::stt::{SttResult, SttSink, speech_ring};
use voicebackend::provider::{ProviderRegistry, ProviderSetup, SttProvider, SttTurn, TtsRequest};

/// The rate of OpenAI's `pcm` audio (speech and realtime).
pub const OPENAI_RATE: u32 = 24_000;

/// What a server does instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An answer that is not what the API documents (HTTP: a 200 body of the wrong shape;
    /// realtime: one unreadable message before the response).
    Malformed,
    /// OpenAI's documented error object: HTTP, as the answer with this status; realtime, as an
    /// `error` event refusing `response.create` (the status is not used).
    Status {
        /// HTTP status, e.g. 400, 429, 500.
        status: u16,
        /// `error.type`, e.g. `invalid_request_error`.
        kind: &'static str,
        /// `error.code`, if any.
        code: Option<&'static str>,
        /// `error.message`.
        message: &'static str,
    },
    /// Part of the answer, then the connection is dropped without closing it properly.
    DropMidStream,
    /// The request is read and never answered (until the server stops).
    Stall,
}

/// The faults to inject, request by request (HTTP) or response by response (realtime).
#[derive(Debug, Default)]
pub struct Faults {
    next: Mutex<(VecDeque<Fault>, Option<Fault>)>,
}

impl Faults {
    /// The next `times` requests get `fault`, then the server answers normally again.
    pub fn fail_next(&self, fault: Fault, times: usize) {
        let mut next = self.next.lock().unwrap();
        next.0.extend(std::iter::repeat_n(fault, times));
    }

    /// Every request gets `fault` until [`Faults::clear`].
    pub fn fail_all(&self, fault: Fault) {
        self.next.lock().unwrap().1 = Some(fault);
    }

    /// Normal answers from now on.
    pub fn clear(&self) {
        *self.next.lock().unwrap() = (VecDeque::new(), None);
    }

    /// The fault for the request being answered, if any.
    pub fn take(&self) -> Option<Fault> {
        let mut next = self.next.lock().unwrap();
        next.0.pop_front().or_else(|| next.1.clone())
    }
}

/// OpenAI's error object: `{"error": {"message", "type", "param", "code"}}`.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// How OpenAI quotes a refused key in its 401 message: the start and the last four characters.
pub fn redacted_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// voicebackend's `whisper` provider (Whisper tiny.en from the model cache), loaded once per
/// test process. Servers load it before they accept connections, as a vendor's model is loaded
/// before it serves: loading takes seconds in a debug build and would otherwise look like a
/// slow server to the first request.
pub fn whisper() -> &'static Arc<dyn SttProvider> {
    static WHISPER: OnceLock<Arc<dyn SttProvider>> = OnceLock::new();
    WHISPER.get_or_init(|| {
        ProviderRegistry::global()
            .create_stt("whisper", &ProviderSetup::new(&json!({})))
            .expect("the whisper provider loads (run scripts/fetch-models.sh)")
    })
}

/// Transcribes mono PCM at `rate` with [`whisper`].
pub async fn transcribe(pcm: &[i16], rate: u32) -> String {
    let whisper = tokio::task::spawn_blocking(whisper)
        .await
        .expect("whisper loads");
    let (mut audio_tx, audio_rx) = speech_ring(pcm.len());
    let (results_tx, mut results_rx) = mpsc::unbounded_channel();
    audio_tx.write(pcm);
    drop(audio_tx);
    let turn = SttTurn {
        sample_rate: rate,
        audio: audio_rx,
        results: SttSink::new(1, results_tx),
    };
    whisper.transcribe(turn).await.expect("whisper transcribes");
    while let Ok((_, result)) = results_rx.try_recv() {
        if let SttResult::Final(text) = result {
            return text.trim().to_owned();
        }
    }
    panic!("whisper gave no final transcript")
}

/// Speaks `text` with voicebackend's `espeak` provider at `rate_wpm` words per minute and
/// returns mono PCM at 24 kHz.
pub async fn speak(text: &str, rate_wpm: u32) -> Vec<i16> {
    let espeak = ProviderRegistry::global()
        .create_tts(
            "espeak",
            &ProviderSetup::new(&json!({"voice": "en-us", "rate_wpm": rate_wpm.clamp(80, 450)})),
        )
        .expect("the espeak provider starts (apt-get install espeak-ng)");
    let (text_tx, text_rx) = mpsc::unbounded_channel();
    let (audio_tx, mut audio_rx) = mpsc::channel(16);
    text_tx.send(text.to_owned()).unwrap();
    drop(text_tx);
    let synthesis = tokio::spawn(espeak.synthesize(TtsRequest {
        text: text_rx,
        audio: audio_tx,
    }));
    let mut resampler = StreamResampler::new(espeak.sample_rate(), OPENAI_RATE);
    let mut pcm = Vec::new();
    while let Some(chunk) = audio_rx.recv().await {
        pcm.extend(resampler.push(&chunk));
    }
    pcm.extend(resampler.finish());
    synthesis.await.unwrap().expect("espeak synthesizes");
    pcm
}

/// 16-bit little-endian bytes of `pcm`.
pub fn le_bytes(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// What Whisper hears in `pcm` (16 kHz), lower-cased; for tests outside a runtime.
pub fn hear(pcm: &[i16]) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(transcribe(pcm, 16000)).to_lowercase()
}
