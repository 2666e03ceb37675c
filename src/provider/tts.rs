//! Text to speech: one call per reply, text streamed in as the agent writes it.

use tokio::sync::mpsc;

use super::BoxFuture;
use crate::error::Result;

/// One reply to speak.
pub struct TtsRequest {
    /// Text chunks as the agent streams them; the channel closes when the reply has ended.
    pub text: mpsc::UnboundedReceiver<String>,
    /// Mono PCM at [`TtsProvider::sample_rate`]. Bounded: a full channel is back-pressure, so
    /// synthesis waits for playout instead of buffering a whole reply.
    pub audio: mpsc::Sender<Vec<i16>>,
}

/// A text-to-speech engine.
pub trait TtsProvider: Send + Sync {
    /// The registry name.
    fn name(&self) -> &str;
    /// Rate of the audio it produces.
    fn sample_rate(&self) -> u32;
    /// Speaks one reply and resolves after its last audio chunk was sent. Dropping the future
    /// cancels synthesis (barge-in).
    fn synthesize(&self, request: TtsRequest) -> BoxFuture<'static, Result<()>>;
}

/// Splits streamed text into sentences, for engines that synthesize sentence by sentence: text
/// goes in as it arrives and whole sentences come out as soon as they end. The first piece of a
/// reply may end at a clause (a comma, colon or dash after at least [`FIRST_CLAUSE_WORDS`]
/// words), so that speech starts before a long first sentence is complete.
#[derive(Debug, Default)]
pub struct SentenceSplitter {
    buffer: String,
    /// Whether a piece came out already (only the first may end at a clause).
    started: bool,
}

/// Words the first clause of a reply needs before it is spoken on its own ("To boil an egg,"
/// goes ahead; "Well," waits for more).
pub const FIRST_CLAUSE_WORDS: usize = 3;

impl SentenceSplitter {
    /// Adds a chunk and returns the sentences it completed.
    pub fn push(&mut self, chunk: &str) -> Vec<String> {
        self.buffer.push_str(chunk);
        let mut sentences = Vec::new();
        loop {
            let started = self.started;
            let buffer = &self.buffer;
            let end = buffer.char_indices().find_map(|(i, c)| {
                let next = buffer[i + c.len_utf8()..].chars().next();
                if !next.is_some_and(char::is_whitespace) {
                    return None;
                }
                let sentence_end = matches!(c, '.' | '!' | '?' | ';' | '\n');
                let clause_end = !started
                    && matches!(c, ',' | ':' | '—' | '–')
                    && buffer[..i].split_whitespace().count() >= FIRST_CLAUSE_WORDS;
                (sentence_end || clause_end).then_some(i + c.len_utf8())
            });
            let Some(end) = end else { break };
            let sentence: String = self.buffer.drain(..end).collect();
            if !sentence.trim().is_empty() {
                sentences.push(sentence.trim().to_owned());
                self.started = true;
            }
        }
        sentences
    }

    /// Returns whatever is left once the text has ended.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buffer);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_come_out_as_soon_as_they_end() {
        let mut s = SentenceSplitter::default();
        assert!(s.push("Hello the").is_empty());
        assert_eq!(s.push("re. How are"), ["Hello there."]);
        assert_eq!(
            s.push(" you? 3.5 is a number! "),
            ["How are you?", "3.5 is a number!"]
        );
        assert!(s.push("Bye").is_empty());
        assert_eq!(s.finish().as_deref(), Some("Bye"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn a_long_first_sentence_starts_at_its_first_clause() {
        let mut s = SentenceSplitter::default();
        assert!(s.push("Well, to boil").is_empty(), "one word is no clause");
        assert_eq!(s.push(" an egg, you need"), ["Well, to boil an egg,"]);
        // Only the first piece: later commas wait for the sentence's end.
        assert!(s.push(" water, a pot, and").is_empty());
        assert_eq!(s.push(" time. Then"), ["you need water, a pot, and time."]);
    }
}
