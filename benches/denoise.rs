//! Cost of the built-in noise suppression (`audio.noise_suppression`, src/rt/denoise.rs) on the
//! realtime thread, release build, median of many runs:
//! - `denoise/<rate>-<ms>`: one [`NoiseSuppressor::process`] call on a frame of noisy speech-like
//!   audio (up to 48 kHz, RNNoise, back down), and its share of one core per session (the call's
//!   time over the frame's duration);
//! - `rnnoise/frame`: one bare RNNoise 480-sample frame (10 ms at 48 kHz), to tell the model's
//!   share from the resampling's.
//!
//! Run: `cargo bench --bench denoise`.

use std::hint::black_box;

use nnnoiseless::DenoiseState;
use voicebackend::rt::denoise::{NoiseSuppressor, RNNOISE_FRAME, prepare_thread};

#[path = "support/timing.rs"]
mod timing;
use timing::median;

/// A speech-like buzz (syllable modulation) plus white noise 10 dB below it, at `rate`.
fn noisy_signal(n: usize, rate: u32) -> Vec<i16> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let s: f32 = (1..=10)
                .map(|h| (t * 140.0 * h as f32 * std::f32::consts::TAU).sin() / h as f32)
                .sum();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            let speech = s * (0.6 + 0.4 * (t * 4.0 * std::f32::consts::TAU).sin()) * 6000.0;
            (speech + noise * 3300.0).clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

fn main() {
    prepare_thread();
    for (rate, frame_ms) in [(16000u32, 20u32), (16000, 10), (16000, 30), (8000, 20)] {
        let frame = (rate * frame_ms / 1000) as usize;
        let audio = noisy_signal(rate as usize * 4, rate);
        let mut ns = NoiseSuppressor::new(rate, frame).unwrap();
        let mut frames = audio.chunks_exact(frame).cycle();
        let t = median(2000, || {
            let pcm = frames.next().unwrap();
            black_box(ns.process(black_box(pcm)));
        });
        let us = t.as_secs_f64() * 1e6;
        println!(
            "denoise/{}k-{frame_ms}ms: {us:.1} µs a frame = {:.3} % of a core per session (latency {:.1} ms)",
            rate / 1000,
            us / (f64::from(frame_ms) * 10.0),
            ns.latency_ms()
        );
    }
    let audio: Vec<f32> = noisy_signal(48000 * 4, 48000)
        .into_iter()
        .map(f32::from)
        .collect();
    let mut state = DenoiseState::new();
    let mut out = [0.0f32; RNNOISE_FRAME];
    let mut frames = audio.chunks_exact(RNNOISE_FRAME).cycle();
    let t = median(2000, || {
        black_box(state.process_frame(&mut out, black_box(frames.next().unwrap())));
    });
    println!(
        "rnnoise/frame: {:.1} µs a 10 ms frame at 48 kHz",
        t.as_secs_f64() * 1e6
    );
}
