//! The twelve held-out eSpeak NG test sentences Whisper is scored on (`tests/whisper.rs`: the
//! word error rate in the README) and the noise measurements reuse
//! (`tests/noise_suppression.rs`), with the word error rate's two helpers. Included with
//! `#[path]` by the tests that read them.

/// Sentences a caller might say, 6–10 words each.
pub const SENTENCES: [&str; 12] = [
    "The weather is nice today.",
    "Please call me back when you get home.",
    "I would like to book a table for two people.",
    "Can you tell me the way to the train station?",
    "The meeting has been moved to next Tuesday afternoon.",
    "She bought fresh bread and milk at the market.",
    "Turn off the lights in the kitchen, please.",
    "What time does the store open tomorrow morning?",
    "My brother lives in a small house near the river.",
    "We need to finish the report before Friday.",
    "The children are playing in the garden.",
    "Could you send me the document by email?",
];

/// Lower-case words: letters, digits and apostrophes; everything else separates.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Word-level Levenshtein distance.
pub fn word_edits(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut row = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let substitute = prev[j] + usize::from(r != h);
            row[j + 1] = substitute.min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[hypothesis.len()]
}
