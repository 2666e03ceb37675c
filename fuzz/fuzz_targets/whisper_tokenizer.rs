//! The embedded Whisper's `tokenizer.json` and `config.json`: the vocabulary, the special tokens
//! and the suppression rules, then decoding token ids with them.
//!
//! Input: the model's output size (u16 little-endian), the tokenizer JSON, a NUL, the config
//! JSON, a NUL, then token ids (u16 little-endian each) to decode. (JSON text never holds a raw
//! NUL, so the parts are unambiguous.)
//!
//! Checks: no panic; a vocabulary has the model's size; suppression never touches a logit outside
//! the vocabulary and leaves at least the others alone; decoding any ids gives trimmed text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::provider::embedded::whisper::decode::{Suppression, Vocabulary, argmax};

fuzz_target!(|data: &[u8]| {
    let Some((size, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let vocab_size = usize::from(u16::from_le_bytes(*size));
    let mut parts = rest.splitn(3, |&b| b == 0);
    let (Some(tokenizer), config, ids) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Ok(tokenizer) = std::str::from_utf8(tokenizer) else {
        return;
    };
    let Ok(vocab) = Vocabulary::from_tokenizer_json(tokenizer, vocab_size) else {
        return;
    };
    assert_eq!(vocab.len(), vocab_size);
    let ids: Vec<u32> = ids
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
        .collect();
    let text = vocab.decode(&ids);
    assert_eq!(text.trim(), text);
    let _ = vocab.prompt();
    let Some(Ok(config)) = config.map(std::str::from_utf8) else {
        return;
    };
    let Ok(suppression) = Suppression::from_config_json(config, &vocab) else {
        return;
    };
    for step in [0, 1] {
        let mut logits = vec![0.0f32; vocab_size + 3];
        suppression.apply(&mut logits, step);
        assert!(
            logits[vocab_size..].iter().all(|&l| l == 0.0),
            "past the vocabulary"
        );
        let _ = argmax(&logits[..vocab_size]);
    }
});
