//! Turn detection in audio time: when a user turn starts, when it ends, and the speech before
//! its start (pre-roll) that must still reach STT.
//!
//! Everything is counted in frames, never in wall-clock time, so a file pushed faster than real
//! time is cut into exactly the same turns as the same audio spoken live.
//!
//! With `turn.end_of_turn: "smart_turn"`, a pause of `turn.pause_ms` inside a turn asks the
//! end-of-turn model ([`TurnStep::AskModel`]); its answer ([`TurnDetector::model_answer`]) ends
//! the turn at once when the turn is complete, and otherwise the turn waits for more speech up
//! to `turn.max_wait_ms` of silence. A turn ends only by such a decision, never by a mere pause.
//!
//! With `turn.preemptive_ms`, the detector also tells when a pause inside a turn reached that
//! length and when the user went on after it ([`TurnDetector::take_pause_news`]): the session
//! starts the agent early on the first and cancels that reply on the second.

use super::frame::MAX_FRAME_SAMPLES;
use super::vad::VadDecision;
use crate::config::{EndOfTurn, TurnConfig};

/// Why a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnEndReason {
    /// `turn.silence_ms` of silence followed the speech.
    Silence,
    /// The turn reached `turn.max_turn_ms`.
    MaxLength,
    /// The end-of-turn model said the turn is complete.
    Model,
}

/// What the detector decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnStep {
    /// No turn: the frame is kept only as pre-roll.
    Idle,
    /// A turn starts with this frame: stream the pre-roll (which ends with this frame) first.
    Started,
    /// Inside a turn: stream this frame.
    Continuing,
    /// Inside a turn, after a pause: stream this frame and ask the end-of-turn model; pass its
    /// answer to [`TurnDetector::model_answer`] before the next frame.
    AskModel,
    /// The turn ends after this frame (stream it first).
    Ended {
        /// Silence or maximum length.
        reason: TurnEndReason,
        /// Audio-clock index of the last voiced frame.
        speech_end_frame: u64,
    },
}

/// What a pause inside a turn became on the last frame (`turn.preemptive_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseNews {
    /// The silence inside the turn reached `turn.preemptive_ms` (once per pause).
    Paused,
    /// Voiced speech came back after [`PauseNews::Paused`], in the same turn.
    WentOn,
}

/// The turn state machine plus its pre-roll buffer, fixed-size from construction.
pub struct TurnDetector {
    min_speech_frames: u32,
    silence_frames: u32,
    /// Smart Turn: the pause that asks the model (`None`: silence alone ends turns).
    pause_frames: Option<u32>,
    /// Smart Turn: ask again after this many more frames of silence (`None`: once a pause).
    recheck_frames: Option<u32>,
    /// The model was asked about the current pause, when this many frames into it.
    asked: Option<u32>,
    max_turn_frames: u32,
    /// Preemptive replies: the pause that is reported (`None`: off).
    preemptive_frames: Option<u32>,
    /// The current pause was reported as [`PauseNews::Paused`].
    pause_reported: bool,
    /// What the last frame did to the pause, until taken.
    pause_news: Option<PauseNews>,
    in_turn: bool,
    speech_frames: u32,
    turn_frames: u32,
    frames_since_voiced: u32,
    last_voiced_frame: u64,
    preroll: FrameHistory,
}

impl TurnDetector {
    /// A detector for frames of `frame_ms` with `frame_len` samples; `vad_start_frames` is the
    /// VAD's start hysteresis, so the pre-roll also holds the speech the VAD needed to decide.
    pub fn new(
        config: &TurnConfig,
        frame_ms: u32,
        frame_len: usize,
        vad_start_frames: u32,
    ) -> Self {
        let min_speech_frames = config.min_speech_ms.div_ceil(frame_ms).max(1);
        // Pre-roll: speech before the VAD said "speaking", the candidate itself, and 100 ms of lead-in.
        let preroll_frames =
            (vad_start_frames + min_speech_frames + 100u32.div_ceil(frame_ms)) as usize;
        let smart = config.end_of_turn == EndOfTurn::SmartTurn;
        TurnDetector {
            min_speech_frames,
            silence_frames: if smart {
                config.max_wait_ms.div_ceil(frame_ms).max(1)
            } else {
                config.silence_ms.div_ceil(frame_ms).max(1)
            },
            pause_frames: smart.then(|| config.pause_ms.div_ceil(frame_ms).max(1)),
            recheck_frames: (smart && config.recheck_ms > 0)
                .then(|| config.recheck_ms.div_ceil(frame_ms).max(1)),
            asked: None,
            max_turn_frames: config.max_turn_ms.div_ceil(frame_ms).max(1),
            preemptive_frames: (config.preemptive_ms > 0)
                .then(|| config.preemptive_ms.div_ceil(frame_ms).max(1)),
            pause_reported: false,
            pause_news: None,
            in_turn: false,
            speech_frames: 0,
            turn_frames: 0,
            frames_since_voiced: 0,
            last_voiced_frame: 0,
            preroll: FrameHistory::new(preroll_frames, frame_len),
        }
    }

    /// Frames the pre-roll holds at most (what a turn start emits at once).
    pub fn preroll_capacity(&self) -> usize {
        self.preroll.capacity
    }

    /// Advances by one frame (`frame_index` is the audio clock). Realtime-safe.
    pub fn process(&mut self, frame_index: u64, frame: &[i16], vad: VadDecision) -> TurnStep {
        if vad.voiced {
            self.frames_since_voiced = 0;
            self.last_voiced_frame = frame_index;
            self.asked = None;
        } else {
            self.frames_since_voiced = self.frames_since_voiced.saturating_add(1);
        }
        if !self.in_turn {
            self.preroll.push(frame);
            if !vad.speaking && !vad.voiced {
                self.speech_frames = 0;
                return TurnStep::Idle;
            }
            // Count voiced frames only: the VAD's hangover is no speech.
            self.speech_frames += u32::from(vad.voiced);
            if self.speech_frames < self.min_speech_frames {
                return TurnStep::Idle;
            }
            self.in_turn = true;
            self.turn_frames = 0;
            return TurnStep::Started;
        }
        self.turn_frames += 1;
        self.note_pause(vad.voiced);
        let silence_done = !vad.speaking && self.frames_since_voiced >= self.silence_frames;
        let reason = if silence_done {
            Some(TurnEndReason::Silence)
        } else if self.turn_frames >= self.max_turn_frames {
            Some(TurnEndReason::MaxLength)
        } else {
            None
        };
        match reason {
            Some(reason) => {
                self.in_turn = false;
                self.asked = None;
                self.pause_reported = false;
                self.speech_frames = 0;
                self.preroll.clear();
                TurnStep::Ended {
                    reason,
                    speech_end_frame: self.last_voiced_frame,
                }
            }
            None => match self.pause_frames {
                // Asked after `pause` frames of silence and, with `turn.recheck_ms`, again after
                // every `recheck` more (the model's verdict changes as the silence grows).
                Some(pause)
                    if !vad.speaking
                        && self.frames_since_voiced >= pause
                        && self.asked.is_none_or(|at| {
                            self.recheck_frames
                                .is_some_and(|r| self.frames_since_voiced >= at + r)
                        }) =>
                {
                    self.asked = Some(self.frames_since_voiced);
                    TurnStep::AskModel
                }
                _ => TurnStep::Continuing,
            },
        }
    }

    /// The end-of-turn model's answer to the last [`TurnStep::AskModel`]: `complete` ends the
    /// turn now (the returned step), unless speech came back since the question.
    pub fn model_answer(&mut self, complete: bool) -> Option<TurnStep> {
        if !complete || !self.in_turn || self.asked.is_none() {
            return None;
        }
        self.in_turn = false;
        self.asked = None;
        self.pause_reported = false;
        self.speech_frames = 0;
        self.preroll.clear();
        Some(TurnStep::Ended {
            reason: TurnEndReason::Model,
            speech_end_frame: self.last_voiced_frame,
        })
    }

    /// What the last [`TurnDetector::process`] did to a pause inside the turn, once; always
    /// `None` unless `turn.preemptive_ms` is set. Realtime-safe.
    pub fn take_pause_news(&mut self) -> Option<PauseNews> {
        self.pause_news.take()
    }

    /// Preemptive replies: reports a pause inside the turn once it is `preemptive_ms` long, and
    /// voiced speech after such a pause.
    fn note_pause(&mut self, voiced: bool) {
        let Some(pause) = self.preemptive_frames else {
            return;
        };
        if voiced && self.pause_reported {
            self.pause_reported = false;
            self.pause_news = Some(PauseNews::WentOn);
        } else if !voiced && !self.pause_reported && self.frames_since_voiced >= pause {
            self.pause_reported = true;
            self.pause_news = Some(PauseNews::Paused);
        }
    }

    /// Hands the buffered pre-roll frames, oldest first, to `f`, and empties the buffer.
    pub fn drain_preroll(&mut self, mut f: impl FnMut(&[i16])) {
        self.preroll.drain(&mut f);
    }
}

/// A fixed ring of the last N frames.
struct FrameHistory {
    samples: Box<[i16]>,
    frame_len: usize,
    capacity: usize,
    start: usize,
    len: usize,
}

impl FrameHistory {
    fn new(capacity: usize, frame_len: usize) -> Self {
        assert!(frame_len <= MAX_FRAME_SAMPLES);
        FrameHistory {
            samples: vec![0; capacity * frame_len].into_boxed_slice(),
            frame_len,
            capacity,
            start: 0,
            len: 0,
        }
    }

    fn push(&mut self, frame: &[i16]) {
        let slot = (self.start + self.len) % self.capacity;
        self.samples[slot * self.frame_len..(slot + 1) * self.frame_len].copy_from_slice(frame);
        if self.len == self.capacity {
            self.start = (self.start + 1) % self.capacity;
        } else {
            self.len += 1;
        }
    }

    fn drain(&mut self, f: &mut impl FnMut(&[i16])) {
        for i in 0..self.len {
            let slot = (self.start + i) % self.capacity;
            f(&self.samples[slot * self.frame_len..(slot + 1) * self.frame_len]);
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.start = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [i16; 320] = [0; 320];

    fn decision(voiced: bool) -> VadDecision {
        VadDecision {
            voiced,
            speaking: voiced,
        }
    }

    /// Runs a voiced/unvoiced pattern (one bool per 20 ms frame) and records the steps.
    fn run(det: &mut TurnDetector, pattern: &[(bool, usize)]) -> Vec<(u64, TurnStep)> {
        let mut steps = Vec::new();
        let mut i = 0u64;
        for &(voiced, count) in pattern {
            for _ in 0..count {
                let step = det.process(i, &FRAME, decision(voiced));
                if step != TurnStep::Continuing && step != TurnStep::Idle {
                    steps.push((i, step));
                }
                i += 1;
            }
        }
        steps
    }

    fn detector() -> TurnDetector {
        TurnDetector::new(
            &TurnConfig {
                silence_ms: 500,
                min_speech_ms: 150,
                max_turn_ms: 2000,
                ..TurnConfig::default()
            },
            20,
            320,
            2,
        )
    }

    #[test]
    fn a_turn_starts_after_min_speech_and_ends_after_silence() {
        let mut det = detector();
        let steps = run(&mut det, &[(false, 10), (true, 50), (false, 40)]);
        assert_eq!(
            steps[0],
            (17, TurnStep::Started),
            "8 frames = 160 ms >= 150 ms"
        );
        assert_eq!(
            steps[1],
            (
                84,
                TurnStep::Ended {
                    reason: TurnEndReason::Silence,
                    speech_end_frame: 59
                }
            )
        );
        assert_eq!(steps.len(), 2);
    }

    /// Runs a voiced/unvoiced pattern and records the pause news with their frame index.
    fn pause_news(det: &mut TurnDetector, pattern: &[(bool, usize)]) -> Vec<(u64, PauseNews)> {
        let mut news = Vec::new();
        let mut i = 0u64;
        for &(voiced, count) in pattern {
            for _ in 0..count {
                det.process(i, &FRAME, decision(voiced));
                news.extend(det.take_pause_news().map(|n| (i, n)));
                i += 1;
            }
        }
        news
    }

    #[test]
    fn a_pause_is_reported_once_when_preemptive_ms_long_and_going_on_after_it_too() {
        let config = TurnConfig {
            silence_ms: 500,
            min_speech_ms: 150,
            preemptive_ms: 200,
            ..TurnConfig::default()
        };
        let mut det = TurnDetector::new(&config, 20, 320, 2);
        // Speech, a 100 ms breath (not reported), speech, a 300 ms pause (reported at 200 ms),
        // speech again (went on), then the closing silence (reported again; the turn ends at
        // 500 ms with no more news).
        let news = pause_news(
            &mut det,
            &[
                (false, 5),
                (true, 20),
                (false, 5),
                (true, 10),
                (false, 15),
                (true, 10),
                (false, 30),
            ],
        );
        assert_eq!(
            news,
            [
                (49, PauseNews::Paused),
                (55, PauseNews::WentOn),
                (74, PauseNews::Paused)
            ],
            "a pause of 10 frames is reported on its 10th"
        );
        // A pause before any turn is no turn's pause; neither is silence after the turn ended.
        let idle = pause_news(&mut det, &[(false, 40)]);
        assert_eq!(idle, []);
        let mut off = detector();
        let news = pause_news(
            &mut off,
            &[(true, 20), (false, 15), (true, 10), (false, 30)],
        );
        assert_eq!(news, [], "preemptive_ms 0 reports nothing");
    }

    fn smart_detector(recheck_ms: u32) -> TurnDetector {
        TurnDetector::new(
            &TurnConfig {
                min_speech_ms: 150,
                end_of_turn: EndOfTurn::SmartTurn,
                pause_ms: 200,
                recheck_ms,
                max_wait_ms: 1000,
                ..TurnConfig::default()
            },
            20,
            320,
            2,
        )
    }

    #[test]
    fn smart_turn_asks_after_the_pause_and_ends_on_complete() {
        let mut once = smart_detector(0);
        let steps = run(&mut once, &[(true, 20), (false, 25)]);
        assert_eq!(
            steps[1],
            (29, TurnStep::AskModel),
            "10 frames = 200 ms of pause"
        );
        assert_eq!(steps.len(), 2, "asked once: {steps:?}");
        let mut det = smart_detector(200);
        let steps = run(&mut det, &[(true, 20), (false, 25)]);
        assert_eq!(
            steps[1],
            (29, TurnStep::AskModel),
            "10 frames = 200 ms of pause"
        );
        assert_eq!(steps[2], (39, TurnStep::AskModel), "recheck_ms later again");
        assert_eq!(steps.len(), 3);
        assert_eq!(
            det.model_answer(true),
            Some(TurnStep::Ended {
                reason: TurnEndReason::Model,
                speech_end_frame: 19
            })
        );
        assert_eq!(det.model_answer(true), None, "the turn is over");
    }

    #[test]
    fn smart_turn_incomplete_waits_up_to_max_wait_and_speech_resumes_the_turn() {
        let mut det = smart_detector(200);
        let steps = run(&mut det, &[(true, 20), (false, 10)]);
        assert_eq!(steps[1].1, TurnStep::AskModel);
        assert_eq!(det.model_answer(false), None);
        assert_eq!(
            run(&mut det, &[(false, 9)]),
            vec![],
            "not asked again before 200 ms more"
        );
        // 900 ms more of pause (1.1 s in all) is past max_wait (1 s): ended at frame 69.
        let mut det2 = smart_detector(0);
        let steps2 = run(&mut det2, &[(true, 20), (false, 60)]);
        assert_eq!(
            steps2.last().unwrap(),
            &(
                69,
                TurnStep::Ended {
                    reason: TurnEndReason::Silence,
                    speech_end_frame: 19
                }
            )
        );
        // Speech coming back before then continues the turn, and the next pause asks again.
        let later = run(&mut det, &[(true, 10), (false, 10)]);
        assert_eq!(later.len(), 1, "{later:?}");
        assert_eq!(later[0].1, TurnStep::AskModel);
    }

    #[test]
    fn a_cough_shorter_than_min_speech_is_no_turn() {
        let mut det = detector();
        assert!(run(&mut det, &[(true, 5), (false, 50), (true, 3), (false, 50)]).is_empty());
    }

    #[test]
    fn short_pauses_do_not_end_a_turn() {
        let mut det = detector();
        let steps = run(
            &mut det,
            &[(true, 20), (false, 20), (true, 20), (false, 30)],
        );
        assert_eq!(steps.len(), 2);
        assert!(matches!(
            steps[1].1,
            TurnStep::Ended {
                speech_end_frame: 59,
                ..
            }
        ));
    }

    #[test]
    fn long_speech_is_cut_at_max_turn() {
        let mut det = detector();
        let steps = run(&mut det, &[(true, 250)]);
        assert_eq!(
            steps[1].1,
            TurnStep::Ended {
                reason: TurnEndReason::MaxLength,
                speech_end_frame: 107
            }
        );
        assert_eq!(
            steps[2].1,
            TurnStep::Started,
            "speech that goes on opens the next turn"
        );
    }

    #[test]
    fn preroll_holds_the_speech_before_the_start() {
        let mut det = detector();
        let mut frames = Vec::new();
        for i in 0..30u64 {
            let frame = [i as i16; 320];
            if det.process(i, &frame, decision(i >= 20)) == TurnStep::Started {
                det.drain_preroll(|f| frames.push(f[0]));
                break;
            }
        }
        // Capacity: 2 (VAD start) + 8 (min speech) + 5 (100 ms) frames, ending with the start frame.
        assert_eq!(frames, (13..=27).collect::<Vec<i16>>());
    }
}
