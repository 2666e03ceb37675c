//! `provider_config.webrtc` of the `local` backend: where the signalling server listens and how
//! its calls behave. Absent (the default): no server, no direct WebRTC sessions.
//!
//! ```json
//! "provider_config": { "webrtc": {
//!     "listen": "127.0.0.1:0",          // the HTTP address (default; port 0: any free port)
//!     "page": "<!doctype html>…",       // optional: a page served at GET / (a client)
//!     "disconnect_timeout_ms": 10000,   // media lost this long ends the call
//!     "opus_complexity": 5              // the agent's voice encoder, 0–10
//! } }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::parse_section;
use crate::error::{Error, Result};

/// The section's name in messages.
const SECTION: &str = "provider_config.webrtc";
/// The address listened on when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:0";

/// The direct WebRTC server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcSettings {
    /// The address the HTTP signalling server binds (port 0: any free port). Each call's UDP
    /// socket binds the address its offer arrived on.
    pub listen: SocketAddr,
    /// A page served at `GET /`, when set.
    pub page: Option<String>,
    /// How long a call may have no media connection (ICE lost, no new offer) before it ends.
    pub disconnect_timeout: Duration,
    /// Opus encoder complexity for the agent's voice (0–10).
    pub opus_complexity: u8,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Raw {
    listen: Option<String>,
    page: Option<String>,
    disconnect_timeout_ms: Option<u32>,
    opus_complexity: Option<u8>,
}

impl WebRtcSettings {
    /// The settings in `provider_config` (`{"webrtc": {…}}`), `None` when it has no `webrtc`.
    /// `VB_ERR_INVALID_CONFIG` naming the key for anything wrong.
    pub fn from_provider_config(provider_config: &Value) -> Result<Option<WebRtcSettings>> {
        let Some(section) = provider_config.get("webrtc").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let raw: Raw = parse_section(
            SECTION,
            section,
            &["listen", "page", "disconnect_timeout_ms", "opus_complexity"],
        )?;
        let listen = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen.parse().map_err(|_| {
            Error::invalid_config(format!(
                "{SECTION}.listen: '{listen}' is not an IP address and port (e.g. \"127.0.0.1:8080\")"
            ))
        })?;
        let disconnect_timeout_ms = raw.disconnect_timeout_ms.unwrap_or(10_000);
        if !(1000..=300_000).contains(&disconnect_timeout_ms) {
            return Err(Error::invalid_config(format!(
                "{SECTION}.disconnect_timeout_ms: {disconnect_timeout_ms} is outside 1000–300000"
            )));
        }
        let opus_complexity = raw.opus_complexity.unwrap_or(5);
        if opus_complexity > 10 {
            return Err(Error::invalid_config(format!(
                "{SECTION}.opus_complexity: {opus_complexity} is outside 0–10"
            )));
        }
        Ok(Some(WebRtcSettings {
            listen,
            page: raw.page,
            disconnect_timeout: Duration::from_millis(disconnect_timeout_ms.into()),
            opus_complexity,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(webrtc: Value) -> Result<Option<WebRtcSettings>> {
        WebRtcSettings::from_provider_config(&json!({ "webrtc": webrtc }))
    }

    #[test]
    fn absent_means_off_and_defaults_fill_the_rest() {
        assert_eq!(
            WebRtcSettings::from_provider_config(&json!({})).unwrap(),
            None
        );
        let settings = parse(json!({})).unwrap().unwrap();
        assert_eq!(settings.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(settings.page, None);
        assert_eq!(settings.disconnect_timeout, Duration::from_secs(10));
        assert_eq!(settings.opus_complexity, 5);
    }

    #[test]
    fn mistakes_name_the_key() {
        let message = |webrtc: Value| parse(webrtc).unwrap_err().to_string();
        assert!(message(json!({"listen": "localhost"})).contains("webrtc.listen: 'localhost'"));
        assert!(message(json!({"port": 1})).contains("webrtc.port: unknown key"));
        assert!(
            message(json!({"disconnect_timeout_ms": 5})).contains("disconnect_timeout_ms: 5 is")
        );
        assert!(message(json!({"opus_complexity": 11})).contains("opus_complexity: 11 is"));
    }
}
