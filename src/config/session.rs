//! The session configuration (`vb_session_create`): who, which transport and room, the rates and
//! codecs at the host's edges, metadata.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    HOST_RATES, OPUS_RATES, Secret, check_object, check_one_of, check_range, empty_object,
    parse_strict,
};
use crate::error::{Error, Result};

/// The longest `conversation_id`, in characters.
pub const MAX_CONVERSATION_ID_CHARS: usize = 200;

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
    /// The conversation this session carries on, when it may outlive its process: with
    /// `persistence.shared_dir` its history is read from and written to the shared store under
    /// this id, so that a session opened with the same id in another worker process goes on
    /// with it (a LiveKit job's session gets `livekit:<room sid>`). 1–200 characters.
    #[serde(default)]
    pub conversation_id: Option<String>,
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
    /// How the host's audio comes in: `"pcm"` (default, `process_audio`) or `"opus"` (packets
    /// through `process_opus`, decoded at `input_sample_rate`). Host transport only.
    #[serde(default, skip_serializing_if = "Codec::is_pcm")]
    pub input_codec: Codec,
    /// How the agent's audio goes out to the host: `"pcm"` (default, `read_audio`) or `"opus"`
    /// (20 ms packets through `read_opus`, encoded at `output_sample_rate`). Host transport only.
    #[serde(default, skip_serializing_if = "Codec::is_pcm")]
    pub output_codec: Codec,
    /// CPU the Opus encoder spends for quality, 0–10 (default 5; as `opus_complexity` of the
    /// `livekit` backend). Only with `output_codec` `"opus"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opus_complexity: Option<u8>,
    /// The Opus encoder's target bitrate in bits per second, 6000–510000 (default 32000). Only
    /// with `output_codec` `"opus"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opus_bitrate: Option<u32>,
    /// Settings of the built-in agent for this session, over the backend's `agent` section
    /// field by field (e.g. another `system_prompt` or `model`); never `api_key`, which belongs
    /// to the backend (session configurations are persisted). Null (default): the backend's.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub agent: Value,
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
            conversation_id: None,
            connection_token: None,
            auth_token: None,
            admission_wait_ms: 0,
            input_sample_rate: default_host_rate(),
            output_sample_rate: default_host_rate(),
            input_codec: Codec::Pcm,
            output_codec: Codec::Pcm,
            opus_complexity: None,
            opus_bitrate: None,
            agent: Value::Null,
            metadata: empty_object(),
        }
    }
}

/// How audio crosses the host's edge of a session (`input_codec`, `output_codec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Mono int16 PCM at the session's rate: `vb_session_process_audio` /
    /// `vb_session_read_audio` (the default).
    #[default]
    Pcm,
    /// Opus packets: `vb_session_process_opus` / `vb_session_read_opus`.
    Opus,
}

impl Codec {
    /// The configuration value, `"pcm"` or `"opus"`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcm => "pcm",
            Codec::Opus => "opus",
        }
    }

    /// Whether this is the default, PCM. A stored session configuration leaves a PCM codec out,
    /// so that a build without the codec keys still reads it.
    pub fn is_pcm(&self) -> bool {
        *self == Codec::Pcm
    }
}

/// The Opus encoder's bitrate bounds (libopus's own) in bits per second.
const OPUS_BITRATES: (u64, u64) = (6000, 510_000);

/// Longest `admission_wait_ms` a session may ask for.
const MAX_ADMISSION_WAIT_MS: u64 = 60_000;

fn default_transport() -> String {
    "host".to_owned()
}
fn default_host_rate() -> u32 {
    16000
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
        if !self.agent.is_null() {
            check_object("agent", &self.agent)?;
            if self.agent.get("api_key").is_some() {
                return Err(Error::invalid_config(
                    "agent.api_key: a session cannot set the agent's key (session configurations are persisted); set it in the backend's agent section or the provider's environment variable",
                ));
            }
        }
        if self.transport.is_empty() {
            return Err(Error::invalid_config("transport: must not be empty"));
        }
        if let Some(id) = &self.conversation_id {
            let chars = id.chars().count();
            if !(1..=MAX_CONVERSATION_ID_CHARS).contains(&chars) {
                return Err(Error::invalid_config(format!(
                    "conversation_id: must be 1 to {MAX_CONVERSATION_ID_CHARS} characters, not {chars}"
                )));
            }
        }
        self.check_codecs()
    }

    /// An Opus codec needs the host transport and a rate Opus runs at; the encoder's settings
    /// need an Opus output.
    fn check_codecs(&self) -> Result<()> {
        for (key, codec, rate_key, rate) in [
            (
                "input_codec",
                self.input_codec,
                "input_sample_rate",
                self.input_sample_rate,
            ),
            (
                "output_codec",
                self.output_codec,
                "output_sample_rate",
                self.output_sample_rate,
            ),
        ] {
            if codec == Codec::Pcm {
                continue;
            }
            if self.transport != default_transport() {
                return Err(Error::invalid_config(format!(
                    "{key}: \"{}\" needs transport \"host\" (transport \"{}\" carries the \
                     audio itself)",
                    codec.name(),
                    self.transport
                )));
            }
            if !OPUS_RATES.contains(&rate) {
                let usable: Vec<u32> = HOST_RATES
                    .into_iter()
                    .filter(|r| OPUS_RATES.contains(r))
                    .collect();
                return Err(Error::invalid_config(format!(
                    "{rate_key}: {rate} is not a rate Opus runs at; with {key} \"opus\" use one \
                     of {usable:?}"
                )));
            }
        }
        for (key, set) in [
            ("opus_complexity", self.opus_complexity.is_some()),
            ("opus_bitrate", self.opus_bitrate.is_some()),
        ] {
            if set && self.output_codec != Codec::Opus {
                return Err(Error::invalid_config(format!(
                    "{key}: only used with output_codec \"opus\" (output_codec is \"{}\")",
                    self.output_codec.name()
                )));
            }
        }
        if let Some(complexity) = self.opus_complexity {
            check_range("opus_complexity", complexity.into(), 0, 10)?;
        }
        if let Some(bitrate) = self.opus_bitrate {
            check_range(
                "opus_bitrate",
                bitrate.into(),
                OPUS_BITRATES.0,
                OPUS_BITRATES.1,
            )?;
        }
        Ok(())
    }
}
