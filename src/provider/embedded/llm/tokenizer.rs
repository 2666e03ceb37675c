//! The byte-level BPE tokenizer of a GGUF model whose `tokenizer.ggml.model` is `gpt2` (GPT-2's
//! scheme, used by SmolLM2), read from the file's own vocabulary and merges: no tokenizer.json,
//! no other download.
//!
//! Encoding, as llama.cpp's `smollm` pre-tokenizer does it (`llama-vocab.cpp`): every digit is
//! a piece of its own; the rest is cut by GPT-2's pattern
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` (written out by
//! hand below: the `regex` crate has no look-ahead); each piece's UTF-8 bytes are mapped to
//! GPT-2's printable byte alphabet and merged by rank. The tests compare with token ids that
//! llama.cpp 0.3.36 gave for the same texts.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Content;

use crate::error::{Error, Result};

/// A GGUF model's tokenizer.
pub struct Tokenizer {
    ids: HashMap<String, u32>,
    tokens: Vec<String>,
    /// Control tokens (`<|im_end|>`, `<|endoftext|>`, …): no text.
    control: std::collections::HashSet<u32>,
    /// Merge ranks by pair of symbols.
    ranks: HashMap<(String, String), usize>,
    /// GPT-2's byte → printable character map, and back.
    byte_char: [char; 256],
    char_byte: HashMap<char, u8>,
}

impl Tokenizer {
    /// Reads the vocabulary and merges of `content` (`tokenizer.ggml.tokens` and
    /// `tokenizer.ggml.merges`); `file` names it in errors.
    pub fn from_gguf(content: &Content, file: &str) -> Result<Tokenizer> {
        let bad = |what: &str| Error::invalid_config(format!("agent.model_path: {file}: {what}"));
        let model = content
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| bad("no tokenizer.ggml.model"))?;
        if model != "gpt2" {
            return Err(bad(&format!(
                "tokenizer '{model}' is not supported (only byte-level BPE, 'gpt2')"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            let values = content
                .metadata
                .get(key)
                .and_then(|v| v.to_vec().ok())
                .ok_or_else(|| bad(&format!("no {key}")))?;
            values
                .iter()
                .map(|v| {
                    v.to_string()
                        .cloned()
                        .map_err(|_| bad(&format!("{key} holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let mut tokenizer = Tokenizer::new(tokens, &merges);
        // llama.cpp's token types: 3 is a control token.
        if let Some(types) = content
            .metadata
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
        {
            tokenizer.control = types
                .iter()
                .enumerate()
                .filter(|(_, t)| t.to_i32().is_ok_and(|t| t == 3))
                .map(|(id, _)| id as u32)
                .collect();
        }
        Ok(tokenizer)
    }

    /// A tokenizer of `tokens` (by id) and `merges` (`"a b"`, by rank).
    pub fn new(tokens: Vec<String>, merges: &[String]) -> Tokenizer {
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let ranks = merges
            .iter()
            .enumerate()
            .filter_map(|(rank, m)| {
                let (a, b) = m.split_once(' ')?;
                Some(((a.to_owned(), b.to_owned()), rank))
            })
            .collect();
        let byte_char = byte_alphabet();
        let char_byte = byte_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Tokenizer {
            ids,
            tokens,
            control: Default::default(),
            ranks,
            byte_char,
            char_byte,
        }
    }

    /// The id of a token written as is (a special token such as `<|im_start|>`).
    pub fn special(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The ids of `text` (special tokens in it are ordinary text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for piece in pieces(text) {
            let mapped: String = piece.bytes().map(|b| self.byte_char[b as usize]).collect();
            for symbol in self.merge(&mapped) {
                match self.ids.get(&symbol) {
                    Some(&id) => out.push(id),
                    // A symbol outside the vocabulary: its bytes one by one (each byte's
                    // character is in every byte-level vocabulary).
                    None => out.extend(symbol.chars().filter_map(|c| self.ids.get(&c.to_string()))),
                }
            }
        }
        out
    }

    /// The bytes token `id` stands for (empty for an unknown id).
    pub fn bytes(&self, id: u32) -> Vec<u8> {
        let Some(token) = self
            .tokens
            .get(id as usize)
            .filter(|_| !self.control.contains(&id))
        else {
            return Vec::new();
        };
        token
            .chars()
            .map(|c| self.char_byte.get(&c).copied())
            .collect::<Option<Vec<u8>>>()
            // Not byte-level text.
            .unwrap_or_default()
    }

    /// Applies the merges to one piece, lowest rank first.
    fn merge(&self, piece: &str) -> Vec<String> {
        let mut symbols: Vec<String> = piece.chars().map(String::from).collect();
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&rank| (rank, i))
                })
                .min();
            let Some((_, i)) = best else {
                return symbols;
            };
            let right = symbols.remove(i + 1);
            symbols[i].push_str(&right);
        }
    }
}

/// GPT-2's map of the 256 byte values to printable characters: printable Latin-1 stays, the
/// rest is shifted above U+0100.
fn byte_alphabet() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        map[b as usize] = if printable {
            b as char
        } else {
            let c = char::from_u32(next).expect("below U+0200");
            next += 1;
            c
        };
    }
    map
}

/// The pieces of `text`: digits alone, then GPT-2's pattern on the rest.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c.is_numeric() {
            gpt2_pieces(&text[start..i], &mut out);
            out.push(&text[i..i + c.len_utf8()]);
            start = i + c.len_utf8();
        }
    }
    gpt2_pieces(&text[start..], &mut out);
    out
}

/// GPT-2's pattern on `text` (see the module docs).
fn gpt2_pieces<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    let is_other = |c: char| !c.is_whitespace() && !c.is_alphabetic() && !c.is_numeric();
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        let len = if let Some(n) = contraction(rest) {
            n
        } else {
            let (lead, body) = match first {
                ' ' => (1, &rest[1..]),
                _ => (0, rest),
            };
            let class: Option<fn(char) -> bool> = match body.chars().next() {
                Some(c) if c.is_alphabetic() => Some(char::is_alphabetic),
                Some(c) if c.is_numeric() => Some(char::is_numeric),
                Some(c) if is_other(c) => {
                    Some(|c: char| !c.is_whitespace() && !c.is_alphabetic() && !c.is_numeric())
                }
                _ => None,
            };
            match class {
                Some(class) => lead + run(body, class),
                None => {
                    // Whitespace: `\s+(?!\S)` — all of it at the end, else all but its last
                    // character (which a following ` ?X` takes, or which stands alone).
                    let n = run(rest, char::is_whitespace);
                    let last = rest[..n].chars().last().map_or(0, char::len_utf8);
                    if n == rest.len() || n == last {
                        n
                    } else {
                        n - last
                    }
                }
            }
        };
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
}

/// The length of the run of characters at the start of `text` that `class` accepts.
fn run(text: &str, class: impl Fn(char) -> bool) -> usize {
    text.char_indices()
        .find(|&(_, c)| !class(c))
        .map_or(text.len(), |(i, _)| i)
}

/// The length of an English contraction at the start of `text`, as GPT-2's pattern has them.
fn contraction(text: &str) -> Option<usize> {
    ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
        .iter()
        .find(|c| text.starts_with(*c))
        .map(|c| c.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_follow_llama_cpps_smollm_pre_tokenizer() {
        assert_eq!(
            pieces("Hello world, it's 2024! What's  up?\n"),
            [
                "Hello", " world", ",", " it", "'s", " ", "2", "0", "2", "4", "!", " What", "'s",
                " ", " up", "?", "\n"
            ]
        );
        assert_eq!(
            pieces("  leading spaces\n\nand newlines\t tabs"),
            [
                " ",
                " leading",
                " spaces",
                "\n",
                "\n",
                "and",
                " newlines",
                "\t",
                " tabs"
            ]
        );
        assert_eq!(
            pieces("x=3.14; y = -42"),
            [
                "x", "=", "3", ".", "1", "4", ";", " y", " =", " -", "4", "2"
            ]
        );
    }

    /// Ids llama.cpp (llama-cpp-python 0.3.36, `Llama.tokenize(text, add_bos=False,
    /// special=False)`) gives for these texts with SmolLM2-135M-Instruct's GGUF file.
    const LLAMA_CPP: &[(&str, &[u32])] = &[
        (
            "What is the capital of France?",
            &[1780, 314, 260, 3575, 282, 4649, 47],
        ),
        (
            "Hello world, it's 2024! What's  up?\n",
            &[
                19556, 905, 28, 357, 506, 216, 34, 32, 34, 36, 17, 1812, 506, 216, 614, 47, 198,
            ],
        ),
        (
            "  leading spaces\n\nand newlines\t tabs",
            &[216, 2899, 5600, 198, 198, 397, 725, 5110, 197, 29416],
        ),
        (
            "Café naïve 日本語 — ok?!",
            &[
                51, 1939, 2756, 15486, 46494, 17097, 241, 115, 40993, 179, 120, 248, 1841, 10907,
                17593,
            ],
        ),
        (
            "I'll we've they're don't",
            &[57, 3060, 392, 3543, 502, 2316, 1326, 982],
        ),
        (
            "x=3.14; y = -42",
            &[104, 45, 35, 30, 33, 36, 43, 329, 446, 731, 36, 34],
        ),
    ];

    #[test]
    fn smollm2_texts_get_the_ids_llama_cpp_gives_them() {
        let path = super::super::default_model_path();
        let mut file = std::fs::File::open(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/fetch-models.sh installs it)",
                path.display()
            )
        });
        let content = Content::read(&mut file).unwrap();
        let tokenizer = Tokenizer::from_gguf(&content, "smollm2").unwrap();
        for (text, ids) in LLAMA_CPP {
            assert_eq!(tokenizer.encode(text), *ids, "{text:?}");
            let bytes: Vec<u8> = ids.iter().flat_map(|&id| tokenizer.bytes(id)).collect();
            assert_eq!(String::from_utf8(bytes).unwrap(), *text);
        }
        assert_eq!(tokenizer.special("<|im_start|>"), Some(1));
        assert_eq!(tokenizer.special("<|im_end|>"), Some(2));
        assert!(tokenizer.bytes(2).is_empty(), "a special token is no text");
    }

    #[test]
    fn the_byte_alphabet_is_a_bijection() {
        let map = byte_alphabet();
        let distinct: std::collections::HashSet<char> = map.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(map[b' ' as usize], 'Ġ');
        assert_eq!(map[b'\n' as usize], 'Ċ');
    }
}
