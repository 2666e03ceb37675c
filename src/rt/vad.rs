//! Voice activity detection: webrtc-vad per frame, or Silero's probability computed on the
//! inference pool (see [`super::neural`]), smoothed by start/stop hysteresis.

use webrtc_vad::{SampleRate, Vad, VadMode};

use crate::config::{VadConfig, VadEngine};

/// Raw frame classifier plus hysteresis: "speech" only after `start` voiced frames in a row,
/// "silence" only after `stop` unvoiced frames in a row.
pub struct VoiceDetector {
    vad: Classifier,
    start_frames: u32,
    stop_frames: u32,
    run: u32,
    speaking: bool,
}

/// What the detector concluded from one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VadDecision {
    /// The raw classifier's verdict for this frame.
    pub voiced: bool,
    /// The smoothed state after this frame.
    pub speaking: bool,
}

impl VoiceDetector {
    /// A detector for frames of `frame_ms` at `sample_rate` (8000 or 16000).
    pub fn new(config: &VadConfig, sample_rate: u32, frame_ms: u32) -> Self {
        VoiceDetector {
            vad: match config.engine {
                VadEngine::Webrtc => Classifier::Webrtc(FrameVad::new(config.mode, sample_rate)),
                VadEngine::Silero => Classifier::Silero {
                    threshold: config.threshold,
                },
            },
            start_frames: config.start_ms.div_ceil(frame_ms).max(1),
            stop_frames: config.stop_ms.div_ceil(frame_ms).max(1),
            run: 0,
            speaking: false,
        }
    }

    /// Whether the verdicts come from Silero on the inference pool (the caller passes its
    /// probability to [`VoiceDetector::process`]).
    pub fn uses_model(&self) -> bool {
        matches!(self.vad, Classifier::Silero { .. })
    }

    /// Classifies one frame; `speech_prob` is Silero's latest probability (ignored by
    /// webrtc-vad). Realtime-safe.
    pub fn process(&mut self, frame: &[i16], speech_prob: f32) -> VadDecision {
        let voiced = match &mut self.vad {
            Classifier::Webrtc(vad) => vad.is_voiced(frame),
            Classifier::Silero { threshold } => speech_prob >= *threshold,
        };
        if voiced == self.speaking {
            self.run = 0;
        } else {
            self.run += 1;
            let needed = if self.speaking {
                self.stop_frames
            } else {
                self.start_frames
            };
            if self.run >= needed {
                self.speaking = voiced;
                self.run = 0;
            }
        }
        VadDecision {
            voiced,
            speaking: self.speaking,
        }
    }

    /// The smoothed state.
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }
}

/// Where the raw verdict comes from.
enum Classifier {
    Webrtc(FrameVad),
    Silero { threshold: f32 },
}

/// webrtc-vad's C state. It holds plain memory with no tie to the thread that made it.
struct FrameVad(Vad);

// SAFETY: `Vad` wraps a heap-allocated `Fvad` struct that has no thread affinity; it is only
// ever used by one thread at a time (moved to the realtime thread, never shared).
unsafe impl Send for FrameVad {}

impl FrameVad {
    fn new(mode: u8, sample_rate: u32) -> Self {
        let rate = if sample_rate == 8000 {
            SampleRate::Rate8kHz
        } else {
            SampleRate::Rate16kHz
        };
        let mode = match mode {
            0 => VadMode::Quality,
            1 => VadMode::LowBitrate,
            2 => VadMode::Aggressive,
            _ => VadMode::VeryAggressive,
        };
        FrameVad(Vad::new_with_rate_and_mode(rate, mode))
    }

    fn is_voiced(&mut self, frame: &[i16]) -> bool {
        // Frames are always 10/20/30 ms at a supported rate, so the only error case cannot occur.
        self.0.is_voice_segment(frame).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice_like(n: usize, phase: usize) -> Vec<i16> {
        // A harmonic-rich 150 Hz buzz: webrtc-vad calls this speech.
        (0..n)
            .map(|i| {
                let t = (i + phase) as f32 / 16000.0;
                let s: f32 = (1..=12)
                    .map(|h| (t * 150.0 * h as f32 * std::f32::consts::TAU).sin() / h as f32)
                    .sum();
                (s * 6000.0) as i16
            })
            .collect()
    }

    #[test]
    fn state_changes_only_after_the_hysteresis() {
        let cfg = VadConfig {
            mode: 2,
            start_ms: 40,
            stop_ms: 100,
            ..VadConfig::default()
        };
        let mut d = VoiceDetector::new(&cfg, 16000, 20);
        for _ in 0..10 {
            assert!(!d.process(&[0; 320], 0.0).speaking, "silence is no speech");
        }
        let mut decisions = Vec::new();
        for i in 0..10 {
            decisions.push(d.process(&voice_like(320, i * 320), 0.0));
        }
        for _ in 0..30 {
            decisions.push(d.process(&[0; 320], 0.0));
        }
        // The smoothed state flips exactly when the raw verdict has held for 2 (start) or
        // 5 (stop) frames in a row; webrtc-vad's own hangover shows in the raw verdicts.
        let mut previous = false;
        for (i, decision) in decisions.iter().enumerate() {
            if decision.speaking != previous {
                let needed = if decision.speaking { 2 } else { 5 };
                assert!(i + 1 >= needed, "flip at {i}");
                let run = &decisions[i + 1 - needed..=i];
                assert!(
                    run.iter().all(|d| d.voiced == decision.speaking),
                    "flip at {i} after {run:?}"
                );
                if i >= needed {
                    assert_ne!(
                        decisions[i - needed].voiced,
                        decision.speaking,
                        "flip at {i} came late"
                    );
                }
                previous = decision.speaking;
            }
        }
        assert!(decisions[1].speaking && !decisions.last().unwrap().speaking);
    }
}
