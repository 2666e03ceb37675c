//! The sections of the backend configuration: `retry`, `rate_limit`, `auth`, `persistence`,
//! `privacy`, `telemetry`, `audio` (with `vad`, `turn`, `interruptions`), each with its documented
//! defaults.

use serde::Deserialize;

use super::Secret;

/// `retry`: jittered exponential backoff for provider connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Connection attempts before giving up, the first included (1–20, default 5).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles each time (1–60000 ms, default 100).
    pub initial_backoff_ms: u32,
    /// Longest wait between attempts (initial_backoff_ms–300000 ms, default 5000).
    pub max_backoff_ms: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 5000,
        }
    }
}

/// `rate_limit`: the built-in token buckets that admit new sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sessions admitted per second across the backend; 0 turns the global limit off (default 50).
    pub sessions_per_second: u32,
    /// Sessions that may be admitted at once above the steady rate (1–1000000, default 100).
    pub burst: u32,
    /// Sessions one user may open per minute; 0 turns the per-user limit off (default 30).
    pub per_user_sessions_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            sessions_per_second: 50,
            burst: 100,
            per_user_sessions_per_minute: 30,
        }
    }
}

/// `auth`: access tokens of new sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Key of the built-in hook that verifies HS256 JWT access tokens (LiveKit-compatible
    /// claims); null: no built-in hook.
    pub jwt_hs256_secret: Option<Secret>,
    /// Refuse sessions without a valid `auth_token` (default false).
    pub required: bool,
}

/// `persistence`: the embedded store of active sessions, and the store of conversations shared
/// by the worker processes of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceConfig {
    /// Store file (its directory is created); null: `voicebackend/sessions/<program>.redb` under
    /// the user's cache directory (`$XDG_CACHE_HOME`, else `~/.cache`), removed when the last
    /// backend using it closes it with no record left; `""`: off.
    pub path: Option<String>,
    /// A directory shared by the processes of a deployment (one host, or a network file system
    /// they all mount; created if missing); null (default): none. Sessions with a
    /// `conversation_id` keep their history there, one file per conversation, so that another
    /// process goes on with a conversation whose process died.
    pub shared_dir: Option<String>,
    /// How long a conversation's process may fail to renew its claim on it before other
    /// processes consider it dead and bring the conversation back (1000–600000 ms, default
    /// 10000). The owner renews every third of it.
    pub lease_ms: u32,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            path: None,
            shared_dir: None,
            lease_ms: 10_000,
        }
    }
}

/// `privacy`: what the default retention policy lets the engine keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Keep transcripts in the store while the session is active (default true).
    pub persist_transcripts: bool,
    /// Keep user audio in the store while the session is active (default false).
    pub persist_audio: bool,
    /// Write transcripts to logs (default false).
    pub log_transcripts: bool,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            persist_transcripts: true,
            persist_audio: false,
            log_transcripts: false,
        }
    }
}

/// `telemetry`: OpenTelemetry metrics and traces.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `service.name` of the exported resource (default "voicebackend").
    pub service_name: String,
    /// OTLP/HTTP protobuf endpoint, e.g. `http://127.0.0.1:4318`; null: no OTLP export.
    pub otlp_endpoint: Option<String>,
    /// `host:port` of a Prometheus text endpoint (`/metrics`); null: none. Loopback unless an
    /// address says otherwise.
    pub prometheus_addr: Option<String>,
    /// How often metrics are pushed over OTLP (100–600000 ms, default 10000).
    pub export_interval_ms: u32,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            service_name: "voicebackend".to_owned(),
            otlp_endpoint: None,
            prometheus_addr: None,
            export_interval_ms: 10_000,
        }
    }
}

/// `audio`: the realtime core's internal format and ring sizes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// Internal rate in Hz: 8000 or 16000 (default 16000).
    pub sample_rate: u32,
    /// Frame duration in ms: 10, 20 or 30 (default 20).
    pub frame_ms: u32,
    /// Input ring between `process_audio` and the realtime thread, in ms of audio (default 500).
    pub input_buffer_ms: u32,
    /// Output ring that `read_audio` drains, in ms of audio (default 200).
    pub output_buffer_ms: u32,
    /// Reply audio buffered between TTS and playout, in ms (default 2000).
    pub reply_buffer_ms: u32,
    /// Ask the OS for realtime scheduling of the session threads (default true).
    pub realtime_priority: bool,
    /// Where the sessions' realtime loops run: 0 (default) gives every session its own realtime
    /// thread, woken by each frame; 1–64 runs every session's loop on a pool of that many
    /// realtime threads, each waking every half frame period and running all its loops (fewer
    /// wake-ups for many sessions, up to half a frame more input latency). See
    /// [`crate::rt::pool`].
    pub realtime_threads: u32,
    /// Built-in noise suppression (RNNoise, [`crate::rt::denoise`]) of every internal frame on the
    /// realtime thread, after the custom processors (an echo canceller must see the signal as it
    /// came) and before the VAD (default false). The VAD, and Silero and Smart Turn with
    /// `vad.engine` / `turn.end_of_turn`, hear the denoised audio; STT gets the frames as they
    /// were (see the README, *Noise suppression*). Adds 12 ms to the VAD's decisions at 16 kHz
    /// (16 ms at 8 kHz) and about 100 µs of CPU a 20 ms frame (0.5 % of a core per session).
    /// Needs `realtime_threads` ≥ 1 (RNNoise's FFT keeps ~20 KB per thread for good).
    pub noise_suppression: bool,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            sample_rate: 16000,
            frame_ms: 20,
            input_buffer_ms: 500,
            output_buffer_ms: 200,
            reply_buffer_ms: 2000,
            realtime_priority: true,
            realtime_threads: 0,
            noise_suppression: false,
        }
    }
}

/// `vad.engine`: which classifier labels each frame voiced or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VadEngine {
    /// webrtc-vad on the realtime thread (1.5 µs a frame): the default.
    #[default]
    Webrtc,
    /// Silero VAD v5 (ONNX) on the backend's inference pool; the realtime thread only hands
    /// frames over and reads probabilities back (see [`crate::infer`]).
    Silero,
}

/// `vad`: the frame classifier (webrtc-vad or Silero) with start/stop hysteresis.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VadConfig {
    /// `"webrtc"` (default) or `"silero"`.
    pub engine: VadEngine,
    /// webrtc-vad aggressiveness 0 (quality) to 3 (very aggressive), default 2.
    pub mode: u8,
    /// Silero: speech probability from which a frame is voiced (0.05–0.95, default 0.5).
    pub threshold: f32,
    /// Voiced audio needed before the detector says "speech" (default 40 ms).
    pub start_ms: u32,
    /// Unvoiced audio needed before it says "silence" again (default 100 ms).
    pub stop_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            engine: VadEngine::Webrtc,
            mode: 2,
            threshold: 0.5,
            start_ms: 40,
            stop_ms: 100,
        }
    }
}

/// `turn.end_of_turn`: what ends a user turn after speech pauses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndOfTurn {
    /// `turn.silence_ms` of silence (the default).
    #[default]
    Silence,
    /// The Smart Turn v3 model, asked after `turn.pause_ms` of silence: "complete" ends the turn
    /// at once, "incomplete" waits for more speech up to `turn.max_wait_ms` of silence.
    SmartTurn,
}

/// `turn`: when a user turn starts and ends, in audio time.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Silence that ends a turn with `end_of_turn: "silence"` (50–10000 ms, default 500).
    pub silence_ms: u32,
    /// Speech needed before a turn starts (0–5000 ms, default 150).
    pub min_speech_ms: u32,
    /// A turn is cut at this length (1000–600000 ms, default 30000).
    pub max_turn_ms: u32,
    /// `"silence"` (default) or `"smart_turn"`.
    pub end_of_turn: EndOfTurn,
    /// Smart Turn: silence after which the model is asked (60–2000 ms, default 200: on eSpeak NG
    /// sentences it ended complete ones sooner and cut fewer pauses than 300; 100 cut sentences).
    pub pause_ms: u32,
    /// Smart Turn: while the model says "incomplete", ask it again after every `recheck_ms`
    /// more of silence; 0 (default) asks once per pause (0–5000 ms).
    pub recheck_ms: u32,
    /// Smart Turn: probability of "complete" from which the turn ends (0.05–0.95, default 0.5,
    /// Pipecat's).
    pub smart_turn_threshold: f32,
    /// Smart Turn: silence that ends the turn even when the model said "incomplete"
    /// (pause_ms–10000 ms, default 1500).
    pub max_wait_ms: u32,
    /// Preemptive replies: after this much silence inside a turn the engine transcribes the turn
    /// so far and starts the agent on it while the end of turn is still undecided; the reply is
    /// played when the final transcript says the same, cancelled when the user goes on or the
    /// final transcript differs. 0 (default) is off; otherwise 40 ms up to the silence that ends
    /// a turn (`silence_ms`, or `max_wait_ms` with Smart Turn).
    pub preemptive_ms: u32,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            silence_ms: 500,
            min_speech_ms: 150,
            max_turn_ms: 30000,
            end_of_turn: EndOfTurn::Silence,
            pause_ms: 200,
            recheck_ms: 0,
            smart_turn_threshold: 0.5,
            max_wait_ms: 1500,
            preemptive_ms: 0,
        }
    }
}

/// `inference`: the backend's pool of threads that runs the neural models (Silero VAD, Smart
/// Turn) for all its sessions, and where the models and ONNX Runtime are found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Worker threads shared by every session of the backend (0 = 1; 1–16, default 1).
    pub threads: u32,
    /// ONNX Runtime's shared library (`libonnxruntime.so.*`); null: `$ORT_DYLIB_PATH`, else the
    /// one of the `onnxruntime` wheel in the engine's Python environment
    /// (`scripts/python-env.sh`).
    pub ort_library: Option<String>,
    /// Silero VAD v5 ONNX file; null: the one in the `pipecat-ai` wheel of that environment.
    pub silero_model: Option<String>,
    /// Smart Turn v3 ONNX file; null: the one in the `pipecat-ai` wheel of that environment.
    pub smart_turn_model: Option<String>,
}

/// `interruptions`: barge-in while the agent speaks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterruptionConfig {
    /// Whether user speech interrupts the agent (default true).
    pub enabled: bool,
    /// Speech needed to interrupt (`decide_by` `"speech"`) or to pause the agent until the
    /// words decide (`"words"`), so a cough does not (0–5000 ms, default 200).
    pub min_speech_ms: u32,
    /// `"speech"` (default): `min_speech_ms` of speech interrupts. `"words"`: it pauses the
    /// agent, and the user's words decide — a backchannel (`backchannels`) or no words at all
    /// (a noise) resumes the reply where it paused, anything else interrupts it.
    pub decide_by: DecideBy,
    /// With `"words"`: speech this long interrupts without waiting for its words
    /// (`min_speech_ms`–30000 ms, default 1500).
    pub max_backchannel_ms: u32,
    /// With `"words"`: a pause that no user turn follows (a sound too short to be one) resumes
    /// after this long (100–10000 ms, default 1000).
    pub resume_after_ms: u32,
    /// With `"words"`: what a listener says without taking the turn, matched against the whole
    /// transcript without punctuation or case (default: "mm-hmm", "uh-huh", "yeah", "okay",
    /// "right", … — [`DEFAULT_BACKCHANNELS`]).
    pub backchannels: Vec<String>,
}

/// How an interruption is decided (`interruptions.decide_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecideBy {
    /// Enough speech interrupts.
    Speech,
    /// Speech pauses the agent; the words decide.
    Words,
}

/// The backchannels of `interruptions.backchannels` by default.
pub const DEFAULT_BACKCHANNELS: &[&str] = &[
    "mm-hmm",
    "mhm",
    "mm",
    "hmm",
    "uh-huh",
    "uh huh",
    "yeah",
    "yes",
    "yep",
    "yup",
    "okay",
    "ok",
    "right",
    "sure",
    "i see",
    "got it",
    "alright",
    "all right",
    "cool",
    "nice",
    "oh",
    "ah",
    "wow",
    "really",
    "thanks",
    "thank you",
];

impl Default for InterruptionConfig {
    fn default() -> Self {
        InterruptionConfig {
            enabled: true,
            min_speech_ms: 200,
            decide_by: DecideBy::Speech,
            max_backchannel_ms: 1500,
            resume_after_ms: 1000,
            backchannels: DEFAULT_BACKCHANNELS.iter().map(|s| s.to_string()).collect(),
        }
    }
}
