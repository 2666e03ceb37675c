//! Loads a CTranslate2 Whisper model into candle's Whisper implementation and runs one
//! transcription.
//!
//! Name mapping (CTranslate2 `WhisperSpec` → candle / Hugging Face names, `L` a layer index):
//!
//! | CTranslate2 | candle |
//! |---|---|
//! | `encoder/conv{1,2}/{weight,bias}` | `model.encoder.conv{1,2}.{weight,bias}` |
//! | `{enc,dec}oder/layer_L/self_attention/linear_0` (fused q, k, v rows) | `….layers.L.self_attn.{q,k,v}_proj` |
//! | `…/self_attention/linear_1` | `….layers.L.self_attn.out_proj` |
//! | `…/self_attention/layer_norm/{gamma,beta}` | `….layers.L.self_attn_layer_norm.{weight,bias}` |
//! | `decoder/layer_L/attention/linear_0` (query) | `model.decoder.layers.L.encoder_attn.q_proj` |
//! | `decoder/layer_L/attention/linear_1` (fused k, v rows) | `….encoder_attn.{k,v}_proj` |
//! | `decoder/layer_L/attention/linear_2` | `….encoder_attn.out_proj` |
//! | `decoder/layer_L/attention/layer_norm` | `….encoder_attn_layer_norm` |
//! | `…/ffn/linear_0`, `…/ffn/linear_1`, `…/ffn/layer_norm` | `….fc1`, `….fc2`, `….final_layer_norm` |
//! | `{enc,dec}oder/layer_norm` | `model.{enc,dec}oder.layer_norm` |
//! | `decoder/embeddings/weight` (also the output projection) | `model.decoder.embed_tokens.weight` |
//! | `decoder/position_encodings/encodings` | `model.decoder.embed_positions.weight` |
//! | `encoder/position_encodings/encodings` | — (candle computes the same sinusoids; checked) |
//!
//! Whisper's key projection has no bias: the key third of a fused bias is dropped, which is exact
//! even if it were not zero (adding `q·b` to every score of a query leaves the softmax unchanged).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::Config;
use candle_transformers::models::whisper::model::Whisper;

use super::ct2::Ct2Model;
use super::decode::{self, Decoded, Outcome, Suppression, Vocabulary};
use super::mel::{HOP_LENGTH, MelSpectrogram, N_FRAMES, SAMPLE_RATE};

/// How much audio context the encoder is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderContext {
    /// Whisper's fixed 30-second window (3000 mel frames, 1500 encoder positions), the audio
    /// padded with silence: what the model was trained on.
    Full,
    /// Only the audio's length plus `pad_frames` mel frames of silence (10 ms each), and at
    /// least `min_frames` in all, rounded up to an even count: far less encoder work for a
    /// short turn.
    Trimmed {
        /// Silence frames appended after the audio.
        pad_frames: usize,
        /// The fewest frames given to the encoder (a very short context makes Whisper loop).
        min_frames: usize,
    },
}

impl EncoderContext {
    /// Mel frames to compute for `samples` samples of 16 kHz audio (≤ 30 s).
    pub fn frames(self, samples: usize) -> usize {
        match self {
            EncoderContext::Full => N_FRAMES,
            EncoderContext::Trimmed {
                pad_frames,
                min_frames,
            } => {
                let frames = (samples.div_ceil(HOP_LENGTH) + pad_frames).max(min_frames);
                (frames + frames % 2).min(N_FRAMES)
            }
        }
    }
}

/// A loaded Whisper model with its vocabulary, decoding rules and feature extractor. Immutable:
/// each transcription works on its own cheap clone of the network (weights are shared; only the
/// decoder's key/value cache is per clone).
pub struct WhisperModel {
    whisper: Whisper,
    vocab: Vocabulary,
    suppression: Suppression,
    mel: MelSpectrogram,
    device: Device,
}

/// Maps CTranslate2's variables to candle's names, converting to `f32`.
struct Mapper<'a> {
    ct2: &'a Ct2Model,
    out: HashMap<String, Tensor>,
    device: Device,
}

impl Mapper<'_> {
    fn values(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        let var = self
            .ct2
            .get(name)
            .ok_or_else(|| format!("model.bin has no variable {name}"))?;
        let values = var
            .to_f32()
            .ok_or_else(|| format!("variable {name} is {:?}, not a float type", var.dtype))?;
        Ok((var.shape.clone(), values))
    }

    fn put(&mut self, name: String, shape: Vec<usize>, values: Vec<f32>) -> Result<(), String> {
        let t = Tensor::from_vec(values, shape, &self.device).map_err(|e| e.to_string())?;
        self.out.insert(name, t);
        Ok(())
    }

    /// Copies `from` to `to` unchanged.
    fn copy(&mut self, from: &str, to: &str) -> Result<(), String> {
        let (shape, values) = self.values(from)?;
        self.put(to.to_owned(), shape, values)
    }

    fn layer_norm(&mut self, from: &str, to: &str) -> Result<(), String> {
        self.copy(&format!("{from}/gamma"), &format!("{to}.weight"))?;
        self.copy(&format!("{from}/beta"), &format!("{to}.bias"))
    }

    fn linear(&mut self, from: &str, to: &str) -> Result<(), String> {
        self.copy(&format!("{from}/weight"), &format!("{to}.weight"))?;
        self.copy(&format!("{from}/bias"), &format!("{to}.bias"))
    }

    /// Splits a fused linear (`parts.len()` equal row blocks) into one linear per part, in
    /// order; a part named with a trailing `!` keeps no bias (Whisper's key projection).
    fn split_linear(&mut self, from: &str, to: &str, parts: &[&str]) -> Result<(), String> {
        let (shape, weight) = self.values(&format!("{from}/weight"))?;
        let (bshape, bias) = self.values(&format!("{from}/bias"))?;
        let n = parts.len();
        let [rows, cols] = shape[..] else {
            return Err(format!(
                "{from}/weight has shape {shape:?}, expected 2 dimensions"
            ));
        };
        if rows % n != 0 || bshape != [rows] {
            return Err(format!(
                "{from}: shapes {shape:?} and {bshape:?} do not split into {n} projections"
            ));
        }
        let d = rows / n;
        for (i, part) in parts.iter().enumerate() {
            let (part, keep_bias) = match part.strip_suffix('!') {
                Some(p) => (p, false),
                None => (*part, true),
            };
            let w = weight[i * d * cols..(i + 1) * d * cols].to_vec();
            self.put(format!("{to}.{part}.weight"), vec![d, cols], w)?;
            if keep_bias {
                let b = bias[i * d..(i + 1) * d].to_vec();
                self.put(format!("{to}.{part}.bias"), vec![d], b)?;
            }
        }
        Ok(())
    }

    fn int(&self, name: &str) -> Option<i64> {
        self.ct2.get(name).and_then(|v| v.to_i64())
    }
}

/// Counts `prefix/layer_N` blocks.
fn count_layers(ct2: &Ct2Model, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            ct2.variables
                .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
        })
        .count()
}

/// Whisper's encoder positional embedding (OpenAI's `sinusoids`).
fn sinusoids(length: usize, channels: usize) -> Vec<f32> {
    let half = channels / 2;
    let increment = 10000f64.ln() / (half as f64 - 1.0);
    let mut out = vec![0f32; length * channels];
    for t in 0..length {
        for i in 0..half {
            let angle = t as f64 * (-increment * i as f64).exp();
            out[t * channels + i] = angle.sin() as f32;
            out[t * channels + half + i] = angle.cos() as f32;
        }
    }
    out
}

/// Converts a parsed CTranslate2 Whisper model into candle tensors named as candle's
/// [`Whisper`] expects, and the matching [`Config`].
pub fn candle_tensors(
    ct2: &Ct2Model,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, Config), String> {
    if !ct2.spec.is_empty() && ct2.spec != "WhisperSpec" {
        return Err(format!("model.bin holds a {}, not a WhisperSpec", ct2.spec));
    }
    let mut m = Mapper {
        ct2,
        out: HashMap::new(),
        device: device.clone(),
    };
    let conv1 = ct2
        .get("encoder/conv1/weight")
        .ok_or("model.bin has no variable encoder/conv1/weight")?;
    let [d_model, n_mels, 3] = conv1.shape[..] else {
        return Err(format!("encoder/conv1/weight has shape {:?}", conv1.shape));
    };
    let embeddings = ct2
        .get("decoder/embeddings/weight")
        .ok_or("model.bin has no variable decoder/embeddings/weight")?;
    let vocab_size = embeddings.shape.first().copied().unwrap_or(0);
    let shape_of = |name: &str| ct2.get(name).map(|v| v.shape.clone()).unwrap_or_default();
    let enc_pos = shape_of("encoder/position_encodings/encodings");
    let dec_pos = shape_of("decoder/position_encodings/encodings");
    let max_source_positions = enc_pos.first().copied().unwrap_or(N_FRAMES / 2);
    let max_target_positions = *dec_pos
        .first()
        .ok_or("model.bin has no variable decoder/position_encodings/encodings")?;
    for (what, expected) in [("decoder/activation", 3), ("decoder/pre_norm", 1)] {
        if let Some(v) = m.int(what).filter(|&v| v != expected) {
            return Err(format!("{what} is {v}, Whisper's is {expected}"));
        }
    }
    if let Some(flag) = m.int("decoder/scale_embeddings").filter(|&v| v != 0) {
        return Err(format!(
            "decoder/scale_embeddings is {flag}, Whisper's is 0"
        ));
    }
    let heads = |name: &str| -> Result<usize, String> {
        let n = m.int(name).unwrap_or((d_model / 64) as i64);
        match usize::try_from(n) {
            Ok(n) if n > 0 && d_model % n == 0 => Ok(n),
            _ => Err(format!("{name} is {n}, which does not divide {d_model}")),
        }
    };
    let config = Config {
        num_mel_bins: n_mels,
        max_source_positions,
        d_model,
        encoder_attention_heads: heads("encoder/num_heads")?,
        encoder_layers: count_layers(ct2, "encoder"),
        vocab_size,
        max_target_positions,
        decoder_attention_heads: heads("decoder/num_heads")?,
        decoder_layers: count_layers(ct2, "decoder"),
        suppress_tokens: Vec::new(),
    };
    if config.encoder_layers == 0 || config.decoder_layers == 0 {
        return Err("model.bin has no encoder or no decoder layers".into());
    }

    // The encoder's positional table must be Whisper's sinusoids, which candle computes itself.
    if let Ok((shape, values)) = m.values("encoder/position_encodings/encodings") {
        let expected = sinusoids(shape.first().copied().unwrap_or(0), d_model);
        let worst = values
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        if values.len() != expected.len() || worst > 1e-2 {
            return Err(format!(
                "encoder/position_encodings/encodings are not Whisper's sinusoids (off by {worst})"
            ));
        }
    }

    for side in ["encoder", "decoder"] {
        let to = format!("model.{side}");
        let layers = if side == "encoder" {
            config.encoder_layers
        } else {
            config.decoder_layers
        };
        for l in 0..layers {
            let from = format!("{side}/layer_{l}");
            let to = format!("{to}.layers.{l}");
            m.split_linear(
                &format!("{from}/self_attention/linear_0"),
                &format!("{to}.self_attn"),
                &["q_proj", "k_proj!", "v_proj"],
            )?;
            m.linear(
                &format!("{from}/self_attention/linear_1"),
                &format!("{to}.self_attn.out_proj"),
            )?;
            m.layer_norm(
                &format!("{from}/self_attention/layer_norm"),
                &format!("{to}.self_attn_layer_norm"),
            )?;
            if side == "decoder" {
                m.linear(
                    &format!("{from}/attention/linear_0"),
                    &format!("{to}.encoder_attn.q_proj"),
                )?;
                m.split_linear(
                    &format!("{from}/attention/linear_1"),
                    &format!("{to}.encoder_attn"),
                    &["k_proj!", "v_proj"],
                )?;
                m.linear(
                    &format!("{from}/attention/linear_2"),
                    &format!("{to}.encoder_attn.out_proj"),
                )?;
                m.layer_norm(
                    &format!("{from}/attention/layer_norm"),
                    &format!("{to}.encoder_attn_layer_norm"),
                )?;
            }
            m.linear(&format!("{from}/ffn/linear_0"), &format!("{to}.fc1"))?;
            m.linear(&format!("{from}/ffn/linear_1"), &format!("{to}.fc2"))?;
            m.layer_norm(
                &format!("{from}/ffn/layer_norm"),
                &format!("{to}.final_layer_norm"),
            )?;
        }
        m.layer_norm(&format!("{side}/layer_norm"), &format!("{to}.layer_norm"))?;
    }
    m.linear("encoder/conv1", "model.encoder.conv1")?;
    m.linear("encoder/conv2", "model.encoder.conv2")?;
    m.copy(
        "decoder/embeddings/weight",
        "model.decoder.embed_tokens.weight",
    )?;
    m.copy(
        "decoder/position_encodings/encodings",
        "model.decoder.embed_positions.weight",
    )?;
    Ok((m.out, config))
}

impl WhisperModel {
    /// Loads `model.bin`, `tokenizer.json` and `config.json` from `dir`. The error says what is
    /// missing or wrong (without the directory, which the caller adds).
    pub fn load(dir: &Path) -> Result<WhisperModel, String> {
        let read = |file: &str| {
            std::fs::read_to_string(dir.join(file)).map_err(|e| format!("cannot read {file}: {e}"))
        };
        let tokenizer_json = read("tokenizer.json")?;
        let config_json = read("config.json")?;
        let ct2 = Ct2Model::open(&dir.join("model.bin")).map_err(|e| format!("model.bin: {e}"))?;
        let device = Device::Cpu;
        let (tensors, config) = candle_tensors(&ct2, &device)?;
        drop(ct2);
        let vocab = Vocabulary::from_tokenizer_json(&tokenizer_json, config.vocab_size)
            .map_err(|e| format!("tokenizer.json: {e}"))?;
        let suppression = Suppression::from_config_json(&config_json, &vocab)
            .map_err(|e| format!("config.json: {e}"))?;
        let n_mels = config.num_mel_bins;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let whisper = Whisper::load(&vb, config)
            .map_err(|e| format!("model.bin does not fit candle's Whisper: {e}"))?;
        Ok(WhisperModel {
            whisper,
            vocab,
            suppression,
            mel: MelSpectrogram::new(n_mels),
            device,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.whisper.config
    }

    /// Transcribes 16 kHz mono audio in [-1, 1] of any length (windows of 30 s, joined by a
    /// space). Runs on the calling thread (and candle's thread pool): call it from a blocking
    /// context.
    pub fn transcribe(
        &self,
        samples: &[f32],
        context: EncoderContext,
    ) -> candle_core::Result<String> {
        Ok(self.transcribe_detailed(samples, context)?.text)
    }

    /// [`WhisperModel::transcribe`], also telling how often a trimmed context fell back.
    pub fn transcribe_detailed(
        &self,
        samples: &[f32],
        context: EncoderContext,
    ) -> candle_core::Result<Transcription> {
        let window = N_FRAMES * HOP_LENGTH;
        let mut texts = Vec::new();
        let mut fallbacks = 0;
        for chunk in samples.chunks(window) {
            let mut window = self.transcribe_window(chunk, context)?;
            if window.decoded.outcome != Outcome::End && window.trimmed {
                // A trimmed context lets Whisper lose track of where the audio ends: it repeats
                // itself. Whisper's own 30 s window does not have that problem.
                fallbacks += 1;
                window = self.transcribe_window(chunk, EncoderContext::Full)?;
            }
            if decode::is_no_speech(window.no_speech_prob, window.decoded.avg_logprob) {
                continue;
            }
            let text = self.vocab.decode(&window.decoded.tokens);
            if !text.is_empty() {
                texts.push(text);
            }
        }
        Ok(Transcription {
            text: texts.join(" "),
            fallbacks,
        })
    }

    /// Decodes at most 30 s of audio.
    fn transcribe_window(
        &self,
        samples: &[f32],
        context: EncoderContext,
    ) -> candle_core::Result<Window> {
        if samples.is_empty() {
            return Ok(Window {
                decoded: Decoded::empty(),
                no_speech_prob: 0.0,
                trimmed: false,
            });
        }
        let mut model = self.whisper.clone();
        let n_frames = context.frames(samples.len());
        let trimmed = n_frames < N_FRAMES;
        let n_mels = model.config.num_mel_bins;
        let mel = self.mel.compute(samples, n_frames);
        let mel = Tensor::from_vec(mel, (1, n_mels, n_frames), &self.device)?;
        let features = model.encoder.forward(&mel, true)?;

        let seconds = samples.len() as f64 / f64::from(SAMPLE_RATE);
        let prompt = self.vocab.prompt();
        let max_tokens = max_new_tokens(seconds, model.config.max_target_positions, prompt.len());
        let repeat_ngram = trimmed.then_some(REPEAT_NGRAM);
        let mut no_speech_prob = 0.0;
        let to_vec = |logits: Tensor| logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
        let decoded = decode::greedy(
            &prompt,
            self.vocab.eot,
            &self.suppression,
            max_tokens,
            repeat_ngram,
            |tokens, step| {
                let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
                let hidden = model.decoder.forward(&input, &features, step == 0)?;
                if step == 0
                    && let Some(no_speech) = self.vocab.no_speech
                {
                    // Whisper's no-speech probability: at the start-of-transcript position,
                    // before any suppression.
                    let at_sot = to_vec(model.decoder.final_linear(&hidden.i((.., 0..1))?)?)?;
                    no_speech_prob = decode::probability(&at_sot, no_speech);
                }
                let last = hidden.i((.., tokens.len() - 1..))?;
                to_vec(model.decoder.final_linear(&last)?)
            },
        )?;
        Ok(Window {
            decoded,
            no_speech_prob,
            trimmed,
        })
    }
}

/// What one window's decoding gave.
struct Window {
    decoded: Decoded,
    no_speech_prob: f32,
    /// Whether the encoder saw less than Whisper's 30 s.
    trimmed: bool,
}

/// A transcript and how it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcription {
    /// The text.
    pub text: String,
    /// Windows whose trimmed-context decoding looped and were decoded again with the full window.
    pub fallbacks: usize,
}

/// Length of the token run whose repetition marks a looping hypothesis under a trimmed context.
pub const REPEAT_NGRAM: usize = 4;

/// The most new tokens worth decoding for `seconds` of audio: Whisper's own limit (half the
/// text context) and no more than about eight tokens a second (fast speech is under six), which
/// stops a repetition loop early.
fn max_new_tokens(seconds: f64, text_ctx: usize, prompt: usize) -> usize {
    let by_length = 12 + (seconds * 8.0).ceil() as usize;
    by_length
        .min(text_ctx / 2)
        .min(text_ctx.saturating_sub(prompt + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::embedded::whisper::ct2::tests::Writer;

    #[test]
    fn encoder_context_frames() {
        assert_eq!(EncoderContext::Full.frames(16_000), 3000);
        let trimmed = EncoderContext::Trimmed {
            pad_frames: 50,
            min_frames: 120,
        };
        assert_eq!(trimmed.frames(16_000), 150);
        assert_eq!(trimmed.frames(16_001), 152);
        assert_eq!(trimmed.frames(1_600), 120);
        assert_eq!(trimmed.frames(480_000), 3000);
        assert_eq!(max_new_tokens(3.0, 448, 2), 36);
        assert_eq!(max_new_tokens(30.0, 448, 2), 224);
    }

    #[test]
    fn sinusoids_match_whisper() {
        let s = sinusoids(4, 8);
        // t = 0: sin 0 = 0, cos 0 = 1.
        assert_eq!(&s[..8], &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        // t = 1, channel 0: timescale 1 → sin(1).
        assert!((s[8] - 1f32.sin()).abs() < 1e-6);
        // Last channel pair uses 1/10000.
        assert!((s[8 + 3] - (1e-4f32).sin()).abs() < 1e-7);
    }

    /// A complete miniature Whisper (d = 8, 2 heads, 1 layer each side, 4 mel bins) in
    /// CTranslate2's layout.
    fn tiny_ct2() -> Writer {
        let (d, mels, vocab) = (8, 4, 12);
        let ramp = |n: usize| {
            (0..n)
                .map(|i| (i as f32 * 0.37).sin() * 0.1)
                .collect::<Vec<_>>()
        };
        let mut w = Writer::default();
        w.f16("encoder/conv1/weight", &[d, mels, 3], &ramp(d * mels * 3))
            .f16("encoder/conv1/bias", &[d], &ramp(d))
            .f16("encoder/conv2/weight", &[d, d, 3], &ramp(d * d * 3))
            .f16("encoder/conv2/bias", &[d], &ramp(d))
            .f16(
                "encoder/position_encodings/encodings",
                &[6, d],
                &sinusoids(6, d),
            )
            .f16("decoder/embeddings/weight", &[vocab, d], &ramp(vocab * d))
            .f16(
                "decoder/position_encodings/encodings",
                &[10, d],
                &ramp(10 * d),
            )
            .i16_scalar("encoder/num_heads", 2)
            .i16_scalar("decoder/num_heads", 2)
            .i8_scalar("decoder/activation", 3)
            .alias("decoder/projection/weight", "decoder/embeddings/weight");
        for side in ["encoder", "decoder"] {
            let l = format!("{side}/layer_0");
            let mut linear = |name: &str, rows: usize, cols: usize| {
                w.f16(&format!("{name}/weight"), &[rows, cols], &ramp(rows * cols));
                w.f16(&format!("{name}/bias"), &[rows], &ramp(rows));
            };
            linear(&format!("{l}/self_attention/linear_0"), 3 * d, d);
            linear(&format!("{l}/self_attention/linear_1"), d, d);
            linear(&format!("{l}/ffn/linear_0"), 4 * d, d);
            linear(&format!("{l}/ffn/linear_1"), d, 4 * d);
            if side == "decoder" {
                linear(&format!("{l}/attention/linear_0"), d, d);
                linear(&format!("{l}/attention/linear_1"), 2 * d, d);
                linear(&format!("{l}/attention/linear_2"), d, d);
            }
            let mut norms = vec![
                format!("{l}/self_attention/layer_norm"),
                format!("{l}/ffn/layer_norm"),
                format!("{side}/layer_norm"),
            ];
            if side == "decoder" {
                norms.push(format!("{l}/attention/layer_norm"));
            }
            for n in norms {
                w.f16(&format!("{n}/gamma"), &[d], &vec![1.0; d]);
                w.f16(&format!("{n}/beta"), &[d], &vec![0.0; d]);
            }
        }
        w
    }

    #[test]
    fn maps_names_splits_fused_projections_and_loads_into_candle() {
        let ct2 = Ct2Model::parse(&tiny_ct2().bytes()).unwrap();
        let (tensors, config) = candle_tensors(&ct2, &Device::Cpu).unwrap();
        assert_eq!(config.d_model, 8);
        assert_eq!(config.num_mel_bins, 4);
        assert_eq!(config.vocab_size, 12);
        assert_eq!((config.encoder_layers, config.decoder_layers), (1, 1));
        assert_eq!(config.encoder_attention_heads, 2);
        assert_eq!(
            (config.max_source_positions, config.max_target_positions),
            (6, 10)
        );
        let dims = |n: &str| tensors[n].dims().to_vec();
        assert_eq!(
            dims("model.encoder.layers.0.self_attn.q_proj.weight"),
            [8, 8]
        );
        assert_eq!(dims("model.decoder.layers.0.encoder_attn.v_proj.bias"), [8]);
        assert!(!tensors.contains_key("model.encoder.layers.0.self_attn.k_proj.bias"));
        // The value projection is the third block of the fused rows.
        let fused = ct2.variables["encoder/layer_0/self_attention/linear_0/weight"]
            .to_f32()
            .unwrap();
        let v = tensors["model.encoder.layers.0.self_attn.v_proj.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(v, fused[2 * 64..3 * 64]);
        let k = tensors["model.decoder.layers.0.encoder_attn.k_proj.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let fused_kv = ct2.variables["decoder/layer_0/attention/linear_1/weight"]
            .to_f32()
            .unwrap();
        assert_eq!(k, fused_kv[..64]);

        // candle accepts every name and shape, and the network runs.
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let mut whisper = Whisper::load(&vb, config).unwrap();
        let mel = Tensor::zeros((1, 4, 12), DType::F32, &Device::Cpu).unwrap();
        let features = whisper.encoder.forward(&mel, true).unwrap();
        assert_eq!(features.dims(), [1, 6, 8]);
        let tokens = Tensor::new(&[[1u32, 2]], &Device::Cpu).unwrap();
        let hidden = whisper.decoder.forward(&tokens, &features, true).unwrap();
        let logits = whisper.decoder.final_linear(&hidden).unwrap();
        assert_eq!(logits.dims(), [1, 2, 12]);
        assert!(
            logits
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .all(|x| x.is_finite())
        );
    }

    #[test]
    fn reports_missing_variables_and_wrong_tables() {
        let mut w = tiny_ct2();
        w.f16("decoder/layer_0/ffn/linear_9/weight", &[1], &[0.0]);
        let ct2 = Ct2Model::parse(&w.bytes()).unwrap();
        assert!(candle_tensors(&ct2, &Device::Cpu).is_ok());

        // Drop the cross-attention output projection.
        let mut ct2 = Ct2Model::parse(&tiny_ct2().bytes()).unwrap();
        ct2.variables
            .remove("decoder/layer_0/attention/linear_2/bias");
        let err = candle_tensors(&ct2, &Device::Cpu).unwrap_err();
        assert!(
            err.contains("decoder/layer_0/attention/linear_2/bias"),
            "{err}"
        );

        // A positional table that is not the sinusoids.
        let mut ct2 = Ct2Model::parse(&tiny_ct2().bytes()).unwrap();
        if let Some(v) = ct2
            .variables
            .get_mut("encoder/position_encodings/encodings")
        {
            v.data.iter_mut().for_each(|b| *b = 0x3c);
        }
        let err = candle_tensors(&ct2, &Device::Cpu).unwrap_err();
        assert!(err.contains("sinusoids"), "{err}");
    }
}
