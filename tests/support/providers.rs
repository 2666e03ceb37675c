//! Test providers, clearly named `test-*`: they are compiled into the library only with the
//! `test-providers` feature (so that the C host test can reach them through the C ABI) and are
//! never part of a release build.
//!
//! - `test-pitch-stt`: a real signal-derived "transcript": it measures the pitch and length of
//!   the turn's audio and reports `pitch <hz> hz for <ms> ms`. Sessions speaking at different
//!   pitches get different transcripts, which is what isolation tests need. With
//!   `"say_length": false` it reports `pitch <hz> hz` only (the same words for a turn and for
//!   the turn with more silence after it).
//! - `test-tone-tts`: speaks each text chunk as a sine tone (`ms_per_char` per character) at
//!   24 kHz, so the engine must resample it to the host rate.
//! - `test-echo-s2s`: a speech-to-speech "model" that answers each turn with the turn's own audio.
//!   With `answer_after_ms` it does its own turn-taking: it answers once a turn has that much
//!   audio, before the engine ends the turn (as a Pipecat bot may). With `never_answer` it hears
//!   nothing at all (as a bot whose own VAD missed the turn).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::parse_section;
use crate::error::{Error, Result};
use crate::provider::{
    BoxFuture, ProviderRegistry, ProviderSetup, S2sEvent, S2sInput, S2sProvider, S2sSession,
    SttProvider, SttTurn, TtsProvider, TtsRequest,
};

/// Registers the test providers.
pub fn register(registry: &ProviderRegistry) {
    let stt: crate::provider::registry::SttFactory = Arc::new(|setup: &ProviderSetup| {
        Ok(Arc::new(PitchStt {
            config: parse_section(
                "stt_config",
                setup.config,
                &["delay_ms", "fail_with", "say_length"],
            )?,
        }) as Arc<dyn SttProvider>)
    });
    let tts: crate::provider::registry::TtsFactory = Arc::new(|setup: &ProviderSetup| {
        Ok(Arc::new(ToneTts {
            config: parse_section(
                "tts_config",
                setup.config,
                &["ms_per_char", "frequency_hz", "fail_with"],
            )?,
        }) as Arc<dyn TtsProvider>)
    });
    let s2s: crate::provider::registry::S2sFactory = Arc::new(|setup: &ProviderSetup| {
        Ok(Arc::new(EchoS2s {
            config: parse_section(
                "s2s_config",
                setup.config,
                &["answer_after_ms", "never_answer"],
            )?,
        }) as Arc<dyn S2sProvider>)
    });
    registry
        .stt
        .register("test-pitch-stt", stt)
        .expect("valid name");
    registry
        .tts
        .register("test-tone-tts", tts)
        .expect("valid name");
    registry
        .s2s
        .register("test-echo-s2s", s2s)
        .expect("valid name");
}

/// Settings of `test-pitch-stt`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PitchSttConfig {
    /// Extra time before the final transcript, to simulate a slow engine.
    pub delay_ms: u64,
    /// When set, every turn fails with this provider error.
    pub fail_with: Option<String>,
    /// Whether the transcript says the audio's length (default true).
    pub say_length: bool,
}

impl Default for PitchSttConfig {
    fn default() -> Self {
        PitchSttConfig {
            delay_ms: 0,
            fail_with: None,
            say_length: true,
        }
    }
}

/// Reports the pitch and length of each turn.
pub struct PitchStt {
    config: PitchSttConfig,
}

impl SttProvider for PitchStt {
    fn name(&self) -> &str {
        "test-pitch-stt"
    }

    fn transcribe(&self, mut turn: SttTurn) -> BoxFuture<'static, Result<()>> {
        let config = self.config.clone();
        Box::pin(async move {
            let mut audio = Vec::new();
            let mut partial_sent = false;
            while turn.audio.recv_into(&mut audio).await {
                if !partial_sent && audio.len() >= turn.sample_rate as usize / 5 {
                    partial_sent = true;
                    turn.results
                        .partial(format!("pitch {} hz", pitch_hz(&audio, turn.sample_rate)));
                }
            }
            if let Some(message) = config.fail_with {
                return Err(Error::provider("test-pitch-stt", message));
            }
            tokio::time::sleep(Duration::from_millis(config.delay_ms)).await;
            let ms = audio.len() as u64 * 1000 / u64::from(turn.sample_rate);
            let pitch = pitch_hz(&audio, turn.sample_rate);
            turn.results.final_transcript(if config.say_length {
                format!("pitch {pitch} hz for {ms} ms")
            } else {
                format!("pitch {pitch} hz")
            });
            Ok(())
        })
    }
}

/// The fundamental of the loudest 200 ms by autocorrelation, rounded to 10 Hz (80–400 Hz).
pub fn pitch_hz(audio: &[i16], rate: u32) -> u32 {
    let window = (rate as usize / 5).min(audio.len());
    let energy = |s: &[i16]| s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
    let start = (0..=audio.len() - window)
        .step_by((window / 4).max(1))
        .max_by(|&a, &b| energy(&audio[a..a + window]).total_cmp(&energy(&audio[b..b + window])))
        .unwrap_or(0);
    let x = &audio[start..start + window];
    let (min_lag, max_lag) = ((rate / 400) as usize, (rate / 80) as usize);
    let corr = |lag: usize| {
        x.iter()
            .zip(&x[lag..])
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum::<f64>()
    };
    let lags = min_lag..=max_lag.min(x.len().saturating_sub(1));
    let strongest = lags.clone().map(corr).fold(0.0, f64::max);
    // The shortest lag almost as strong as the strongest: multiples of the period score alike.
    let mut best = lags
        .clone()
        .find(|&lag| corr(lag) >= 0.9 * strongest)
        .unwrap_or(min_lag);
    while lags.contains(&(best + 1)) && corr(best + 1) > corr(best) {
        best += 1;
    }
    let hz = f64::from(rate) / best.max(1) as f64;
    ((hz / 10.0).round() * 10.0) as u32
}

/// Settings of `test-tone-tts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToneTtsConfig {
    /// Audio length per character of text.
    pub ms_per_char: u32,
    /// Tone frequency.
    pub frequency_hz: f32,
    /// When set, synthesis fails with this provider error.
    pub fail_with: Option<String>,
}

impl Default for ToneTtsConfig {
    fn default() -> Self {
        ToneTtsConfig {
            ms_per_char: 20,
            frequency_hz: 440.0,
            fail_with: None,
        }
    }
}

/// Speaks text as a tone.
pub struct ToneTts {
    config: ToneTtsConfig,
}

/// The rate `test-tone-tts` produces.
pub const TONE_TTS_RATE: u32 = 24000;

impl TtsProvider for ToneTts {
    fn name(&self) -> &str {
        "test-tone-tts"
    }

    fn sample_rate(&self) -> u32 {
        TONE_TTS_RATE
    }

    fn synthesize(&self, mut request: TtsRequest) -> BoxFuture<'static, Result<()>> {
        let config = self.config.clone();
        Box::pin(async move {
            if let Some(message) = config.fail_with {
                return Err(Error::provider("test-tone-tts", message));
            }
            let mut phase = 0usize;
            let chunk = (TONE_TTS_RATE / 50) as usize;
            while let Some(text) = request.text.recv().await {
                let total =
                    text.chars().count() * (config.ms_per_char * TONE_TTS_RATE / 1000) as usize;
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk);
                    let pcm: Vec<i16> = (phase..phase + n)
                        .map(|i| {
                            let t = i as f32 / TONE_TTS_RATE as f32;
                            ((t * config.frequency_hz * std::f32::consts::TAU).sin() * 8000.0)
                                as i16
                        })
                        .collect();
                    phase += n;
                    left -= n;
                    if request.audio.send(pcm).await.is_err() {
                        return Ok(()); // cancelled
                    }
                }
            }
            Ok(())
        })
    }
}

/// Settings of `test-echo-s2s`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EchoS2sConfig {
    /// Answer once a turn has this much audio instead of at the engine's end of turn.
    pub answer_after_ms: Option<u64>,
    /// Never answer a turn.
    pub never_answer: bool,
}

/// Answers each turn with the turn's own audio.
pub struct EchoS2s {
    config: EchoS2sConfig,
}

impl S2sProvider for EchoS2s {
    fn name(&self) -> &str {
        "test-echo-s2s"
    }

    fn sample_rate(&self) -> u32 {
        16000
    }

    fn run(&self, mut session: S2sSession) -> BoxFuture<'static, Result<()>> {
        let answer_after_ms = self.config.answer_after_ms;
        let never_answer = self.config.never_answer;
        Box::pin(async move {
            let mut turn = Vec::new();
            let mut answered = false;
            let rate = u64::from(session.input_rate);
            while let Some(input) = session.input.recv().await {
                match input {
                    S2sInput::Audio(pcm) => {
                        turn.extend_from_slice(&pcm);
                        let ms = turn.len() as u64 * 1000 / rate;
                        if !answered && answer_after_ms.is_some_and(|after| ms >= after) {
                            answered = true;
                            echo(&session, &turn, rate);
                        }
                    }
                    S2sInput::EndOfTurn => {
                        if !std::mem::take(&mut answered) && !never_answer {
                            echo(&session, &turn, rate);
                        }
                        turn.clear();
                    }
                    S2sInput::CancelResponse => {
                        let _ = session.events.send(S2sEvent::ResponseDone);
                    }
                }
            }
            Ok(())
        })
    }
}

/// Answers `turn`: its length as the transcript, "echo" as the text — complete before any audio,
/// as a model whose text leads its speech says — then the audio itself.
fn echo(session: &S2sSession, turn: &[i16], rate: u64) {
    let ms = turn.len() as u64 * 1000 / rate;
    let send = |event| {
        let _ = session.events.send(event);
    };
    send(S2sEvent::UserTranscript(format!("{ms} ms of speech")));
    send(S2sEvent::ResponseText("echo".into()));
    send(S2sEvent::ResponseTextDone);
    for chunk in turn.chunks(320) {
        send(S2sEvent::Audio(chunk.to_vec()));
    }
    send(S2sEvent::ResponseDone);
}
