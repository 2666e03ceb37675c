//! Backend and session configuration: strict JSON parsing with documented defaults.
//!
//! Unknown keys are rejected and every out-of-range value is reported with its field path and the
//! allowed range, e.g. `turn.silence_ms: 0 is below the minimum 50`.
//!
//! This file holds the backend configuration, its checks and the parsing helpers every part uses
//! (`parse_section`, `check_range`, [`Secret`]); [`sections`] the backend's sections (`retry`,
//! `rate_limit`, `auth`, `persistence`, `privacy`, `telemetry`, `audio`); [`session`] the session
//! configuration. All are re-exported here.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub mod sections;
pub mod session;

pub use sections::{
    AudioConfig, AuthConfig, DEFAULT_BACKCHANNELS, DecideBy, EndOfTurn, InferenceConfig,
    InterruptionConfig, PersistenceConfig, PrivacyConfig, RateLimitConfig, RetryConfig,
    TelemetryConfig, TurnConfig, VadConfig, VadEngine,
};
pub use session::{Codec, SessionConfig};

/// Internal sample rates the realtime core runs at (what VAD and STT want).
pub const INTERNAL_RATES: [u32; 2] = [8000, 16000];
/// Most threads `audio.realtime_threads` may ask for.
pub const MAX_REALTIME_THREADS: u32 = 64;
/// Sample rates a host may use at the edges.
pub const HOST_RATES: [u32; 6] = [8000, 16000, 24000, 32000, 44100, 48000];
/// Frame durations the realtime core supports.
pub const FRAME_MS: [u32; 3] = [10, 20, 30];
/// Sample rates Opus encodes and decodes at (a session with an Opus codec runs its host edge at
/// one of them that is also among [`HOST_RATES`]).
pub const OPUS_RATES: [u32; 5] = [8000, 12000, 16000, 24000, 48000];

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
    /// The neural models' thread pool and files (used when `vad.engine` is `"silero"` or
    /// `turn.end_of_turn` is `"smart_turn"`).
    #[serde(default)]
    pub inference: InferenceConfig,
    /// An agent callback still running after this many ms gives `VB_EVENT_ERROR` with
    /// `VB_ERR_TIMEOUT` and the session goes back to listening (100–600000, default 10000).
    #[serde(default = "default_agent_timeout_ms")]
    pub agent_timeout_ms: u32,
    /// The built-in LLM agent that answers sessions without an agent callback of their own:
    /// `{"provider": "openai", "base_url", "model", "api_key", "system_prompt", "temperature",
    /// "max_tokens", "tools", …}` (validated by the agent provider; see the README's *Built-in
    /// agent*). Null (default): sessions of `stt_tts` backends need the host's agent.
    #[serde(default)]
    pub agent: Value,
    /// How many of a session's most recent turns are kept: in memory, as the agent's context
    /// ([`crate::Reply::history`]), and in the session store for a resume (1–100000, default
    /// 50). Older turns are dropped, so a long conversation costs bounded memory; hosts that
    /// keep a full transcript do so from the events.
    #[serde(default = "default_history_max_turns")]
    pub history_max_turns: u32,
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
            .field("agent", &redacted(&self.agent))
            .field("inference", &self.inference)
            .field("agent_timeout_ms", &self.agent_timeout_ms)
            .field("history_max_turns", &self.history_max_turns)
            .field("retry", &self.retry)
            .field("rate_limit", &self.rate_limit)
            .field("auth", &self.auth)
            .field("persistence", &self.persistence)
            .field("privacy", &self.privacy)
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

impl BackendConfig {
    /// Whether sessions need the inference pool (a neural VAD or end-of-turn model).
    pub fn uses_models(&self) -> bool {
        self.vad.engine == VadEngine::Silero || self.turn.end_of_turn == EndOfTurn::SmartTurn
    }

    /// The ranges of the neural stages' keys (the files themselves are checked when the backend
    /// loads them, see [`crate::infer`]).
    fn check_models(&self) -> Result<()> {
        check_fraction("vad.threshold", self.vad.threshold)?;
        check_fraction("turn.smart_turn_threshold", self.turn.smart_turn_threshold)?;
        check_range("turn.pause_ms", self.turn.pause_ms.into(), 60, 2000)?;
        check_range("turn.recheck_ms", self.turn.recheck_ms.into(), 0, 5000)?;
        check_range(
            "turn.max_wait_ms",
            self.turn.max_wait_ms.into(),
            self.turn.pause_ms.into(),
            10_000,
        )?;
        check_range("inference.threads", self.inference.threads.into(), 0, 16)?;
        if self.uses_models() && self.audio.sample_rate != 16_000 {
            return Err(Error::invalid_config(format!(
                "audio.sample_rate: {} does not work with vad.engine \"silero\" or turn.end_of_turn \"smart_turn\" (their models take 16000 Hz)",
                self.audio.sample_rate
            )));
        }
        Ok(())
    }
}

impl BackendConfig {
    /// `turn.preemptive_ms`: 0, or a pause shorter than the silence that ends a turn (a pause
    /// that long is the end of the turn, nothing is left to start early).
    fn check_preemptive(&self) -> Result<()> {
        let turn = &self.turn;
        if turn.preemptive_ms == 0 {
            return Ok(());
        }
        let (ends, key) = match turn.end_of_turn {
            EndOfTurn::Silence => (turn.silence_ms, "turn.silence_ms"),
            EndOfTurn::SmartTurn => (turn.max_wait_ms, "turn.max_wait_ms"),
        };
        if turn.preemptive_ms < 40 || turn.preemptive_ms >= ends {
            return Err(Error::invalid_config(format!(
                "turn.preemptive_ms: {} must be 0 (off) or from 40 up to less than {key} ({ends}): the silence after which the agent starts early must come before the silence that ends the turn",
                turn.preemptive_ms
            )));
        }
        Ok(())
    }
}

/// A probability threshold key: 0.05–0.95.
fn check_fraction(field: &str, value: f32) -> Result<()> {
    if !(0.05..=0.95).contains(&value) {
        return Err(Error::invalid_config(format!(
            "{field}: {value} is outside 0.05–0.95"
        )));
    }
    Ok(())
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
fn default_history_max_turns() -> u32 {
    50
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
        if a.noise_suppression && a.realtime_threads == 0 {
            // nnnoiseless's FFT (easyfft) leaks its tables once per thread that runs it
            // (`Box::leak` in generic_singleton): with a thread per session every session
            // would leave ~20 KB behind; the pool's threads pay it once.
            return Err(Error::invalid_config(
                "audio.noise_suppression needs audio.realtime_threads 1 or more: RNNoise's FFT keeps ~20 KB per thread that ran it for the life of the process, so with a thread per session (0) every session would leave memory behind",
            ));
        }
        check_range(
            "persistence.lease_ms",
            self.persistence.lease_ms.into(),
            1000,
            600_000,
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
        self.check_models()?;
        self.check_preemptive()?;
        let interruptions = &self.interruptions;
        check_range(
            "interruptions.min_speech_ms",
            interruptions.min_speech_ms.into(),
            0,
            5000,
        )?;
        check_range(
            "interruptions.max_backchannel_ms",
            interruptions.max_backchannel_ms.into(),
            interruptions.min_speech_ms.into(),
            30_000,
        )?;
        check_range(
            "interruptions.resume_after_ms",
            interruptions.resume_after_ms.into(),
            100,
            10_000,
        )?;
        if let Some(bad) = interruptions
            .backchannels
            .iter()
            .find(|b| !b.chars().any(char::is_alphabetic) || b.len() > 64)
        {
            return Err(Error::invalid_config(format!(
                "interruptions.backchannels: {bad:?} is not a word or a few (letters, 1-64 characters)"
            )));
        }
        check_range(
            "agent_timeout_ms",
            self.agent_timeout_ms.into(),
            100,
            600_000,
        )?;
        check_range(
            "history_max_turns",
            self.history_max_turns.into(),
            1,
            100_000,
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
mod tests;
