//! Frame geometry: how many samples one frame holds at each rate of a session.

use crate::config::{AudioConfig, SessionConfig};

/// The longest frame the realtime core handles: 30 ms at 16 kHz.
pub const MAX_FRAME_SAMPLES: usize = 480;

/// Frame sizes of one session, fixed at session start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpec {
    /// Frame duration in ms.
    pub frame_ms: u32,
    /// Internal rate (VAD, turn detection, STT).
    pub internal_rate: u32,
    /// Rate of the audio the host pushes.
    pub input_rate: u32,
    /// Rate of the audio the host reads.
    pub output_rate: u32,
}

impl FrameSpec {
    /// The frame geometry of a session with these settings.
    pub fn new(audio: &AudioConfig, session: &SessionConfig) -> Self {
        FrameSpec {
            frame_ms: audio.frame_ms,
            internal_rate: audio.sample_rate,
            input_rate: session.input_sample_rate,
            output_rate: session.output_sample_rate,
        }
    }

    /// Samples in `ms` milliseconds at `rate`.
    pub fn samples_in(rate: u32, ms: u32) -> usize {
        (u64::from(rate) * u64::from(ms) / 1000) as usize
    }

    /// Samples in one frame at the internal rate.
    pub fn internal_frame(&self) -> usize {
        Self::samples_in(self.internal_rate, self.frame_ms)
    }

    /// Samples in one frame at the host's input rate.
    pub fn input_frame(&self) -> usize {
        Self::samples_in(self.input_rate, self.frame_ms)
    }

    /// Samples in one frame at the host's output rate.
    pub fn output_frame(&self) -> usize {
        Self::samples_in(self.output_rate, self.frame_ms)
    }

    /// Number of whole frames in `ms` milliseconds, rounded up.
    pub fn frames_in(&self, ms: u32) -> u32 {
        ms.div_ceil(self.frame_ms)
    }

    /// One frame period as a `Duration`.
    pub fn period(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.frame_ms.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_follow_rate_and_duration() {
        let spec = FrameSpec {
            frame_ms: 20,
            internal_rate: 16000,
            input_rate: 44100,
            output_rate: 48000,
        };
        assert_eq!(spec.internal_frame(), 320);
        assert_eq!(spec.input_frame(), 882);
        assert_eq!(spec.output_frame(), 960);
        assert_eq!(spec.frames_in(500), 25);
        assert_eq!(spec.frames_in(150), 8);
        assert!(FrameSpec::samples_in(16000, 30) <= MAX_FRAME_SAMPLES);
    }
}
