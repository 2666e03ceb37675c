//! The session configuration (`vb_session_create`): who, which transport and room, the rates at
//! the host's edges, metadata.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    HOST_RATES, Secret, check_object, check_one_of, check_range, empty_object, parse_strict,
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
            metadata: empty_object(),
        }
    }
}

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
        Ok(())
    }
}
