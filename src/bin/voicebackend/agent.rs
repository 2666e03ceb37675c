//! The CLI's agent: a few exact rules (greetings, the time, arithmetic — what a small language
//! model gets wrong) and, for everything else, the embedded language model when it is installed
//! (the default of `converse` — the main job —, `serve` and `agent`) or an echo (`--agent
//! rules`). One model serves all conversations of a process, one answer at a time.

use std::sync::Arc;

use voicebackend::{Agent, Reply, Result, Turn};

/// Answers from a few rules, else from its fallback model (or an echo); runs on the engine's
/// agent worker thread.
#[derive(Default)]
pub struct RuleAgent {
    /// Answers what no rule does.
    model: Option<Arc<dyn Agent>>,
}

impl RuleAgent {
    /// Rules, and the model `model` (an echo without one) for everything else.
    pub fn new(model: Option<Arc<dyn Agent>>) -> RuleAgent {
        RuleAgent { model }
    }
}

impl Agent for RuleAgent {
    fn on_transcript(&self, transcript: &str, reply: &mut Reply) -> Result<()> {
        match (rule_answer(transcript, local_time()), &self.model) {
            (Some(text), _) => reply.write(&text)?,
            (None, Some(model)) => return model.on_transcript(transcript, reply),
            (None, None) => reply.write(&echo(transcript))?,
        }
        reply.end()
    }

    /// The model computes the conversation — the turns the rules answered too — while the user
    /// speaks, so its next answer starts as soon as the transcript comes.
    fn prepare(&self, history: &[Turn]) {
        if let Some(model) = &self.model {
            model.prepare(history);
        }
    }

    fn prepares(&self) -> bool {
        self.model.as_ref().is_some_and(|model| model.prepares())
    }
}

/// The rules' answer to `transcript` (given the local time as (hour, minute)), or the echo.
#[cfg(test)]
fn answer(transcript: &str, time: (u32, u32)) -> String {
    rule_answer(transcript, time).unwrap_or_else(|| echo(transcript))
}

fn echo(transcript: &str) -> String {
    format!(
        "You said: {}.",
        transcript.trim().trim_end_matches(['.', '!', '?'])
    )
}

/// The answer of the rule that fits `transcript`, if one does.
fn rule_answer(transcript: &str, (hour, minute): (u32, u32)) -> Option<String> {
    let words = normalize(transcript);
    let text = words.join(" ");
    if words.is_empty() {
        return Some("Sorry, I did not catch that.".to_owned());
    }
    if let Some(result) = arithmetic(&words) {
        return Some(result);
    }
    let has = |word: &str| words.iter().any(|w| w == word);
    if has("time") && (has("what") || has("what's") || has("tell")) {
        let (h12, suffix) = match hour {
            0 => (12, "AM"),
            1..=11 => (hour, "AM"),
            12 => (12, "PM"),
            _ => (hour - 12, "PM"),
        };
        return Some(format!("It is {h12}:{minute:02} {suffix}."));
    }
    if matches!(words[0].as_str(), "hello" | "hi" | "hey" | "good") && words.len() <= 4 {
        return Some(
            "Hello! Ask me the time, or to add, subtract, multiply or divide two numbers."
                .to_owned(),
        );
    }
    if text.contains("thank") {
        return Some("You are welcome.".to_owned());
    }
    if matches!(words.last().map(String::as_str), Some("bye" | "goodbye")) {
        return Some("Goodbye!".to_owned());
    }
    None
}

/// Lower-case words without punctuation ("12.5" keeps its dot, "-3" its sign).
fn normalize(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            let w = w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-' && c != '.');
            let w = w.trim_end_matches('.');
            w.trim_start_matches(|c: char| {
                c == '-' && !w[1..].starts_with(|d: char| d.is_ascii_digit())
            })
            .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Applies an arithmetic operator; `None` when it has no result (division by zero).
type Operation = fn(f64, f64) -> Option<f64>;

/// "what is 12 plus 7", "six times seven", "10 divided by 4": the result as a sentence.
fn arithmetic(words: &[String]) -> Option<String> {
    let ops: [(&[&str], &str, Operation); 4] = [
        (&["plus", "+", "add"], "plus", |a, b| Some(a + b)),
        (&["minus", "-", "subtract"], "minus", |a, b| Some(a - b)),
        (&["times", "x", "*", "multiplied"], "times", |a, b| {
            Some(a * b)
        }),
        (&["divided", "over", "/"], "divided by", |a, b| {
            (b != 0.0).then(|| a / b)
        }),
    ];
    for (i, word) in words.iter().enumerate() {
        let Some((_, name, apply)) = ops
            .iter()
            .find(|(names, _, _)| names.contains(&word.as_str()))
        else {
            continue;
        };
        let left = number_before(&words[..i])?;
        let mut rest = &words[i + 1..];
        if rest.first().is_some_and(|w| w == "by") {
            rest = &rest[1..];
        }
        let right = number_after(rest)?;
        return Some(match apply(left, right) {
            Some(result) => format!("{} {name} {} is {}.", show(left), show(right), show(result)),
            None => "Dividing by zero has no answer.".to_owned(),
        });
    }
    None
}

fn show(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{:.2}", x)
    }
}

fn number_before(words: &[String]) -> Option<f64> {
    // The longest run of number words that ends right before the operator.
    (0..words.len()).find_map(|start| parse_number(&words[start..]))
}

fn number_after(words: &[String]) -> Option<f64> {
    (1..=words.len())
        .rev()
        .find_map(|end| parse_number(&words[..end]))
}

/// Digits ("42", "3.5") or English number words up to the thousands ("forty two").
fn parse_number(words: &[String]) -> Option<f64> {
    if let [single] = words {
        if let Ok(x) = single.replace(',', "").parse::<f64>() {
            return Some(x);
        }
    }
    let mut total = 0u64;
    let mut current = 0u64;
    let mut any = false;
    for word in words {
        let value = match word.as_str() {
            "zero" => 0,
            "one" => 1,
            "two" => 2,
            "three" => 3,
            "four" => 4,
            "five" => 5,
            "six" => 6,
            "seven" => 7,
            "eight" => 8,
            "nine" => 9,
            "ten" => 10,
            "eleven" => 11,
            "twelve" => 12,
            "thirteen" => 13,
            "fourteen" => 14,
            "fifteen" => 15,
            "sixteen" => 16,
            "seventeen" => 17,
            "eighteen" => 18,
            "nineteen" => 19,
            "twenty" => 20,
            "thirty" => 30,
            "forty" => 40,
            "fifty" => 50,
            "sixty" => 60,
            "seventy" => 70,
            "eighty" => 80,
            "ninety" => 90,
            "hundred" => {
                current = current.max(1) * 100;
                any = true;
                continue;
            }
            "thousand" => {
                total += current.max(1) * 1000;
                current = 0;
                any = true;
                continue;
            }
            "and" if any => continue,
            _ => return None,
        };
        current += value;
        any = true;
    }
    any.then_some((total + current) as f64)
}

/// The local wall-clock time as (hour, minute).
fn local_time() -> (u32, u32) {
    // SAFETY: `time` with NULL and `localtime_r` with valid pointers to locals.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return (0, 0);
        }
        (tm.tm_hour as u32, tm.tm_min as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_with_digits_and_words() {
        assert_eq!(answer("What is 12 plus 7?", (0, 0)), "12 plus 7 is 19.");
        assert_eq!(answer("what's six times seven", (0, 0)), "6 times 7 is 42.");
        assert_eq!(
            answer("Ten divided by four.", (0, 0)),
            "10 divided by 4 is 2.50."
        );
        assert_eq!(
            answer("one hundred and five minus twenty two", (0, 0)),
            "105 minus 22 is 83."
        );
        assert_eq!(
            answer("what is 3 divided by zero", (0, 0)),
            "Dividing by zero has no answer."
        );
    }

    #[test]
    fn time_greetings_and_echo() {
        assert_eq!(answer("What time is it?", (15, 4)), "It is 3:04 PM.");
        assert_eq!(answer("what time is it", (0, 30)), "It is 12:30 AM.");
        assert!(answer("Hello there.", (0, 0)).starts_with("Hello!"));
        assert_eq!(
            answer("The weather is nice today.", (0, 0)),
            "You said: The weather is nice today."
        );
        assert_eq!(answer("  ", (0, 0)), "Sorry, I did not catch that.");
        // What no rule answers goes to the language model (or the echo).
        assert_eq!(rule_answer("The weather is nice today.", (0, 0)), None);
    }
}
