//! Built-in noise suppression (`audio.noise_suppression`, src/rt/denoise.rs) on real speech:
//! eSpeak NG sentences mixed with generated white, pink and babble noise (other eSpeak voices
//! talking at once) at 5–15 dB SNR. What it must do:
//! - lower the energy of noise-only stretches by a measured amount, and keep the energy of speech
//!   within a bound of the clean speech's;
//! - delay the audio by exactly the latency it states;
//! - in a session, keep noisy silence from starting turns that it starts with suppression off,
//!   while speech in the same noise still starts one.
//!
//! Needs `espeak-ng`. The ignored `measure_*` tests print the figures the README quotes (and the
//! Whisper one needs the model, `scripts/fetch-models.sh`):
//! `cargo test --release --features test-providers --test noise_suppression -- --ignored --nocapture`.
#![cfg(feature = "test-providers")]

mod common;
#[path = "support/sentences.rs"]
mod sentences;

use std::time::{Duration, Instant};

use common::*;
use voicebackend::dsp::resample::StreamResampler;
use voicebackend::rt::denoise::NoiseSuppressor;
use voicebackend::{Session, VbEventKind as K};

/// A deterministic generator (xorshift64*) of standard normal samples.
struct Gauss(u64);

impl Gauss {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f64 {
        // Box–Muller.
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// `samples` scaled to an RMS of 1.
fn unit_rms(samples: Vec<f64>) -> Vec<f64> {
    let rms = (samples.iter().map(|x| x * x).sum::<f64>() / samples.len() as f64).sqrt();
    samples.into_iter().map(|x| x / rms).collect()
}

fn white(n: usize, seed: u64) -> Vec<f64> {
    let mut g = Gauss(seed);
    unit_rms((0..n).map(|_| g.next()).collect())
}

/// Pink (1/f) noise: white noise through Paul Kellet's filter (±0.05 dB from 9 Hz up).
fn pink(n: usize, seed: u64) -> Vec<f64> {
    let mut g = Gauss(seed);
    let mut b = [0.0f64; 7];
    let samples = (0..n)
        .map(|_| {
            let w = g.next();
            b[0] = 0.99886 * b[0] + w * 0.0555179;
            b[1] = 0.99332 * b[1] + w * 0.0750759;
            b[2] = 0.96900 * b[2] + w * 0.1538520;
            b[3] = 0.86650 * b[3] + w * 0.3104856;
            b[4] = 0.55000 * b[4] + w * 0.5329522;
            b[5] = -0.7616 * b[5] - w * 0.0168980;
            let out = b.iter().sum::<f64>() + w * 0.5362;
            b[6] = w * 0.115926;
            out
        })
        .collect();
    unit_rms(samples)
}

/// Babble: four other voices talking at once, each looped to `n` samples at `rate`.
fn babble(n: usize, rate: u32) -> Vec<f64> {
    let talkers = [
        (
            "en-gb",
            "The committee will meet again on Thursday to discuss the budget.",
        ),
        (
            "en-us+f3",
            "I think we should take the earlier train and have lunch there.",
        ),
        (
            "en-gb-scotland",
            "Nobody told me the shop was closed on public holidays.",
        ),
        (
            "en-us+m4",
            "Put the boxes in the hall and we will sort them out later.",
        ),
    ];
    let mut sum = vec![0.0; n];
    for (voice, text) in talkers {
        let talk = StreamResampler::convert(&espeak_speech(text, voice), 16000, rate);
        for (i, s) in sum.iter_mut().enumerate() {
            *s += f64::from(talk[i % talk.len()]);
        }
    }
    unit_rms(sum)
}

/// Noise kinds of the tests.
#[derive(Debug, Clone, Copy)]
enum Noise {
    White,
    Pink,
    Babble,
}

fn noise(kind: Noise, n: usize, rate: u32) -> Vec<f64> {
    match kind {
        Noise::White => white(n, 7),
        Noise::Pink => pink(n, 11),
        Noise::Babble => babble(n, rate),
    }
}

/// The 20 ms frames of `clean` that carry speech: within 20 dB of its loudest frame.
fn active_frames(clean: &[i16], rate: u32) -> Vec<std::ops::Range<usize>> {
    let frame = (rate / 50) as usize;
    let loudest = clean.chunks(frame).map(rms).fold(0.0, f64::max);
    (0..clean.len() / frame)
        .map(|i| i * frame..(i + 1) * frame)
        .filter(|r| rms(&clean[r.clone()]) >= loudest / 10.0)
        .collect()
}

fn rms_over(pcm: &[i16], ranges: &[std::ops::Range<usize>]) -> f64 {
    let (sum, n) = ranges.iter().fold((0.0, 0usize), |(sum, n), r| {
        let s: f64 = pcm[r.clone()].iter().map(|&x| f64::from(x).powi(2)).sum();
        (sum + s, n + r.len())
    });
    (sum / n.max(1) as f64).sqrt()
}

fn db(ratio: f64) -> f64 {
    20.0 * ratio.log10()
}

/// A noisy take: `lead_ms` of noise alone, the sentence, `tail_ms` of noise alone; the noise set
/// to `snr_db` below the speech's active frames. Returns (clean, noisy) at `rate`.
fn noisy_take(
    text: &str,
    kind: Noise,
    snr_db: f64,
    rate: u32,
    lead_ms: u32,
    tail_ms: u32,
) -> (Vec<i16>, Vec<i16>) {
    let mut clean = silence(lead_ms, rate);
    clean.extend(StreamResampler::convert(
        &espeak_speech(text, "en-us"),
        16000,
        rate,
    ));
    clean.extend(silence(tail_ms, rate));
    let speech_rms = rms_over(&clean, &active_frames(&clean, rate));
    let gain = speech_rms / 10f64.powf(snr_db / 20.0);
    let noisy = clean
        .iter()
        .zip(noise(kind, clean.len(), rate))
        .map(|(&s, n)| (f64::from(s) + n * gain).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    (clean, noisy)
}

/// Runs `pcm` through a suppressor in 20 ms frames and returns the output moved back by the
/// suppressor's latency (so that it lines up with the input), and that latency in samples.
fn denoise(pcm: &[i16], rate: u32) -> (Vec<i16>, usize) {
    let frame = (rate / 50) as usize;
    let mut ns = NoiseSuppressor::new(rate, frame).expect("a supported rate");
    let delay = (ns.latency_ms() * f64::from(rate) / 1000.0).round() as usize;
    let mut out = Vec::with_capacity(pcm.len() + delay + frame);
    let padded: Vec<i16> = pcm.iter().copied().chain(vec![0; delay + frame]).collect();
    for chunk in padded.chunks_exact(frame) {
        out.extend_from_slice(ns.process(chunk));
    }
    out.drain(..delay);
    out.truncate(pcm.len());
    (out, delay)
}

/// What suppression did to one take: (noise-only reduction, speech energy change), in dB.
struct Effect {
    noise_reduction_db: f64,
    speech_change_db: f64,
}

fn effect(kind: Noise, snr_db: f64, rate: u32) -> Effect {
    let (lead, tail) = (1500, 1500);
    let (clean, noisy) = noisy_take(
        "Please send the quarterly report to my manager before noon.",
        kind,
        snr_db,
        rate,
        lead,
        tail,
    );
    let (out, _) = denoise(&noisy, rate);
    let ms = |t: u32| (u64::from(rate) * u64::from(t) / 1000) as usize;
    // Noise alone: the lead-in after 0.5 s (RNNoise's estimate settles), the tail after 0.5 s.
    let noise_only = [ms(500)..ms(lead), noisy.len() - ms(tail - 500)..noisy.len()];
    let speech = active_frames(&clean, rate);
    Effect {
        noise_reduction_db: db(rms_over(&noisy, &noise_only) / rms_over(&out, &noise_only)),
        speech_change_db: db(rms_over(&out, &speech) / rms_over(&clean, &speech)),
    }
}

#[test]
fn suppression_lowers_noise_and_keeps_speech_energy() {
    // Pink noise at 5–15 dB SNR at both internal rates, white noise at 10–15 dB at 16 kHz: at
    // least 30 dB less noise where nobody speaks (38–48 dB measured), and the speech frames within
    // 2 dB below, 1.5 dB above the clean speech's energy (noise left in them shows as "above":
    // 15 dB SNR alone is +0.14 dB, 5 dB +1.2 dB).
    let mut takes = Vec::new();
    for rate in [16000, 8000] {
        for snr in [5.0, 10.0, 15.0] {
            takes.push((Noise::Pink, snr, rate, true));
        }
    }
    takes.push((Noise::White, 10.0, 16000, true));
    takes.push((Noise::White, 15.0, 16000, true));
    // Where RNNoise lowers the noise little (README, *Noise suppression*), it must still leave
    // the speech alone: loud white noise (5 dB SNR, about −20 dBFS; or 8 kHz, where the same
    // noise fills half the bands), and babble, which is speech itself.
    takes.push((Noise::White, 5.0, 16000, false));
    takes.push((Noise::White, 10.0, 8000, false));
    takes.push((Noise::Babble, 10.0, 16000, false));
    for (kind, snr, rate, lowered) in takes {
        let e = effect(kind, snr, rate);
        let what = format!("{kind:?} at {snr} dB SNR, {rate} Hz");
        assert!(
            !lowered || e.noise_reduction_db >= 30.0,
            "{what}: noise lowered by {:.1} dB only",
            e.noise_reduction_db
        );
        assert!(
            e.noise_reduction_db >= -0.5,
            "{what}: noise raised by {:.1} dB",
            -e.noise_reduction_db
        );
        assert!(
            (-2.0..=1.5).contains(&e.speech_change_db),
            "{what}: speech changed by {:+.1} dB",
            e.speech_change_db
        );
    }
}

#[test]
fn the_output_is_late_by_the_stated_latency() {
    for rate in [16000, 8000] {
        let clean = StreamResampler::convert(
            &espeak_speech("Seven silver swans swam silently seaward.", "en-us"),
            16000,
            rate,
        );
        let frame = (rate / 50) as usize;
        let mut ns = NoiseSuppressor::new(rate, frame).unwrap();
        let stated = ns.latency_ms();
        let mut out = Vec::new();
        for chunk in clean.chunks_exact(frame) {
            out.extend_from_slice(ns.process(chunk));
        }
        // The lag (up to 40 ms) at which the output best matches the input.
        let max_lag = (rate / 25) as usize;
        let score = |lag: usize| -> f64 {
            (0..out.len() - max_lag)
                .map(|i| f64::from(clean[i]) * f64::from(out[i + lag]))
                .sum()
        };
        let lag = (0..=max_lag)
            .max_by(|&a, &b| score(a).total_cmp(&score(b)))
            .unwrap();
        let measured = lag as f64 * 1000.0 / f64::from(rate);
        // Within 0.25 ms: the filters' delays are fractional samples (127.4 at 8 kHz).
        assert!(
            (measured - stated).abs() <= 0.25,
            "{rate} Hz: stated {stated:.2} ms, measured {measured:.2} ms"
        );
    }
}

/// A session with suppression on or off hears `audio` (16 kHz, pushed as fast as it takes it);
/// returns the turns that started.
fn turns_started(noise_suppression: bool, audio: &[i16]) -> usize {
    let backend = test_backend(&format!(
        r#""audio":{{"noise_suppression":{noise_suppression},"realtime_threads":1}}"#
    ));
    let session = started_session(&backend, echo_agent());
    // Whole 20 ms frames: a partial one would wait in the input ring for the rest.
    let mut audio = audio.to_vec();
    audio.resize(audio.len().next_multiple_of(320), 0);
    push_all(&session, &audio, 16000);
    let starts = starts_until_quiet(&session);
    session.stop().unwrap();
    starts
}

/// Counts the `VB_EVENT_SPEECH_STARTED` events until the session has heard all its audio, and
/// for 500 ms more (the events' way from the realtime thread to the event queue).
fn starts_until_quiet(session: &Session) -> usize {
    let deadline = Instant::now() + PATIENCE;
    let mut starts = 0;
    let mut heard_at = None;
    loop {
        while let Some(event) = session.poll_event().unwrap() {
            starts += usize::from(event.kind == K::VB_EVENT_SPEECH_STARTED);
        }
        if session.all_audio_heard() {
            let at = *heard_at.get_or_insert_with(Instant::now);
            if at.elapsed() > Duration::from_millis(500) {
                return starts;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the session never heard all its audio ({} samples writable)",
            session.writable_samples()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Noise alone at 16 kHz, `rms` loud.
fn noise_alone(kind: Noise, seconds: u32, rms: f64) -> Vec<i16> {
    noise(kind, 16000 * seconds as usize, 16000)
        .into_iter()
        .map(|n| (n * rms).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

#[test]
fn noisy_silence_starts_no_turn_with_suppression_on() {
    // 8 s of loud pink noise (rms 3000, −21 dBFS: a fan or an engine close by) and nobody
    // speaking: webrtc-vad (mode 2, the default) calls every frame of it voiced and the session
    // starts a turn; with suppression on, the VAD hears the denoised audio and starts none.
    let audio = noise_alone(Noise::Pink, 8, 3000.0);
    let off = turns_started(false, &audio);
    let on = turns_started(true, &audio);
    assert!(
        off >= 1,
        "without suppression the noise started no turn: the test would prove nothing"
    );
    assert_eq!(on, 0, "turns started in noise with suppression on");
    // The same suppression still hears a sentence spoken in such noise (10 dB SNR).
    let (_, noisy) = noisy_take(
        "Could you book a table for two at eight?",
        Noise::Pink,
        10.0,
        16000,
        500,
        1200,
    );
    assert_eq!(turns_started(true, &noisy), 1, "the sentence in noise");
}

/// Prints the suppressor's effect for each noise, SNR and rate (the README's table).
#[test]
#[ignore]
fn measure_noise_reduction() {
    for rate in [16000, 8000] {
        for kind in [Noise::White, Noise::Pink, Noise::Babble] {
            for snr in [5.0, 10.0, 15.0] {
                let e = effect(kind, snr, rate);
                println!(
                    "{rate} Hz {kind:?} {snr} dB: noise −{:.1} dB, speech {:+.1} dB",
                    e.noise_reduction_db, e.speech_change_db
                );
            }
        }
    }
    for kind in [Noise::White, Noise::Pink, Noise::Babble] {
        for level in [300.0, 1000.0, 3000.0] {
            let audio = noise_alone(kind, 8, level);
            println!(
                "{kind:?} alone at rms {level}: turns started off {}, on {}",
                turns_started(false, &audio),
                turns_started(true, &audio)
            );
        }
    }
}

/// Whether STT should get the denoised audio too: Whisper tiny.en's word errors on 12 eSpeak
/// sentences under each noise, as heard (the engine's choice) and denoised.
#[test]
#[ignore]
fn measure_whisper_on_denoised_speech() {
    use sentences::{SENTENCES, word_edits, words};
    use voicebackend::provider::embedded::whisper::{self, WhisperModel};
    let model = WhisperModel::load(&whisper::default_model_dir())
        .expect("the Whisper model (scripts/fetch-models.sh)");
    let transcribe = |pcm: &[i16]| -> String {
        let samples: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
        model
            .transcribe(&samples, whisper::CONTEXT)
            .expect("transcribe")
    };
    let total: usize = SENTENCES.iter().map(|s| words(s).len()).sum();
    let mut conditions = vec![(None, 0.0)];
    for kind in [Noise::White, Noise::Pink, Noise::Babble] {
        for snr in [5.0, 10.0, 15.0] {
            conditions.push((Some(kind), snr));
        }
    }
    for (kind, snr) in conditions {
        let (mut as_heard, mut denoised) = (0, 0);
        for sentence in SENTENCES {
            let (clean, noisy) =
                noisy_take(sentence, kind.unwrap_or(Noise::White), snr, 16000, 300, 500);
            let input = if kind.is_some() { noisy } else { clean };
            let reference = words(sentence);
            let heard = transcribe(&input);
            let cleaned = transcribe(&denoise(&input, 16000).0);
            as_heard += word_edits(&reference, &words(&heard));
            denoised += word_edits(&reference, &words(&cleaned));
            if heard != cleaned {
                println!("  {sentence:?}: {heard:?} / denoised {cleaned:?}");
            }
        }
        println!(
            "{kind:?} {snr} dB: WER as heard {:.1} %, denoised {:.1} % ({total} words)",
            100.0 * as_heard as f64 / total as f64,
            100.0 * denoised as f64 / total as f64
        );
    }
}

/// Prints webrtc-vad's voiced frames (modes 0–3) in noise alone, with and without suppression,
/// after the first second (RNNoise's estimate settles), and the suppressor's effect on noise
/// alone by level.
#[test]
#[ignore]
fn measure_vad_in_noise() {
    use voicebackend::config::VadConfig;
    use voicebackend::rt::vad::VoiceDetector;
    for kind in [Noise::White, Noise::Pink, Noise::Babble] {
        for level in [300.0, 1000.0, 3000.0] {
            let audio = noise_alone(kind, 8, level);
            let (out, _) = denoise(&audio, 16000);
            let skip = 16000;
            let mut line = format!(
                "{kind:?} rms {level}: noise −{:.1} dB;",
                db(rms(&audio[skip..]) / rms(&out[skip..]))
            );
            for mode in 0..=3u8 {
                let config = VadConfig {
                    mode,
                    ..VadConfig::default()
                };
                let voiced = |pcm: &[i16]| {
                    let mut vad = VoiceDetector::new(&config, 16000, 20);
                    pcm.chunks_exact(320)
                        .enumerate()
                        .map(|(i, f)| (i, vad.process(f, 0.0).voiced))
                        .filter(|&(i, v)| v && i >= 50)
                        .count()
                };
                line += &format!(
                    " mode {mode}: {}/{} → {}",
                    voiced(&audio),
                    audio.len() / 320 - 50,
                    voiced(&out)
                );
            }
            println!("{line}");
        }
    }
}

/// Prints the memory a thread keeps after its first suppressor frame (nnnoiseless's FFT tables,
/// which it never frees), against threads that do nothing: RSS growth over 300 threads.
#[test]
#[ignore]
fn measure_memory_kept_per_thread() {
    fn rss_kb() -> i64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4
    }
    voicebackend::rt::denoise::prepare_thread();
    for (what, work) in [
        ("idle threads", (|| {}) as fn()),
        ("prepare_thread", voicebackend::rt::denoise::prepare_thread),
        ("idle threads", || {}),
    ] {
        let before = rss_kb();
        for _ in 0..300 {
            std::thread::spawn(work).join().unwrap();
        }
        println!(
            "{what}: {:+.1} KB a thread",
            (rss_kb() - before) as f64 / 300.0
        );
    }
}
