//! Settings of the `elevenlabs` provider (`tts_config`), validated strictly; see the parent
//! module for what each does.

use serde::{Deserialize, Serialize};

use crate::config::{Secret, check_range, parse_section};
use crate::error::{Error, Result};
use crate::net;

/// The keys `tts_config` may have.
const KEYS: [&str; 8] = [
    "api_key",
    "base_url",
    "voice_id",
    "model_id",
    "output_format",
    "voice_settings",
    "chunk_length_schedule",
    "timeout_ms",
];
/// The raw PCM output formats and their rates.
const PCM_FORMATS: [(&str, u32); 5] = [
    ("pcm_8000", 8000),
    ("pcm_16000", 16000),
    ("pcm_22050", 22050),
    ("pcm_24000", 24000),
    ("pcm_44100", 44100),
];

/// Settings of the `elevenlabs` provider, parsed from `tts_config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElevenLabsConfig {
    /// The API key; `None` falls back to `ELEVENLABS_API_KEY`.
    pub api_key: Option<Secret>,
    /// Service root, `ws://` or `wss://`, without a query.
    pub base_url: String,
    /// The voice (required).
    pub voice_id: String,
    /// The model.
    pub model_id: String,
    /// One of the `pcm_*` formats.
    pub output_format: String,
    /// Voice settings sent in the first message; unset fields keep the voice's defaults.
    pub voice_settings: Option<VoiceSettings>,
    /// `generation_config.chunk_length_schedule`; `None` keeps the service's default.
    pub chunk_length_schedule: Option<Vec<u32>>,
    /// Deadline of a connection attempt and of each expected answer, in ms.
    pub timeout_ms: u32,
}

impl Default for ElevenLabsConfig {
    fn default() -> Self {
        ElevenLabsConfig {
            api_key: None,
            base_url: "wss://api.elevenlabs.io".to_owned(),
            voice_id: String::new(),
            model_id: "eleven_flash_v2_5".to_owned(),
            output_format: "pcm_24000".to_owned(),
            voice_settings: None,
            chunk_length_schedule: None,
            timeout_ms: net::DEFAULT_TIMEOUT_MS,
        }
    }
}

/// `voice_settings` of the first message (`RealtimeVoiceSettings`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceSettings {
    /// 0–1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stability: Option<f64>,
    /// 0–1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity_boost: Option<f64>,
    /// 0–1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<f64>,
    /// Speaker boost on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_speaker_boost: Option<bool>,
    /// 0.7–1.2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
}

impl ElevenLabsConfig {
    /// Parses `tts_config` strictly; errors are `VB_ERR_INVALID_CONFIG` naming the field.
    pub fn from_json(config: &serde_json::Value) -> Result<Self> {
        let parsed: ElevenLabsConfig = parse_section("tts_config", config, &KEYS)?;
        net::check_ws_url("tts_config.base_url", &parsed.base_url)?;
        if parsed.voice_id.is_empty() {
            return Err(Error::invalid_config(
                "tts_config.voice_id: missing (the ElevenLabs voice to speak with)",
            ));
        }
        net::check_token("tts_config.voice_id", &parsed.voice_id)?;
        net::check_token("tts_config.model_id", &parsed.model_id)?;
        if !PCM_FORMATS.iter().any(|(f, _)| *f == parsed.output_format) {
            return Err(Error::invalid_config(format!(
                "tts_config.output_format: '{}' is not one of {}",
                parsed.output_format,
                PCM_FORMATS.map(|(f, _)| f).join(", ")
            )));
        }
        if let Some(v) = &parsed.voice_settings {
            let unit = [
                ("stability", v.stability),
                ("similarity_boost", v.similarity_boost),
                ("style", v.style),
            ];
            for (name, value) in unit {
                check_unit_range(
                    &format!("tts_config.voice_settings.{name}"),
                    value,
                    0.0,
                    1.0,
                )?;
            }
            check_unit_range("tts_config.voice_settings.speed", v.speed, 0.7, 1.2)?;
        }
        if let Some(schedule) = &parsed.chunk_length_schedule {
            if schedule.is_empty() {
                return Err(Error::invalid_config(
                    "tts_config.chunk_length_schedule: must not be empty",
                ));
            }
            for (i, &n) in schedule.iter().enumerate() {
                check_range(
                    &format!("tts_config.chunk_length_schedule[{i}]"),
                    n.into(),
                    50,
                    500,
                )?;
            }
        }
        check_range(
            "tts_config.timeout_ms",
            parsed.timeout_ms.into(),
            100,
            600_000,
        )?;
        Ok(parsed)
    }

    /// The rate of `output_format`.
    pub fn sample_rate(&self) -> u32 {
        PCM_FORMATS
            .iter()
            .find(|(f, _)| *f == self.output_format)
            .map_or(0, |&(_, rate)| rate)
    }
}

fn check_unit_range(field: &str, value: Option<f64>, min: f64, max: f64) -> Result<()> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(Error::invalid_config(format!(
            "{field}: {v} is outside {min}–{max}"
        ))),
        _ => Ok(()),
    }
}
