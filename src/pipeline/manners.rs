//! Interruptions with manners (`interruptions.decide_by` `"words"`): when the user speaks over
//! the agent, the realtime thread only pauses the reply; the session task decides here, from the
//! user's words, whether that was an interruption or a listener's backchannel ("mm-hmm",
//! "okay") or a noise, which resume the reply where it paused. Runs on the session task.

use std::time::Duration;

use crate::config::{DecideBy, InterruptionConfig};

/// What the user's speech over a paused reply was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Words that take the turn: the reply is cancelled and the turn answered.
    Interruption,
    /// A backchannel, or no words at all: the reply resumes; the turn is not answered.
    Resume,
}

/// The decision rules of one session.
#[derive(Debug, Clone)]
pub struct Manners {
    /// Each backchannel as its words.
    backchannels: Vec<Vec<String>>,
    /// A pause that no turn follows resumes after this.
    pub resume_after: Duration,
}

impl Manners {
    /// The rules of `config`; `None` unless interruptions are decided by words.
    pub fn of(config: &InterruptionConfig) -> Option<Manners> {
        (config.enabled && config.decide_by == DecideBy::Words).then(|| Manners {
            backchannels: config.backchannels.iter().map(|b| words(b)).collect(),
            resume_after: Duration::from_millis(config.resume_after_ms.into()),
        })
    }

    /// Whether `transcript`, heard while the reply was paused, interrupts it: any words but a
    /// backchannel, said once or repeated ("yeah yeah"), do. A transcript without a letter
    /// (silence, or Whisper's "[BLANK_AUDIO]"-style notes in brackets) is a noise.
    pub fn judge(&self, transcript: &str) -> Verdict {
        let heard = words(transcript);
        if heard.is_empty() {
            return Verdict::Resume;
        }
        let mut rest = &heard[..];
        while !rest.is_empty() {
            let Some(n) = self
                .backchannels
                .iter()
                .filter(|b| !b.is_empty() && rest.starts_with(b))
                .map(Vec::len)
                .max()
            else {
                return Verdict::Interruption;
            };
            rest = &rest[n..];
        }
        Verdict::Resume
    }
}

/// The lower-case words of `text`: letters, digits and inner apostrophes; hyphens split words
/// ("mm-hmm" is "mm hmm"); text in brackets or parentheses (a transcriber's notes) is left out.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        let done = word.trim_end_matches('\'');
        if !done.is_empty() {
            out.push(done.to_owned());
        }
        word.clear();
    };
    let mut depth = 0u32;
    for c in text.chars() {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_alphanumeric() || (c == '\'' && !word.is_empty()) => {
                word.extend(c.to_lowercase());
                continue;
            }
            _ => {}
        }
        flush(&mut word);
    }
    flush(&mut word);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manners() -> Manners {
        Manners::of(&InterruptionConfig {
            decide_by: DecideBy::Words,
            ..InterruptionConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn backchannels_and_noises_resume_and_words_interrupt() {
        let m = manners();
        for said in [
            "Mm-hmm.",
            "Yeah.",
            "Okay!",
            "Right, right.",
            "Uh huh",
            "yeah yeah",
            "I see.",
            "",
            " [BLANK_AUDIO] ",
            "(knocking)",
            "...",
        ] {
            assert_eq!(m.judge(said), Verdict::Resume, "{said:?}");
        }
        for said in [
            "Wait.",
            "Stop!",
            "Actually, no.",
            "Okay, but what about Tuesday?",
            "No.",
            "Hold on.",
            "yeah, and then what",
        ] {
            assert_eq!(m.judge(said), Verdict::Interruption, "{said:?}");
        }
    }

    #[test]
    fn words_are_lower_case_without_punctuation_or_notes() {
        assert_eq!(
            words("Don't STOP, mm-hmm [music] ok."),
            ["don't", "stop", "mm", "hmm", "ok"]
        );
        assert!(words("(laughs) [BLANK_AUDIO]").is_empty());
    }

    #[test]
    fn only_the_words_mode_has_manners() {
        assert!(Manners::of(&InterruptionConfig::default()).is_none());
    }
}
