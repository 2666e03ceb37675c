//! The twelve held-out eSpeak NG test sentences Whisper is scored on (`tests/whisper.rs`: the
//! word error rate in the README) and the noise measurements reuse
//! (`tests/noise_suppression.rs`). Included with `#[path]` by the tests that read them.

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
