//! The `whisper` STT provider: Whisper (tiny.en by default) run in-process on the CPU with candle,
//! pure Rust, from a CTranslate2 model directory (`model.bin`, `config.json`, `tokenizer.json`).
//!
//! Config (`stt_config`, strict):
//! - `model_dir` (string): the model directory; default
//!   `${VOICEBACKEND_MODELS:-$HOME/.cache/voicebackend/models}/whisper-tiny.en`, which
//!   `scripts/fetch-models.sh` fills.
//! - `threads` (integer 1..=64, optional): size of a thread pool of this provider's own for
//!   inference; without it candle's global pool (one thread per core) is used.
//!
//! The model is loaded once per provider (when the backend is created; a missing or corrupt
//! directory fails there with `VB_ERR_INVALID_CONFIG`) and shared by all sessions. Each turn
//! collects its audio (resampled to 16 kHz if needed), then runs feature extraction, the encoder
//! and greedy decoding in `spawn_blocking` on its own clone of the network: the weights are shared,
//! the decoder's cache is per turn, so concurrent turns need no lock.
//!
//! Latency: the encoder is given only the turn's audio plus [`PAD_FRAMES`] (3 s) of silence, at
//! least [`MIN_FRAMES`] (8 s) in all, instead of Whisper's fixed 30 s window (see
//! [`EncoderContext`]): for a 3 s turn that is 400 encoder positions instead of 1500, and the
//! encoder cost falls by more than that ratio (attention is quadratic). Word accuracy on eSpeak
//! speech stays that of the full window. A trimmed window can make Whisper loop (repeat its
//! transcript), the more so the shorter the window, hence the minimum; as a safety net, decoding
//! stops when the last [`model::REPEAT_NGRAM`] tokens repeat earlier output or at the token
//! limit, and the window is then decoded again with the full 30 s context.
//!
//! Whisper's no-speech rule applies (no-speech probability above 0.6 and mean log-probability
//! below −1 gives an empty transcript); like Whisper, pure silence may still come out as "you":
//! the engine's VAD keeps such turns away.

pub mod ct2;
pub mod decode;
pub use crate::dsp::mel;
pub mod model;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

pub use model::{EncoderContext, Transcription, WhisperModel};

use crate::dsp::resample::StreamResampler;
use crate::error::{Error, Result};
use crate::provider::stt::{SttProvider, SttTurn};
use crate::provider::{BoxFuture, ProviderSetup};

/// The registry name.
pub const NAME: &str = "whisper";

/// Silence (in 10 ms mel frames) appended after a turn's audio when the encoder context is
/// trimmed to the audio.
pub const PAD_FRAMES: usize = 300;

/// The fewest mel frames given to the encoder when its context is trimmed.
///
/// Both values were chosen on development utterances (15 one- or two-word replies and 16
/// sentences, not the scored ones): 3 s of padding alone gave 9.9 % WER with 7 of 31 turns
/// looping (and so decoded twice); a minimum of 8 s gave 8.6 % with none (10 s: 8.6 %, 12 s:
/// 7.9 %, the full 30 s window: 7.2 %).
pub const MIN_FRAMES: usize = 800;

/// The encoder context the provider uses.
pub const CONTEXT: EncoderContext = EncoderContext::Trimmed {
    pad_frames: PAD_FRAMES,
    min_frames: MIN_FRAMES,
};

/// Largest accepted `threads`.
const MAX_THREADS: u64 = 64;

/// The model directory used when `model_dir` is not given:
/// `${VOICEBACKEND_MODELS:-$HOME/.cache/voicebackend/models}/whisper-tiny.en`.
pub fn default_model_dir() -> PathBuf {
    let cache = std::env::var_os("VOICEBACKEND_MODELS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/voicebackend/models")
        });
    cache.join("whisper-tiny.en")
}

/// The parsed `stt_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperConfig {
    /// Directory holding `model.bin`, `config.json` and `tokenizer.json`.
    pub model_dir: PathBuf,
    /// Own inference thread pool size; `None` for candle's global pool.
    pub threads: Option<usize>,
}

impl WhisperConfig {
    /// Validates `stt_config`: an object (or null) with only the keys `model_dir` and `threads`.
    pub fn from_json(config: &Value) -> Result<WhisperConfig> {
        let empty = serde_json::Map::new();
        let object = match config {
            Value::Null => &empty,
            Value::Object(o) => o,
            other => {
                return Err(Error::invalid_config(format!(
                    "stt_config: expected an object, found {other}"
                )));
            }
        };
        let mut parsed = WhisperConfig {
            model_dir: default_model_dir(),
            threads: None,
        };
        for (key, value) in object {
            match key.as_str() {
                "model_dir" => match value.as_str() {
                    Some(dir) if !dir.is_empty() => parsed.model_dir = PathBuf::from(dir),
                    _ => {
                        return Err(Error::invalid_config(format!(
                            "stt_config.model_dir: expected a non-empty string, found {value}"
                        )));
                    }
                },
                "threads" => match value.as_u64() {
                    _ if value.is_null() => parsed.threads = None,
                    Some(n) if (1..=MAX_THREADS).contains(&n) => parsed.threads = Some(n as usize),
                    _ => {
                        return Err(Error::invalid_config(format!(
                            "stt_config.threads: expected an integer from 1 to {MAX_THREADS}, found {value}"
                        )));
                    }
                },
                _ => {
                    return Err(Error::invalid_config(format!(
                        "stt_config.{key}: unknown key (the whisper provider takes model_dir, threads)"
                    )));
                }
            }
        }
        Ok(parsed)
    }
}

/// Loads the model in `dir`, mapping any failure to `VB_ERR_INVALID_CONFIG` with the path.
pub fn load_model(dir: &std::path::Path) -> Result<WhisperModel> {
    if !dir.is_dir() {
        return Err(Error::invalid_config(format!(
            "stt_config.model_dir: {} is not a directory (run scripts/fetch-models.sh to fetch \
             Whisper tiny.en)",
            dir.display()
        )));
    }
    WhisperModel::load(dir).map_err(|reason| {
        Error::invalid_config(format!(
            "stt_config.model_dir: {}: not a usable Whisper model: {reason}",
            dir.display()
        ))
    })
}

/// The `whisper` speech-to-text provider.
pub struct WhisperStt {
    model: Arc<WhisperModel>,
    pool: Option<Arc<rayon::ThreadPool>>,
    context: EncoderContext,
}

impl WhisperStt {
    /// Loads the model named by `config` (validated as for the registry) and makes a provider.
    pub fn new(config: &WhisperConfig) -> Result<WhisperStt> {
        let pool = match config.threads {
            None => None,
            Some(n) => Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("vb-whisper-{i}"))
                    .build()
                    .map_err(|e| Error::internal(format!("whisper: cannot start threads: {e}")))?,
            )),
        };
        let load = || load_model(&config.model_dir);
        let model = match &pool {
            Some(pool) => pool.install(load)?,
            None => load()?,
        };
        Ok(WhisperStt {
            model: Arc::new(model),
            pool,
            context: CONTEXT,
        })
    }

    /// The loaded model.
    pub fn model(&self) -> &Arc<WhisperModel> {
        &self.model
    }
}

/// The registry factory: validates `stt_config` and loads the model.
pub fn create(setup: &ProviderSetup) -> Result<Arc<dyn SttProvider>> {
    let config = WhisperConfig::from_json(setup.config)?;
    Ok(Arc::new(WhisperStt::new(&config)?))
}

impl SttProvider for WhisperStt {
    fn name(&self) -> &str {
        NAME
    }

    fn transcribe(&self, turn: SttTurn) -> BoxFuture<'static, Result<()>> {
        let model = Arc::clone(&self.model);
        let pool = self.pool.clone();
        let context = self.context;
        Box::pin(async move {
            let SttTurn {
                sample_rate,
                mut audio,
                results,
            } = turn;
            if sample_rate == 0 {
                return Err(Error::invalid_argument("whisper: sample rate 0"));
            }
            let mut resampler = (sample_rate != mel::SAMPLE_RATE)
                .then(|| StreamResampler::new(sample_rate, mel::SAMPLE_RATE));
            let mut pcm: Vec<i16> = Vec::new();
            let mut chunk = Vec::new();
            while audio.recv_into(&mut chunk).await {
                match resampler.as_mut() {
                    Some(r) => pcm.extend(r.push(&chunk)),
                    None => pcm.extend_from_slice(&chunk),
                }
                chunk.clear();
            }
            if let Some(r) = resampler.as_mut() {
                pcm.extend(r.finish());
            }
            let text = if pcm.is_empty() {
                String::new()
            } else {
                tokio::task::spawn_blocking(move || {
                    let samples: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
                    let run = || model.transcribe(&samples, context);
                    match pool {
                        Some(pool) => pool.install(run),
                        None => run(),
                    }
                })
                .await
                .map_err(|e| Error::internal(format!("whisper: inference task failed: {e}")))?
                .map_err(|e| Error::provider(NAME, e))?
            };
            results.final_transcript(text);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VbStatus;
    use serde_json::json;

    #[test]
    fn config_is_strict() {
        let c = WhisperConfig::from_json(&json!({})).unwrap();
        assert_eq!(c.model_dir, default_model_dir());
        assert_eq!(c.threads, None);
        let c = WhisperConfig::from_json(&json!({"model_dir": "/m", "threads": 2})).unwrap();
        assert_eq!(c.model_dir, PathBuf::from("/m"));
        assert_eq!(c.threads, Some(2));
        assert!(WhisperConfig::from_json(&Value::Null).is_ok());

        let err = WhisperConfig::from_json(&json!({"foo": 1})).unwrap_err();
        assert_eq!(err.status(), VbStatus::VB_ERR_INVALID_CONFIG);
        assert!(
            err.message().starts_with("stt_config.foo: unknown key"),
            "{err}"
        );
        for bad in [
            json!({"threads": 0}),
            json!({"threads": "2"}),
            json!({"threads": 1.5}),
        ] {
            let err = WhisperConfig::from_json(&bad).unwrap_err();
            assert!(err.message().starts_with("stt_config.threads:"), "{err}");
        }
        let err = WhisperConfig::from_json(&json!({"model_dir": 3})).unwrap_err();
        assert!(err.message().starts_with("stt_config.model_dir:"), "{err}");
        assert!(WhisperConfig::from_json(&json!([1])).is_err());
    }

    #[test]
    fn missing_model_dir_is_a_config_error_naming_the_path() {
        let dir = "/nonexistent/vb-whisper-model";
        let err = match create(&ProviderSetup::new(&json!({ "model_dir": dir }))) {
            Ok(_) => panic!("a missing model directory was accepted"),
            Err(e) => e,
        };
        assert_eq!(err.status(), VbStatus::VB_ERR_INVALID_CONFIG);
        assert!(err.message().contains(dir), "{err}");
        assert!(err.message().contains("fetch-models.sh"), "{err}");
    }
}
