//! Session events: what a host polls or receives through its event callback.

use crate::error::VbStatus;

/// Kinds of session event. Values fixed by the C contract.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VbEventKind {
    /// The session entered a new state, given in `state`.
    VB_EVENT_STATE_CHANGED = 0,
    /// A user turn started (after `turn.min_speech_ms` of speech).
    VB_EVENT_SPEECH_STARTED = 1,
    /// The user turn ended (after `turn.silence_ms` of silence, or at `turn.max_turn_ms`).
    VB_EVENT_SPEECH_STOPPED = 2,
    /// An interim transcript, in `text`.
    VB_EVENT_TRANSCRIPT_PARTIAL = 3,
    /// The final transcript of a turn, in `text`.
    VB_EVENT_TRANSCRIPT_FINAL = 4,
    /// The agent's full reply once it ended, in `text`.
    VB_EVENT_AGENT_RESPONSE = 5,
    /// Playback stopped by barge-in.
    VB_EVENT_INTERRUPTED = 6,
    /// The latencies (`metrics`) of the turn that just got its first reply audio.
    VB_EVENT_TURN_METRICS = 7,
    /// Asynchronous work failed: `error` and `text` say how.
    VB_EVENT_ERROR = 8,
    /// Audio was lost (input overrun or a stalled pipeline): `dropped_samples` samples.
    VB_EVENT_AUDIO_DROPPED = 9,
    /// A key the caller pressed on a phone call, in `text` (DTMF: `0`–`9`, `*`, `#`, `A`–`D`).
    VB_EVENT_DTMF = 10,
}

/// Session states. Values fixed by the C contract.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VbSessionState {
    /// Created, not started.
    VB_STATE_IDLE = 0,
    /// Waiting for the user.
    VB_STATE_LISTENING = 1,
    /// A user turn ended; transcript and reply are being produced.
    VB_STATE_PROCESSING = 2,
    /// Reply audio is playing.
    VB_STATE_SPEAKING = 3,
    /// Stopped.
    VB_STATE_STOPPED = 4,
    /// Failed; see the last error event.
    VB_STATE_ERROR = 5,
}

impl VbSessionState {
    /// The state stored as `raw` (see `as u8`); unknown values read as `VB_STATE_ERROR`.
    pub fn from_u8(raw: u8) -> Self {
        match raw {
            0 => Self::VB_STATE_IDLE,
            1 => Self::VB_STATE_LISTENING,
            2 => Self::VB_STATE_PROCESSING,
            3 => Self::VB_STATE_SPEAKING,
            4 => Self::VB_STATE_STOPPED,
            _ => Self::VB_STATE_ERROR,
        }
    }
}

/// Latencies of one turn in microseconds from the end of user speech (VAD); 0 when a stage did
/// not happen.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VbTurnMetrics {
    /// Final transcript available.
    pub stt_final_us: u64,
    /// First reply text from the agent.
    pub agent_first_text_us: u64,
    /// First synthesized audio from TTS.
    pub tts_first_audio_us: u64,
    /// First reply sample readable by the host: the voice-to-voice latency.
    pub first_output_audio_us: u64,
}

/// One event, owned (the Rust API's form of `VbEvent`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: VbEventKind,
    /// Microseconds since the session was created (monotonic).
    pub timestamp_us: u64,
    /// The session state after the event.
    pub state: VbSessionState,
    /// Transcript, reply text or error message, when the kind carries one.
    pub text: Option<String>,
    /// The error status of `VB_EVENT_ERROR`, else `VB_OK`.
    pub error: VbStatus,
    /// Samples lost, for `VB_EVENT_AUDIO_DROPPED`.
    pub dropped_samples: u64,
    /// Turn latencies, for `VB_EVENT_TURN_METRICS`.
    pub metrics: VbTurnMetrics,
}

impl Event {
    /// An event of `kind` with no payload.
    pub fn new(kind: VbEventKind, timestamp_us: u64, state: VbSessionState) -> Self {
        Event {
            kind,
            timestamp_us,
            state,
            text: None,
            error: VbStatus::VB_OK,
            dropped_samples: 0,
            metrics: VbTurnMetrics::default(),
        }
    }

    /// Adds text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }
}
