//! What crosses the session's rings: outputs of the realtime thread and controls sent to it.
//! Every type here is `Copy`-sized and heap-free, so sending one never allocates.

use super::frame::MAX_FRAME_SAMPLES;
use super::turn::TurnEndReason;

/// One internal-rate frame of user speech that belongs to turn `turn`.
#[derive(Clone, Copy)]
pub struct SpeechFrame {
    /// Turn number, counting from 1.
    pub turn: u32,
    len: u16,
    samples: [i16; MAX_FRAME_SAMPLES],
}

impl SpeechFrame {
    /// Copies `pcm` (at most [`MAX_FRAME_SAMPLES`] samples) into a frame of `turn`.
    pub fn new(turn: u32, pcm: &[i16]) -> Self {
        let len = pcm.len().min(MAX_FRAME_SAMPLES);
        let mut samples = [0; MAX_FRAME_SAMPLES];
        samples[..len].copy_from_slice(&pcm[..len]);
        SpeechFrame {
            turn,
            len: len as u16,
            samples,
        }
    }

    /// The frame's samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples[..usize::from(self.len)]
    }
}

/// What the realtime thread tells the session's I/O side, in order. Times are microseconds on the
/// session clock.
#[derive(Clone, Copy)]
// Ring slots are fixed-size by design: boxing the speech frame would allocate on the realtime
// thread.
#[allow(clippy::large_enum_variant)]
pub enum RtOutput {
    /// A user turn started.
    SpeechStarted {
        /// Turn number, counting from 1.
        turn: u32,
        /// When the start was detected.
        at_us: u64,
    },
    /// Speech audio of an open turn, for STT.
    Speech(SpeechFrame),
    /// The turn ended.
    SpeechStopped {
        /// Turn number.
        turn: u32,
        /// When the end was detected (after the closing silence).
        at_us: u64,
        /// When the turn's last voiced frame was processed: the origin of turn metrics.
        speech_end_us: u64,
        /// Silence or maximum length.
        reason: TurnEndReason,
    },
    /// A pause inside turn `turn` reached `turn.preemptive_ms`: the turn may be over (the
    /// session may start its reply early).
    UserPaused {
        /// Turn number.
        turn: u32,
        /// When (the pause's last frame was processed).
        at_us: u64,
    },
    /// The user spoke again after [`RtOutput::UserPaused`], in the same turn.
    UserWentOn {
        /// Turn number.
        turn: u32,
        /// When.
        at_us: u64,
    },
    /// User speech interrupted reply playout (barge-in); playout is already flushed.
    Interrupted {
        /// When.
        at_us: u64,
    },
    /// User speech paused reply playout (`interruptions.decide_by` `"words"`): the session
    /// task decides from the words whether to resume ([`RtControl::Resume`]) or cancel.
    Paused {
        /// When.
        at_us: u64,
    },
    /// The first sample of the current reply became readable by the host.
    PlayoutStarted {
        /// When.
        at_us: u64,
    },
    /// The current reply has been played out and read by the host.
    PlayoutFinished {
        /// When.
        at_us: u64,
    },
}

/// Controls for the realtime thread, sent by the session's I/O side or by host control calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtControl {
    /// A reply's audio is about to be written to the reply ring.
    ReplyStarted,
    /// No more audio will come for the current reply.
    ReplyFinished,
    /// Stop playout now and discard reply audio until [`RtControl::ReplyCancelled`].
    Interrupt,
    /// The cancelled reply's producer has stopped: discard what it left and resume playout.
    ReplyCancelled,
    /// Resume a paused reply where it paused (what the host had not read when it paused first).
    Resume,
}
