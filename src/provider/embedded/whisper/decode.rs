//! Text side of Whisper: the byte-level BPE vocabulary (token id → text, read from
//! `tokenizer.json`), the special tokens, the suppression rules (`config.json`) and greedy
//! decoding without timestamps.
//!
//! Only decoding (ids → text) is needed, never encoding, so a full tokenizer library is not used:
//! GPT-2's byte-level scheme maps each byte to one printable character, and decoding maps them
//! back.

use std::collections::HashMap;

use serde::Deserialize;

/// Token ids and text of a Whisper vocabulary.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// Bytes of each token id; special tokens hold their literal text.
    tokens: Vec<Vec<u8>>,
    /// Ids of the added (special) tokens.
    special_from: u32,
    /// `<|endoftext|>`.
    pub eot: u32,
    /// `<|startoftranscript|>`.
    pub sot: u32,
    /// `<|notimestamps|>`.
    pub no_timestamps: u32,
    /// `<|en|>` and `<|transcribe|>` for a multilingual model; `None` for an English-only one.
    pub english_transcribe: Option<(u32, u32)>,
    /// `<|nocaptions|>` (`<|nospeech|>` in newer models), if the vocabulary has it.
    pub no_speech: Option<u32>,
}

#[derive(Deserialize)]
struct TokenizerJson {
    model: TokenizerModel,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
}

#[derive(Deserialize)]
struct TokenizerModel {
    vocab: HashMap<String, u32>,
}

#[derive(Deserialize)]
struct AddedToken {
    id: u32,
    content: String,
}

/// GPT-2's byte → character table: printable bytes map to themselves, the rest to U+0100 + n.
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[usize::from(b)] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + n).unwrap_or('\u{FFFD}');
            n += 1;
            c
        };
    }
    table
}

impl Vocabulary {
    /// Reads a Hugging Face `tokenizer.json` (byte-level BPE, as Whisper's). `vocab_size` is the
    /// model's output size: every id below it must have a token.
    pub fn from_tokenizer_json(json: &str, vocab_size: usize) -> Result<Vocabulary, String> {
        let parsed: TokenizerJson =
            serde_json::from_str(json).map_err(|e| format!("not a tokenizer file: {e}"))?;
        let mut char_to_byte = HashMap::with_capacity(256);
        for (b, c) in byte_to_char().iter().enumerate() {
            char_to_byte.insert(*c, b as u8);
        }
        let mut tokens: Vec<Option<Vec<u8>>> = vec![None; vocab_size];
        for (text, &id) in &parsed.model.vocab {
            let Some(slot) = tokens.get_mut(id as usize) else {
                continue; // ids past the model's output can never be produced
            };
            let bytes = text
                .chars()
                .map(|c| char_to_byte.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| format!("token {id} ({text:?}) is not byte-level BPE"))?;
            *slot = Some(bytes);
        }
        let mut special: HashMap<&str, u32> = HashMap::new();
        let mut special_from = u32::MAX;
        for added in &parsed.added_tokens {
            special.insert(&added.content, added.id);
            special_from = special_from.min(added.id);
            if let Some(slot) = tokens.get_mut(added.id as usize) {
                *slot = Some(added.content.as_bytes().to_vec());
            }
        }
        // Ids past the added tokens (Whisper's timestamps, which tokenizer.json may omit) are
        // special; an ordinary id without a token means the file does not fit the model.
        if let Some(missing) = tokens.iter().position(Option::is_none)
            && (missing as u32) < special_from
        {
            return Err(format!(
                "no token with id {missing} (the model has {vocab_size} outputs)"
            ));
        }
        let need = |name: &str| {
            special
                .get(name)
                .copied()
                .ok_or_else(|| format!("no special token {name}"))
        };
        let eot = need("<|endoftext|>")?;
        let sot = need("<|startoftranscript|>")?;
        let no_timestamps = need("<|notimestamps|>")?;
        // English-only models (".en") have 51864 outputs and take no language or task token.
        let english_transcribe = if vocab_size >= 51865 {
            Some((need("<|en|>")?, need("<|transcribe|>")?))
        } else {
            None
        };
        let no_speech = need("<|nospeech|>")
            .or_else(|_| need("<|nocaptions|>"))
            .ok();
        Ok(Vocabulary {
            no_speech,
            tokens: tokens.into_iter().map(Option::unwrap_or_default).collect(),
            special_from,
            eot,
            sot,
            no_timestamps,
            english_transcribe,
        })
    }

    /// Number of token ids.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens the decoder starts from: `<|startoftranscript|>` (plus `<|en|><|transcribe|>`
    /// for a multilingual model), then `<|notimestamps|>`.
    pub fn prompt(&self) -> Vec<u32> {
        let mut prompt = vec![self.sot];
        if let Some((en, transcribe)) = self.english_transcribe {
            prompt.extend([en, transcribe]);
        }
        prompt.push(self.no_timestamps);
        prompt
    }

    /// The text of `ids`, skipping special tokens, with surrounding spaces trimmed.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if id >= self.special_from {
                continue;
            }
            if let Some(token) = self.tokens.get(id as usize) {
                bytes.extend_from_slice(token);
            }
        }
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }
}

/// Token suppression rules of greedy decoding.
#[derive(Debug, Clone)]
pub struct Suppression {
    /// Never produced: non-speech symbols and special tokens (`suppress_ids` of `config.json`),
    /// plus `<|notimestamps|>` and every timestamp token.
    always: Vec<u32>,
    /// Not produced as the first token: the blank (" ") and `<|endoftext|>`
    /// (`suppress_ids_begin`).
    at_begin: Vec<u32>,
}

#[derive(Deserialize)]
struct GenerationConfig {
    #[serde(default)]
    suppress_ids: Vec<i64>,
    #[serde(default)]
    suppress_ids_begin: Vec<i64>,
}

impl Suppression {
    /// Rules from CTranslate2's Whisper `config.json` and the vocabulary. Without the file's
    /// lists, Whisper's defaults for the blank and `<|endoftext|>` at the first step still apply.
    pub fn from_config_json(json: &str, vocab: &Vocabulary) -> Result<Suppression, String> {
        let parsed: GenerationConfig =
            serde_json::from_str(json).map_err(|e| format!("not a Whisper config: {e}"))?;
        let valid = |ids: Vec<i64>| -> Vec<u32> {
            ids.into_iter()
                .filter_map(|id| u32::try_from(id).ok())
                .filter(|&id| (id as usize) < vocab.len())
                .collect()
        };
        let mut always = valid(parsed.suppress_ids);
        always.extend(vocab.no_timestamps..vocab.len() as u32);
        always.sort_unstable();
        always.dedup();
        let mut at_begin = valid(parsed.suppress_ids_begin);
        if at_begin.is_empty() {
            // " " and <|endoftext|>, as far as the vocabulary has them.
            at_begin = valid(vec![220, vocab.eot.into()]);
        }
        Ok(Suppression { always, at_begin })
    }

    /// Sets the suppressed tokens' logits to −∞ for decoding step `step` (0 = first token).
    pub fn apply(&self, logits: &mut [f32], step: usize) {
        let begin: &[u32] = if step == 0 { &self.at_begin } else { &[] };
        for &id in self.always.iter().chain(begin) {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// Index of the largest value (the first on ties); `None` when all are −∞ or NaN.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l > f32::NEG_INFINITY && best.is_none_or(|(_, b)| l > b) {
            best = Some((i, l));
        }
    }
    best.map(|(i, _)| i as u32)
}

/// How greedy decoding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The model produced `<|endoftext|>`.
    End,
    /// The output began to repeat itself (a looping hypothesis); decoding stopped there.
    Repeat,
    /// The token limit was reached first.
    Limit,
}

/// The result of [`greedy`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The new tokens, without the prompt and the end token.
    pub tokens: Vec<u32>,
    /// Why decoding stopped.
    pub outcome: Outcome,
    /// Mean log-probability of the chosen tokens (the end token included, over
    /// `tokens.len() + 1` as OpenAI's implementation divides), after suppression.
    pub avg_logprob: f32,
}

impl Decoded {
    /// Nothing decoded (empty audio).
    pub fn empty() -> Decoded {
        Decoded {
            tokens: Vec::new(),
            outcome: Outcome::End,
            avg_logprob: 0.0,
        }
    }
}

/// Whisper's rule for a window without speech: the probability of the no-speech token at the
/// start-of-transcript position is above 0.6 and the transcript's mean log-probability is
/// below −1.
pub fn is_no_speech(no_speech_prob: f32, avg_logprob: f32) -> bool {
    no_speech_prob > 0.6 && avg_logprob < -1.0
}

/// `ln Σ exp(l)` over the finite logits.
fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    max + sum.ln()
}

/// The softmax probability of `id` among `logits`.
pub fn probability(logits: &[f32], id: u32) -> f32 {
    logits
        .get(id as usize)
        .map_or(0.0, |&l| (l - log_sum_exp(logits)).exp())
}

/// Whether the last `n` tokens of `tokens` already occur earlier in it (without overlap).
pub fn ends_with_repeat(tokens: &[u32], n: usize) -> bool {
    if n == 0 || tokens.len() < 2 * n {
        return false;
    }
    let (head, tail) = tokens.split_at(tokens.len() - n);
    head.windows(n).any(|w| w == tail)
}

/// Greedy decoding: starting from `prompt`, repeatedly asks `next_logits` for the logits of the
/// next token given all tokens so far, applies `suppression`, and appends the best token until
/// `<|endoftext|>`, `max_tokens` new tokens, or — with `repeat_ngram` `Some(n)` — until the last
/// `n` new tokens repeat an earlier run of the output.
pub fn greedy<E>(
    prompt: &[u32],
    eot: u32,
    suppression: &Suppression,
    max_tokens: usize,
    repeat_ngram: Option<usize>,
    mut next_logits: impl FnMut(&[u32], usize) -> Result<Vec<f32>, E>,
) -> Result<Decoded, E> {
    let mut tokens = prompt.to_vec();
    let mut outcome = Outcome::Limit;
    let mut sum_logprob = 0.0f32;
    for step in 0..max_tokens {
        let mut logits = next_logits(&tokens, step)?;
        suppression.apply(&mut logits, step);
        let best = argmax(&logits);
        if let Some(id) = best {
            sum_logprob += logits[id as usize] - log_sum_exp(&logits);
        }
        match best {
            Some(id) if id != eot => tokens.push(id),
            _ => {
                outcome = Outcome::End;
                break;
            }
        }
        if let Some(n) = repeat_ngram
            && ends_with_repeat(&tokens[prompt.len()..], n)
        {
            outcome = Outcome::Repeat;
            break;
        }
    }
    let tokens = tokens.split_off(prompt.len());
    Ok(Decoded {
        avg_logprob: sum_logprob / (tokens.len() + 1) as f32,
        tokens,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_vocab() -> Vocabulary {
        // ids 0..5 ordinary, 5.. special, as Whisper's layout in miniature.
        // The timestamp id 8 has no entry, as in Whisper's tokenizer.json.
        let json = r#"{
            "model": {"type": "BPE", "vocab": {"H": 0, "ello": 1, "Ġworld": 2, "!": 3, "Ġ": 4}},
            "added_tokens": [
                {"id": 5, "content": "<|endoftext|>"},
                {"id": 6, "content": "<|startoftranscript|>"},
                {"id": 7, "content": "<|notimestamps|>"}
            ]
        }"#;
        Vocabulary::from_tokenizer_json(json, 9).unwrap()
    }

    #[test]
    fn probabilities_and_no_speech_rule() {
        let logits = [0.0, (3.0f32).ln(), f32::NEG_INFINITY];
        assert!((probability(&logits, 1) - 0.75).abs() < 1e-6);
        assert_eq!(probability(&logits, 2), 0.0);
        assert_eq!(probability(&logits, 9), 0.0);
        assert!(is_no_speech(0.9, -1.5));
        assert!(!is_no_speech(0.9, -0.5));
        assert!(!is_no_speech(0.5, -1.5));
        // Certain tokens: log-probability 0.
        let v = tiny_vocab();
        let s = Suppression::from_config_json("{}", &v).unwrap();
        let out = greedy::<()>(&v.prompt(), v.eot, &s, 5, None, |tokens, _| {
            let mut l = vec![f32::NEG_INFINITY; 9];
            l[if tokens.len() < 4 { 0 } else { 5 }] = 1.0;
            Ok(l)
        })
        .unwrap();
        assert_eq!((out.tokens.len(), out.avg_logprob), (2, 0.0));
    }

    #[test]
    fn repeats_are_found_anywhere_before_the_tail() {
        assert!(ends_with_repeat(&[1, 2, 3, 9, 1, 2, 3], 3));
        assert!(ends_with_repeat(&[5, 1, 2, 7, 8, 1, 2], 2));
        assert!(!ends_with_repeat(&[1, 2, 3, 1, 2], 3));
        assert!(!ends_with_repeat(&[1, 1, 1], 2)); // overlapping runs do not count
        assert!(ends_with_repeat(&[1, 1, 1, 1], 2));
        assert!(!ends_with_repeat(&[1, 2], 0));
    }

    #[test]
    fn byte_table_is_gpt2s() {
        let t = byte_to_char();
        assert_eq!(t[usize::from(b' ')], 'Ġ');
        assert_eq!(t[usize::from(b'\n')], 'Ċ');
        assert_eq!(t[usize::from(b'a')], 'a');
        assert_eq!(t[0], '\u{100}');
        let mut unique = t.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 256);
    }

    #[test]
    fn decodes_bytes_and_skips_specials() {
        let v = tiny_vocab();
        assert_eq!(v.len(), 9);
        assert_eq!((v.eot, v.sot, v.no_timestamps), (5, 6, 7));
        assert_eq!(v.prompt(), vec![6, 7]);
        assert_eq!(v.decode(&[6, 7, 0, 1, 2, 3, 5]), "Hello world!");
        assert_eq!(v.decode(&[4, 0, 4]), "H");
        assert!(Vocabulary::from_tokenizer_json("{}", 9).is_err());
        // An id without a token is an error.
        assert!(
            Vocabulary::from_tokenizer_json(
                r#"{"model": {"vocab": {"a": 0}}, "added_tokens": []}"#,
                2
            )
            .is_err()
        );
    }

    #[test]
    fn the_default_first_step_suppression_stays_inside_a_small_vocabulary() {
        // Nine tokens: the blank of Whisper's real vocabulary (220) is not one of them, so only
        // <|endoftext|> is suppressed at the first step, and nothing past the vocabulary.
        let v = tiny_vocab();
        let s = Suppression::from_config_json("{}", &v).unwrap();
        let mut l = vec![0.0; 9 + 256];
        s.apply(&mut l, 0);
        assert!(l[5].is_infinite(), "<|endoftext|>");
        assert!(l[9..].iter().all(|x| x.is_finite()), "past the vocabulary");
    }

    #[test]
    fn suppression_and_greedy_loop() {
        let v = tiny_vocab();
        let s = Suppression::from_config_json(
            r#"{"suppress_ids": [3, -1, 99], "suppress_ids_begin": [4, 5]}"#,
            &v,
        )
        .unwrap();
        // "!" (3), <|notimestamps|> (7) and the timestamp (8) are always suppressed.
        let mut l = vec![0.0; 9];
        s.apply(&mut l, 1);
        assert_eq!(
            l.iter().map(|x| x.is_finite()).collect::<Vec<_>>(),
            [true, true, true, false, true, true, true, false, false]
        );
        // At the first step the blank (4) and <|endoftext|> (5) are too.
        let mut l = vec![0.0; 9];
        s.apply(&mut l, 0);
        assert!(l[4].is_infinite() && l[5].is_infinite() && l[0].is_finite());

        // A scripted model: wants to end at once (suppressed, so "ello"), then "H", then "!"
        // (suppressed, so "ello"), then a timestamp (suppressed, so the end).
        let script = [
            vec![0.0, 1.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            vec![0.0, 2.0, 0.0, 9.0, 0.0, 1.0, 0.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 9.5],
        ];
        let mut seen = Vec::new();
        let out = greedy::<()>(&v.prompt(), v.eot, &s, 10, None, |tokens, step| {
            seen.push(tokens.len());
            Ok(script[step].clone())
        })
        .unwrap();
        assert_eq!(out.tokens, vec![1, 0, 1]);
        assert_eq!(out.outcome, Outcome::End);
        assert!(out.avg_logprob < 0.0 && out.avg_logprob.is_finite());
        assert_eq!(seen, vec![2, 3, 4, 5]);
        assert_eq!(v.decode(&out.tokens), "elloHello");
        // max_tokens bounds the loop.
        let out = greedy::<()>(&v.prompt(), v.eot, &s, 2, None, |_, _| Ok(vec![1.0; 9])).unwrap();
        assert_eq!(out.tokens, vec![0, 0]);
        assert_eq!(out.outcome, Outcome::Limit);
        // A looping model: 0 1 2 0 1 2 … stops once "0 1 2" comes again.
        let out = greedy::<()>(&v.prompt(), v.eot, &s, 50, Some(3), |tokens, _| {
            let mut l = vec![0.0; 9];
            l[(tokens.len() - 2) % 3] = 1.0;
            Ok(l)
        })
        .unwrap();
        assert_eq!(out.tokens, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(out.outcome, Outcome::Repeat);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NAN]), None);
    }
}
