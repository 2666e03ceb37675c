//! Backend and session configuration: strict JSON parsing with documented defaults.
//!
//! Unknown keys are rejected and every out-of-range value is reported with its field path and the
//! allowed range, e.g. `turn.silence_ms: 0 is below the minimum 50`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Internal sample rates the realtime core runs at (what VAD and STT want).
pub const INTERNAL_RATES: [u32; 2] = [8000, 16000];
/// Most threads `audio.realtime_threads` may ask for.
pub const MAX_REALTIME_THREADS: u32 = 64;
/// Sample rates a host may use at the edges.
pub const HOST_RATES: [u32; 6] = [8000, 16000, 24000, 32000, 44100, 48000];
/// Frame durations the realtime core supports.
pub const FRAME_MS: [u32; 3] = [10, 20, 30];

/// Which pipeline a backend runs: STT → agent → TTS, or one speech-to-speech model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PipelineType {
    /// Speech to text, the host's agent, text to speech (the default).
    #[default]
    SttTts,
    /// A speech-to-speech model answers by itself.
    S2s,
}

/// The backend configuration (`vb_backend_create`). `Debug` hides secrets, including the keys of
/// provider sections (see [`redacted`]).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Backend provider name from the registry, e.g. `"local"`. Required.
    pub provider: String,
    /// Provider-specific settings, validated by the provider.
    #[serde(default = "empty_object")]
    pub provider_config: Value,
    /// `stt_tts` (default) or `s2s`.
    #[serde(default)]
    pub pipeline_type: PipelineType,
    /// STT provider name; required by `stt_tts`.
    #[serde(default)]
    pub stt_provider: Option<String>,
    /// STT provider settings.
    #[serde(default = "empty_object")]
    pub stt_config: Value,
    /// TTS provider name; required by `stt_tts`.
    #[serde(default)]
    pub tts_provider: Option<String>,
    /// TTS provider settings.
    #[serde(default = "empty_object")]
    pub tts_config: Value,
    /// S2S provider name; required by `s2s`.
    #[serde(default)]
    pub s2s_provider: Option<String>,
    /// S2S provider settings.
    #[serde(default = "empty_object")]
    pub s2s_config: Value,
    /// Voice-to-voice latency target in ms (100–5000, default 500); turns slower than this are
    /// reported as degraded in health.
    #[serde(default = "default_latency_target_ms")]
    pub latency_target_ms: u32,
    /// Maximum number of sessions open at once (1–100000, default 100).
    #[serde(default = "default_max_sessions")]
    pub max_concurrent_sessions: u32,
    /// Internal audio format and buffer sizes.
    #[serde(default)]
    pub audio: AudioConfig,
    /// Voice activity detection.
    #[serde(default)]
    pub vad: VadConfig,
    /// Turn detection, counted in audio time.
    #[serde(default)]
    pub turn: TurnConfig,
    /// Barge-in.
    #[serde(default)]
    pub interruptions: InterruptionConfig,
    /// An agent callback still running after this many ms gives `VB_EVENT_ERROR` with
    /// `VB_ERR_TIMEOUT` and the session goes back to listening (100–600000, default 10000).
    #[serde(default = "default_agent_timeout_ms")]
    pub agent_timeout_ms: u32,
    /// How network providers retry failed connections.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Session admission limits.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Access tokens.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Where active sessions are persisted.
    #[serde(default)]
    pub persistence: PersistenceConfig,
    /// What may be persisted or logged.
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// Metrics and traces.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("provider", &self.provider)
            .field("provider_config", &redacted(&self.provider_config))
            .field("pipeline_type", &self.pipeline_type)
            .field("stt_provider", &self.stt_provider)
            .field("stt_config", &redacted(&self.stt_config))
            .field("tts_provider", &self.tts_provider)
            .field("tts_config", &redacted(&self.tts_config))
            .field("s2s_provider", &self.s2s_provider)
            .field("s2s_config", &redacted(&self.s2s_config))
            .field("latency_target_ms", &self.latency_target_ms)
            .field("max_concurrent_sessions", &self.max_concurrent_sessions)
            .field("audio", &self.audio)
            .field("vad", &self.vad)
            .field("turn", &self.turn)
            .field("interruptions", &self.interruptions)
            .field("agent_timeout_ms", &self.agent_timeout_ms)
            .field("retry", &self.retry)
            .field("rate_limit", &self.rate_limit)
            .field("auth", &self.auth)
            .field("persistence", &self.persistence)
            .field("privacy", &self.privacy)
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

/// `value` with the values of secret-looking keys (`api_key`, `token`, `secret`, `password`,
/// anything ending in `_key` or `_token`) replaced by `"***"`, at any depth: provider sections
/// as they may be shown.
pub fn redacted(value: &Value) -> Value {
    fn is_secret(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        ["token", "secret", "password", "api_key", "apikey"].contains(&key.as_str())
            || key.ends_with("_key")
            || key.ends_with("_token")
            || key.ends_with("_secret")
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret(k) {
                        Value::String("***".to_owned())
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

/// A secret from configuration (API key, signing key): usable by the code that needs it, printed
/// as `***` by `Debug` so that it never reaches logs, errors or traces by accident.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

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

/// `persistence`: the embedded store of active sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceConfig {
    /// Store file (its directory is created); null: `voicebackend/sessions/<program>.redb` under
    /// the user's cache directory (`$XDG_CACHE_HOME`, else `~/.cache`); `""`: off.
    pub path: Option<String>,
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
        }
    }
}

/// `vad`: webrtc-vad with start/stop hysteresis.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VadConfig {
    /// Aggressiveness 0 (quality) to 3 (very aggressive), default 2.
    pub mode: u8,
    /// Voiced audio needed before the detector says "speech" (default 40 ms).
    pub start_ms: u32,
    /// Unvoiced audio needed before it says "silence" again (default 100 ms).
    pub stop_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            mode: 2,
            start_ms: 40,
            stop_ms: 100,
        }
    }
}

/// `turn`: when a user turn starts and ends, in audio time.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Silence that ends a turn (50–10000 ms, default 500).
    pub silence_ms: u32,
    /// Speech needed before a turn starts (0–5000 ms, default 150).
    pub min_speech_ms: u32,
    /// A turn is cut at this length (1000–600000 ms, default 30000).
    pub max_turn_ms: u32,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            silence_ms: 500,
            min_speech_ms: 150,
            max_turn_ms: 30000,
        }
    }
}

/// `interruptions`: barge-in while the agent speaks.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterruptionConfig {
    /// Whether user speech interrupts the agent (default true).
    pub enabled: bool,
    /// Speech needed to interrupt, so a cough does not (0–5000 ms, default 200).
    pub min_speech_ms: u32,
}

impl Default for InterruptionConfig {
    fn default() -> Self {
        InterruptionConfig {
            enabled: true,
            min_speech_ms: 200,
        }
    }
}

/// The session configuration (`vb_session_create`). It serializes without `auth_token`, so that
/// a stored copy never holds it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Who the session belongs to (default "").
    #[serde(default)]
    pub user_id: String,
    /// How audio enters and leaves: `"host"` (default) means the host calls.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// Where a network transport connects (on `livekit`, replaces `provider_config.url`).
    #[serde(default)]
    pub connection_url: Option<String>,
    /// The room a network transport joins (`livekit` with `transport: "webrtc"`).
    #[serde(default)]
    pub room: Option<String>,
    /// A token to join `room` with instead of one the backend mints from its keys (on
    /// `livekit`: a dispatched job's token, or one the host obtained elsewhere). A secret:
    /// `Debug` prints `***`, never serialized, so never persisted.
    #[serde(default, skip_serializing)]
    pub connection_token: Option<Secret>,
    /// Access token checked by the backend's auth hook (a secret: `Debug` prints `***`; never
    /// serialized, so never persisted).
    #[serde(default, skip_serializing)]
    pub auth_token: Option<Secret>,
    /// How long session creation may wait for the rate limiter to admit it instead of failing
    /// with `VB_ERR_RATE_LIMITED` at once (0–60000 ms, default 0). The creating thread waits.
    #[serde(default)]
    pub admission_wait_ms: u32,
    /// Rate of the audio given to `process_audio` (default 16000).
    #[serde(default = "default_host_rate")]
    pub input_sample_rate: u32,
    /// Rate of the audio returned by `read_audio` (default 16000).
    #[serde(default = "default_host_rate")]
    pub output_sample_rate: u32,
    /// Free-form metadata handed to hooks.
    #[serde(default = "empty_object")]
    pub metadata: Value,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            user_id: String::new(),
            transport: default_transport(),
            connection_url: None,
            room: None,
            connection_token: None,
            auth_token: None,
            admission_wait_ms: 0,
            input_sample_rate: default_host_rate(),
            output_sample_rate: default_host_rate(),
            metadata: empty_object(),
        }
    }
}

/// Longest `admission_wait_ms` a session may ask for.
const MAX_ADMISSION_WAIT_MS: u64 = 60_000;

fn empty_object() -> Value {
    Value::Object(Map::new())
}
fn default_latency_target_ms() -> u32 {
    500
}
fn default_max_sessions() -> u32 {
    100
}
fn default_agent_timeout_ms() -> u32 {
    10_000
}
fn default_transport() -> String {
    "host".to_owned()
}
fn default_host_rate() -> u32 {
    16000
}

/// Parses JSON into `T`, naming the field path of the first error.
fn parse_strict<T: DeserializeOwned>(json: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_path_to_error names the root "." and a syntax error's position "?".
        if matches!(path.as_str(), "" | "." | "?") {
            Error::invalid_config(format!("config: {inner}"))
        } else {
            Error::invalid_config(format!("{path}: {inner}"))
        }
    })
}

/// `VB_ERR_INVALID_CONFIG` naming `field`, `value` and the bound it breaks, unless
/// `min <= value <= max`.
pub fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<()> {
    if value < min {
        return Err(Error::invalid_config(format!(
            "{field}: {value} is below the minimum {min}"
        )));
    }
    if value > max {
        return Err(Error::invalid_config(format!(
            "{field}: {value} is above the maximum {max}"
        )));
    }
    Ok(())
}

/// Parses a provider's own settings (`stt_config`, `tts_config`, `provider_config`, …)
/// strictly: `null` means all defaults, keys outside `keys` and wrong types are
/// `VB_ERR_INVALID_CONFIG` naming `section.key`. Ranges are the caller's to check.
pub fn parse_section<T: DeserializeOwned + Default>(
    section: &str,
    value: &Value,
    keys: &[&str],
) -> Result<T> {
    let object = match value {
        Value::Null => return Ok(T::default()),
        Value::Object(object) => object,
        other => {
            return Err(Error::invalid_config(format!(
                "{section}: must be a JSON object, got {other}"
            )));
        }
    };
    if let Some(key) = object.keys().find(|key| !keys.contains(&key.as_str())) {
        let takes = if keys.is_empty() {
            "no settings".to_owned()
        } else {
            keys.join(", ")
        };
        return Err(Error::invalid_config(format!(
            "{section}.{key}: unknown key (it takes {takes})"
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        Error::invalid_config(format!("{section}.{path}: {}", e.into_inner()))
    })
}

fn check_one_of(field: &str, value: u32, allowed: &[u32]) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid_config(format!(
            "{field}: {value} is not one of {allowed:?}"
        )))
    }
}

fn check_object(field: &str, value: &Value) -> Result<()> {
    if value.is_object() {
        Ok(())
    } else {
        Err(Error::invalid_config(format!(
            "{field}: must be a JSON object, got {value}"
        )))
    }
}

impl BackendConfig {
    /// Parses and validates a backend configuration.
    pub fn from_json(json: &str) -> Result<Self> {
        let config: BackendConfig = parse_strict(json)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and shapes. Which provider fields a pipeline needs is the backend provider's
    /// business (see [`BackendConfig::require_pipeline_providers`]).
    pub fn validate(&self) -> Result<()> {
        if self.provider.is_empty() {
            return Err(Error::invalid_config("provider: must not be empty"));
        }
        for (field, value) in [
            ("provider_config", &self.provider_config),
            ("stt_config", &self.stt_config),
            ("tts_config", &self.tts_config),
            ("s2s_config", &self.s2s_config),
        ] {
            check_object(field, value)?;
        }
        check_range(
            "latency_target_ms",
            self.latency_target_ms.into(),
            100,
            5000,
        )?;
        check_range(
            "max_concurrent_sessions",
            self.max_concurrent_sessions.into(),
            1,
            100_000,
        )?;
        let a = &self.audio;
        check_one_of("audio.sample_rate", a.sample_rate, &INTERNAL_RATES)?;
        check_one_of("audio.frame_ms", a.frame_ms, &FRAME_MS)?;
        check_range(
            "audio.input_buffer_ms",
            a.input_buffer_ms.into(),
            (2 * a.frame_ms).into(),
            10_000,
        )?;
        check_range(
            "audio.output_buffer_ms",
            a.output_buffer_ms.into(),
            (2 * a.frame_ms).into(),
            10_000,
        )?;
        check_range(
            "audio.reply_buffer_ms",
            a.reply_buffer_ms.into(),
            100,
            60_000,
        )?;
        check_range(
            "audio.realtime_threads",
            a.realtime_threads.into(),
            0,
            MAX_REALTIME_THREADS.into(),
        )?;
        check_range("vad.mode", self.vad.mode.into(), 0, 3)?;
        check_range("vad.start_ms", self.vad.start_ms.into(), 0, 1000)?;
        check_range("vad.stop_ms", self.vad.stop_ms.into(), 0, 2000)?;
        check_range("turn.silence_ms", self.turn.silence_ms.into(), 50, 10_000)?;
        check_range(
            "turn.min_speech_ms",
            self.turn.min_speech_ms.into(),
            0,
            5000,
        )?;
        check_range(
            "turn.max_turn_ms",
            self.turn.max_turn_ms.into(),
            1000,
            600_000,
        )?;
        check_range(
            "interruptions.min_speech_ms",
            self.interruptions.min_speech_ms.into(),
            0,
            5000,
        )?;
        check_range(
            "agent_timeout_ms",
            self.agent_timeout_ms.into(),
            100,
            600_000,
        )?;
        let r = &self.retry;
        check_range("retry.max_attempts", r.max_attempts.into(), 1, 20)?;
        check_range(
            "retry.initial_backoff_ms",
            r.initial_backoff_ms.into(),
            1,
            60_000,
        )?;
        check_range(
            "retry.max_backoff_ms",
            r.max_backoff_ms.into(),
            r.initial_backoff_ms.into(),
            300_000,
        )?;
        let l = &self.rate_limit;
        check_range(
            "rate_limit.sessions_per_second",
            l.sessions_per_second.into(),
            0,
            100_000,
        )?;
        check_range("rate_limit.burst", l.burst.into(), 1, 1_000_000)?;
        check_range(
            "rate_limit.per_user_sessions_per_minute",
            l.per_user_sessions_per_minute.into(),
            0,
            1_000_000,
        )?;
        if self
            .auth
            .jwt_hs256_secret
            .as_ref()
            .is_some_and(|s| s.expose().is_empty())
        {
            return Err(Error::invalid_config(
                "auth.jwt_hs256_secret: must not be empty (null turns the built-in hook off)",
            ));
        }
        let t = &self.telemetry;
        if t.service_name.is_empty() {
            return Err(Error::invalid_config(
                "telemetry.service_name: must not be empty",
            ));
        }
        check_range(
            "telemetry.export_interval_ms",
            t.export_interval_ms.into(),
            100,
            600_000,
        )?;
        Ok(())
    }
}

impl BackendConfig {
    /// Checks that the provider names the pipeline type needs are present: `stt_tts` needs
    /// `stt_provider` and `tts_provider`, `s2s` needs `s2s_provider`.
    pub fn require_pipeline_providers(&self) -> Result<()> {
        match self.pipeline_type {
            PipelineType::SttTts => {
                if self.stt_provider.is_none() {
                    return Err(Error::invalid_config(
                        "stt_provider: required when pipeline_type is \"stt_tts\"",
                    ));
                }
                if self.tts_provider.is_none() {
                    return Err(Error::invalid_config(
                        "tts_provider: required when pipeline_type is \"stt_tts\"",
                    ));
                }
            }
            PipelineType::S2s => {
                if self.s2s_provider.is_none() {
                    return Err(Error::invalid_config(
                        "s2s_provider: required when pipeline_type is \"s2s\"",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl SessionConfig {
    /// Parses and validates a session configuration. An empty string means all defaults.
    pub fn from_json(json: &str) -> Result<Self> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let config: SessionConfig = parse_strict(json)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the sample rates, the admission wait and the metadata shape.
    pub fn validate(&self) -> Result<()> {
        check_one_of("input_sample_rate", self.input_sample_rate, &HOST_RATES)?;
        check_range(
            "admission_wait_ms",
            self.admission_wait_ms.into(),
            0,
            MAX_ADMISSION_WAIT_MS,
        )?;
        check_one_of("output_sample_rate", self.output_sample_rate, &HOST_RATES)?;
        check_object("metadata", &self.metadata)?;
        if self.transport.is_empty() {
            return Err(Error::invalid_config("transport: must not be empty"));
        }
        Ok(())
    }
}

/// Test helper for provider configs: `create` refuses each `(config, start)` case with
/// `VB_ERR_INVALID_CONFIG` and a message starting with `start`.
#[cfg(test)]
pub(crate) fn assert_config_errors<T>(
    cases: &[(Value, &str)],
    create: impl Fn(&Value) -> Result<T>,
) {
    for (config, start) in cases {
        let Err(e) = create(config) else {
            panic!("{config}: accepted");
        };
        assert_eq!(
            e.status(),
            crate::error::VbStatus::VB_ERR_INVALID_CONFIG,
            "{config}"
        );
        assert!(e.message().starts_with(start), "{config}: {}", e.message());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VbStatus;

    const MINIMAL: &str = r#"{"provider":"local","stt_provider":"a","tts_provider":"b"}"#;

    fn err(json: &str) -> String {
        let e = BackendConfig::from_json(json).unwrap_err();
        assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG);
        e.message().to_owned()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = BackendConfig::from_json(MINIMAL).unwrap();
        assert_eq!(c.pipeline_type, PipelineType::SttTts);
        assert_eq!(c.latency_target_ms, 500);
        assert_eq!(c.max_concurrent_sessions, 100);
        assert_eq!((c.audio.sample_rate, c.audio.frame_ms), (16000, 20));
        assert_eq!(c.vad.mode, 2);
        assert_eq!(
            (c.turn.silence_ms, c.turn.min_speech_ms, c.turn.max_turn_ms),
            (500, 150, 30000)
        );
        assert!(c.interruptions.enabled);
        assert_eq!(c.interruptions.min_speech_ms, 200);
        assert_eq!(c.agent_timeout_ms, 10_000);
        assert_eq!(c.retry, RetryConfig::default());
        assert_eq!(
            (
                c.retry.max_attempts,
                c.retry.initial_backoff_ms,
                c.retry.max_backoff_ms
            ),
            (5, 100, 5000)
        );
        assert_eq!(
            (
                c.rate_limit.sessions_per_second,
                c.rate_limit.burst,
                c.rate_limit.per_user_sessions_per_minute
            ),
            (50, 100, 30)
        );
        assert_eq!(c.auth, AuthConfig::default());
        assert_eq!(c.persistence.path, None);
        assert_eq!(c.privacy, PrivacyConfig::default());
        assert!(c.privacy.persist_transcripts && !c.privacy.persist_audio);
        assert_eq!(c.telemetry.service_name, "voicebackend");
    }

    #[test]
    fn operations_sections_are_checked_like_the_rest() {
        let with = |extra: &str| {
            format!(r#"{{"provider":"local","stt_provider":"a","tts_provider":"b",{extra}}}"#)
        };
        let m = err(&with(
            r#""retry":{"initial_backoff_ms":500,"max_backoff_ms":100}"#,
        ));
        assert_eq!(m, "retry.max_backoff_ms: 100 is below the minimum 500");
        let m = err(&with(r#""agent_timeout_ms":5"#));
        assert!(m.starts_with("agent_timeout_ms"), "{m}");
        let m = err(&with(r#""auth":{"jwt_hs256_secret":""}"#));
        assert!(m.starts_with("auth.jwt_hs256_secret"), "{m}");
        let m = err(&with(r#""privacy":{"keep_audio":true}"#));
        assert!(m.contains("keep_audio"), "{m}");
    }

    #[test]
    fn secrets_never_print() {
        let c = BackendConfig::from_json(
            r#"{"provider":"local","stt_provider":"a","tts_provider":"b",
                "auth":{"jwt_hs256_secret":"hunter2-signing-key"}}"#,
        )
        .unwrap();
        assert_eq!(
            c.auth.jwt_hs256_secret.as_ref().map(Secret::expose),
            Some("hunter2-signing-key")
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = BackendConfig::from_json(
            r#"{"provider":"local","stt_provider":"a","tts_provider":"b",
                "stt_config":{"api_key":"sk-1","nested":{"auth_token":"t-2"},"model":"m"},
                "s2s_config":{"voices":[{"secret":"s-3"}]}}"#,
        )
        .unwrap();
        let shown = format!("{c:?}");
        for secret in ["sk-1", "t-2", "s-3"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains(r#""model": String("m")"#), "{shown}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        assert!(
            err(r#"{"provider":"local","stt_provider":"a","tts_provider":"b","bogus":1}"#)
                .contains("bogus")
        );
        let m = err(
            r#"{"provider":"local","stt_provider":"a","tts_provider":"b","turn":{"silence":5}}"#,
        );
        assert!(m.starts_with("turn"), "{m}");
        assert!(m.contains("silence"), "{m}");
    }

    #[test]
    fn out_of_range_values_name_field_value_and_bound() {
        let m = err(
            r#"{"provider":"local","stt_provider":"a","tts_provider":"b","turn":{"silence_ms":0}}"#,
        );
        assert_eq!(m, "turn.silence_ms: 0 is below the minimum 50");
        let m =
            err(r#"{"provider":"local","stt_provider":"a","tts_provider":"b","vad":{"mode":4}}"#);
        assert_eq!(m, "vad.mode: 4 is above the maximum 3");
        let m = err(
            r#"{"provider":"local","stt_provider":"a","tts_provider":"b","audio":{"frame_ms":25}}"#,
        );
        assert!(m.starts_with("audio.frame_ms: 25 is not one of"), "{m}");
        let m = err(
            r#"{"provider":"local","stt_provider":"a","tts_provider":"b","audio":{"realtime_threads":65}}"#,
        );
        assert_eq!(m, "audio.realtime_threads: 65 is above the maximum 64");
        let m = err(
            r#"{"provider":"local","stt_provider":"a","tts_provider":"b","audio":{"realtime_threads":-1}}"#,
        );
        assert!(m.starts_with("audio.realtime_threads"), "{m}");
        let ok = BackendConfig::from_json(
            r#"{"provider":"local","stt_provider":"a","tts_provider":"b","audio":{"realtime_threads":2}}"#,
        )
        .unwrap();
        assert_eq!(ok.audio.realtime_threads, 2);
        assert_eq!(AudioConfig::default().realtime_threads, 0);
    }

    #[test]
    fn malformed_json_and_wrong_types_are_invalid_config() {
        let m = err("{not json");
        assert!(m.starts_with("config: key must be a string"), "{m}");
        assert!(
            err(r#"{"provider":"local","max_concurrent_sessions":"ten"}"#)
                .starts_with("max_concurrent_sessions")
        );
        assert!(err(r#"{"stt_provider":"a"}"#).contains("provider"));
        assert!(
            BackendConfig::from_json(r#"{"provider":"pipecat"}"#).is_ok(),
            "provider fields are the backend's call"
        );
    }

    #[test]
    fn each_pipeline_names_the_provider_it_needs() {
        let needs = |json: &str| {
            let config = BackendConfig::from_json(json).unwrap();
            config
                .require_pipeline_providers()
                .unwrap_err()
                .message()
                .to_owned()
        };
        assert!(needs(r#"{"provider":"local","tts_provider":"b"}"#).starts_with("stt_provider"));
        assert!(needs(r#"{"provider":"local","stt_provider":"a"}"#).starts_with("tts_provider"));
        assert!(needs(r#"{"provider":"local","pipeline_type":"s2s"}"#).starts_with("s2s_provider"));
        assert!(
            err(r#"{"provider":"local","pipeline_type":"duplex"}"#).starts_with("pipeline_type")
        );
    }

    #[test]
    fn session_config_checks_rates() {
        let c = SessionConfig::from_json("").unwrap();
        assert_eq!((c.input_sample_rate, c.transport.as_str()), (16000, "host"));
        let e = SessionConfig::from_json(r#"{"input_sample_rate": 11025}"#).unwrap_err();
        assert!(
            e.message()
                .starts_with("input_sample_rate: 11025 is not one of")
        );
        assert!(
            SessionConfig::from_json(r#"{"user":"x"}"#)
                .unwrap_err()
                .message()
                .contains("user")
        );
    }
}
