//! Cost of the neural turn-taking stages (release build, one thread, ONNX Runtime with one
//! intra-op thread as the inference pool runs it), median of many runs:
//! - `silero/batch-N`: one Silero VAD call on N sessions' 512-sample windows, and its cost per
//!   window and per 20 ms frame (a window is 32 ms of audio: 0.625 calls per frame);
//! - `smart_turn/features`: the 80 × 800 log-mel features of 8 s of audio;
//! - `smart_turn/model-batch-N`: one Smart Turn call on N turns;
//! - `link/frame`: the realtime side's part per 20 ms frame (`NeuralLink::ready` +
//!   `send_frame`), the pool side answering as fast as it can on another thread;
//! - `pool/turn_answer`: through a real `InferencePool` (Silero + Smart Turn), the wall time from
//!   `ask_turn` until the answer is readable on the realtime side (features, model, hand-offs).
//!
//! Run: `cargo bench --bench neural` (needs the Python environment of scripts/python-env.sh:
//! PyPI's onnxruntime and pipecat-ai wheels).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use voicebackend::config::{BackendConfig, InferenceConfig};
use voicebackend::infer::pool::InferencePool;
use voicebackend::infer::runtime::prepare;
use voicebackend::infer::silero::{Silero, SileroStream, WINDOW};
use voicebackend::infer::smart_turn::{FRAMES, Features, N_MELS, SmartTurn};
use voicebackend::rt::neural::{Answer, PoolWake, neural_link};
use voicebackend::rt::shared::RtShared;

#[path = "support/timing.rs"]
mod timing;
use timing::median;

/// A speech-like test signal (a buzz with syllable modulation) at 16 kHz.
fn signal(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f32 / 16000.0;
            let s: f32 = (1..=10)
                .map(|h| (t * 140.0 * h as f32 * std::f32::consts::TAU).sin() / h as f32)
                .sum();
            (s * (0.6 + 0.4 * (t * 4.0 * std::f32::consts::TAU).sin()) * 6000.0) as i16
        })
        .collect()
}

fn main() {
    let files = prepare(&InferenceConfig::default(), true, true).expect("models");
    let mut silero = Silero::load(files.silero.as_deref().unwrap()).unwrap();
    let audio = signal(16000 * 8);
    let mut window = [0f32; WINDOW];
    for (w, &s) in window.iter_mut().zip(&audio[8000..]) {
        *w = f32::from(s) / 32768.0;
    }
    let mut out = Vec::new();
    for batch in [1usize, 8, 32] {
        let windows = vec![&window; batch];
        let mut streams = vec![SileroStream::default(); batch];
        let t = median(2000 / batch.min(20), || {
            let mut refs: Vec<&mut SileroStream> = streams.iter_mut().collect();
            silero.run(&windows, &mut refs, &mut out).unwrap();
            black_box(&out);
        });
        let per_window = t.as_secs_f64() * 1e6 / batch as f64;
        println!(
            "silero/batch-{batch}: {:.1} µs a call, {per_window:.1} µs a window, {:.1} µs a 20 ms frame ({:.3} % of a core per active stream)",
            t.as_secs_f64() * 1e6,
            per_window * 0.625,
            per_window * 0.625 / 20_000.0 * 100.0
        );
    }

    let mut features = Features::new();
    let mut feats = vec![0f32; N_MELS * FRAMES];
    let t = median(30, || features.compute(black_box(&audio), &mut feats));
    println!("smart_turn/features: {:.2} ms", t.as_secs_f64() * 1e3);
    let mut smart = SmartTurn::load(files.smart_turn.as_deref().unwrap()).unwrap();
    for batch in [1usize, 4] {
        let input = feats.repeat(batch);
        let t = median(20, || smart.run(black_box(&input), &mut out).unwrap());
        println!(
            "smart_turn/model-batch-{batch}: {:.1} ms a call, {:.1} ms a turn",
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3 / batch as f64
        );
    }

    // The realtime side's hand-off, with a thread answering every window at once.
    let wake = Arc::new(PoolWake::default());
    let (mut link, mut peer) = neural_link(true, wake, Arc::new(RtShared::default()), 32_000);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let answerer = std::thread::spawn(move || {
        let mut received = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            let n = peer.audio.slots();
            if let Ok(chunk) = peer.audio.read_chunk(n) {
                chunk.commit_all();
            }
            let before = received / WINDOW as u64;
            received += n as u64;
            for w in before..received / WINDOW as u64 {
                let _ = peer.answers.push(Answer::Vad {
                    end_sample: (w + 1) * WINDOW as u64,
                    prob: 0.9,
                });
            }
        }
    });
    let frame = &audio[..320];
    let t = median(20_000, || {
        while !link.ready() {
            std::hint::spin_loop();
        }
        link.send_frame(black_box(frame));
    });
    stop.store(true, Ordering::Relaxed);
    let _ = answerer.join();
    println!(
        "link/frame: {:.2} µs (ready + send_frame, answers waited for included)",
        t.as_secs_f64() * 1e6
    );

    let config = BackendConfig::from_json(
        r#"{"provider":"local","vad":{"engine":"silero"},"turn":{"end_of_turn":"smart_turn"}}"#,
    )
    .unwrap();
    let pool = InferencePool::new(&config).unwrap();
    let mut link = pool.link(Arc::new(RtShared::default()));
    let mut sent = 0;
    let mut latencies = Vec::new();
    for round in 0..12 {
        // 3 s of audio, each frame once its VAD answers are in, then a question.
        for frame in audio[..48_000].chunks_exact(320) {
            while !link.ready() {
                std::thread::sleep(Duration::from_micros(50));
            }
            link.send_frame(frame);
            sent += 1;
        }
        let t = Instant::now();
        link.ask_turn(0);
        while !link.ready() {
            std::thread::sleep(Duration::from_micros(50));
        }
        let answer = link.take_turn_answer();
        assert!(answer.is_some(), "answered");
        if round >= 2 {
            latencies.push(t.elapsed());
        }
    }
    latencies.sort();
    println!(
        "pool/turn_answer: p50 {:.1} ms, max {:.1} ms ({} questions after {sent} frames)",
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        latencies.len()
    );
}
