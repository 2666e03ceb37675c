//! The embedded agent's model on this machine: load time, time to first token and tokens per
//! second for spoken-length questions asked as one conversation (each turn's context holds the
//! earlier ones, as in a session; the answers are printed, to judge them).
//!
//! Run: `cargo bench --bench llm [-- MODEL.gguf]` (default: the SmolLM2-135M-Instruct file that
//! `scripts/fetch-models.sh` installs). Figures in the README (*The built-in agent*).

use std::time::Instant;

use voicebackend::Turn;
use voicebackend::provider::embedded::llm::{EmbeddedAgent, EmbeddedSettings, default_model_path};
use voicebackend::provider::llm::DEFAULT_SYSTEM_PROMPT;

/// Questions as a caller would say them.
const PROMPTS: &[&str] = &[
    "What is the capital of France?",
    "Can you recommend a good book for a long flight?",
    "How do I boil an egg?",
    "What's the weather usually like in London in November?",
    "Tell me a fun fact about octopuses.",
    "I need to cancel my appointment tomorrow, what should I do?",
];

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(Into::into)
        .unwrap_or_else(default_model_path);
    let agent = EmbeddedAgent::new(EmbeddedSettings {
        model_path: path,
        system_prompt: DEFAULT_SYSTEM_PROMPT.to_owned(),
        temperature: 0.0,
        max_tokens: 64,
        context_tokens: 2048,
        seed: 1,
    })
    .expect("model file");
    // As a session does: the model loads, and the system prompt is computed, when the session
    // is created; the user takes a moment to speak.
    let started = Instant::now();
    agent.preload();
    std::thread::sleep(std::time::Duration::from_millis(50)); // the preload thread takes the lock
    agent.wait_loaded().expect("the model loads");
    println!(
        "load + system prompt: {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let mut history: Vec<Turn> = Vec::new();
    let (mut first, mut rates) = (Vec::new(), Vec::new());
    for prompt in PROMPTS {
        let started = Instant::now();
        let mut first_at = None;
        let mut pieces = 0u32;
        let mut answer = String::new();
        agent
            .generate(&history, prompt, &mut |piece| {
                first_at.get_or_insert_with(|| started.elapsed());
                pieces += 1;
                answer.push_str(piece);
                true
            })
            .expect("generation");
        let total = started.elapsed();
        let first_at = first_at.unwrap_or(total);
        let rate = f64::from(pieces.saturating_sub(1)) / (total - first_at).as_secs_f64().max(1e-9);
        history.push(Turn {
            transcript: Some((*prompt).to_owned()),
            reply: Some(answer.clone()),
            interrupted: false,
        });
        first.push(first_at.as_secs_f64() * 1e3);
        rates.push(rate);
        println!(
            "{prompt:?}: first token {:.0} ms, {pieces} tokens at {rate:.1}/s\n    → {:?}",
            first_at.as_secs_f64() * 1e3,
            answer.trim()
        );
    }
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    println!("peak resident memory of this process: {peak} kB");
    first.sort_by(f64::total_cmp);
    rates.sort_by(f64::total_cmp);
    println!(
        "time to first token p50 {:.0} ms, p95 {:.0} ms; tokens per second p50 {:.1} (load average {})",
        percentile(&first, 0.5),
        percentile(&first, 0.95),
        percentile(&rates, 0.5),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );
}
