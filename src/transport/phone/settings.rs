//! `provider_config.phone` of the `local` backend: where the phone server listens and which URL
//! path speaks which vendor's protocol. Absent (the default): no server, no phone sessions.
//!
//! ```json
//! "provider_config": { "phone": {
//!     "listen": "0.0.0.0:8765",          // required: the address the WebSocket server binds
//!     "twilio_path": "/twilio",          // Twilio Media Streams connect here
//!     "telnyx_path": "/telnyx",          // Telnyx media streaming connects here
//!     "start_timeout_ms": 5000           // a connection must send `start` within this
//! } }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::protocol::Dialect;
use crate::config::parse_section;
use crate::error::{Error, Result};

/// The section's name in messages.
const SECTION: &str = "provider_config.phone";

/// The phone server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneSettings {
    /// The address the WebSocket server binds (port 0: any free port).
    pub listen: SocketAddr,
    /// The path Twilio connects to.
    pub twilio_path: String,
    /// The path Telnyx connects to.
    pub telnyx_path: String,
    /// How long a connection may take to send `start` before it is closed.
    pub start_timeout: Duration,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Raw {
    listen: Option<String>,
    twilio_path: Option<String>,
    telnyx_path: Option<String>,
    start_timeout_ms: Option<u32>,
}

impl PhoneSettings {
    /// The settings in `provider_config` (`{"phone": {…}}`), `None` when it has no `phone`.
    /// `VB_ERR_INVALID_CONFIG` naming the key for anything wrong.
    pub fn from_provider_config(provider_config: &Value) -> Result<Option<PhoneSettings>> {
        let Some(section) = provider_config.get("phone").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let raw: Raw = parse_section(
            SECTION,
            section,
            &["listen", "twilio_path", "telnyx_path", "start_timeout_ms"],
        )?;
        let listen = raw.listen.ok_or_else(|| {
            Error::invalid_config(format!(
                "{SECTION}.listen: required (e.g. \"0.0.0.0:8765\")"
            ))
        })?;
        let listen: SocketAddr = listen.parse().map_err(|_| {
            Error::invalid_config(format!(
                "{SECTION}.listen: '{listen}' is not an IP address and port (e.g. \"0.0.0.0:8765\")"
            ))
        })?;
        let path = |key: &str, value: Option<String>, default: &str| -> Result<String> {
            let path = value.unwrap_or_else(|| default.to_owned());
            let valid = path.starts_with('/')
                && path.len() > 1
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
            if valid {
                Ok(path)
            } else {
                Err(Error::invalid_config(format!(
                    "{SECTION}.{key}: '{path}' is not a URL path like \"{default}\" (letters, digits, / - _ .)"
                )))
            }
        };
        let twilio_path = path("twilio_path", raw.twilio_path, "/twilio")?;
        let telnyx_path = path("telnyx_path", raw.telnyx_path, "/telnyx")?;
        if twilio_path == telnyx_path {
            return Err(Error::invalid_config(format!(
                "{SECTION}: twilio_path and telnyx_path are both '{twilio_path}'"
            )));
        }
        let start_timeout_ms = raw.start_timeout_ms.unwrap_or(5000);
        if !(100..=60_000).contains(&start_timeout_ms) {
            return Err(Error::invalid_config(format!(
                "{SECTION}.start_timeout_ms: {start_timeout_ms} is outside 100–60000"
            )));
        }
        Ok(Some(PhoneSettings {
            listen,
            twilio_path,
            telnyx_path,
            start_timeout: Duration::from_millis(start_timeout_ms.into()),
        }))
    }

    /// Which protocol a connection to `path` speaks (the query string, if any, is ignored).
    pub fn dialect_of(&self, path: &str) -> Option<Dialect> {
        let path = path.split('?').next().unwrap_or_default();
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        if path == self.twilio_path {
            Some(Dialect::Twilio)
        } else if path == self.telnyx_path {
            Some(Dialect::Telnyx)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(phone: Value) -> Result<Option<PhoneSettings>> {
        PhoneSettings::from_provider_config(&json!({ "phone": phone }))
    }

    #[test]
    fn absent_means_off_and_defaults_fill_the_rest() {
        assert_eq!(
            PhoneSettings::from_provider_config(&json!({})).unwrap(),
            None
        );
        assert_eq!(
            PhoneSettings::from_provider_config(&Value::Null).unwrap(),
            None
        );
        let settings = parse(json!({"listen": "127.0.0.1:0"})).unwrap().unwrap();
        assert_eq!(settings.twilio_path, "/twilio");
        assert_eq!(settings.telnyx_path, "/telnyx");
        assert_eq!(settings.start_timeout, Duration::from_secs(5));
        assert_eq!(settings.dialect_of("/twilio"), Some(Dialect::Twilio));
        assert_eq!(settings.dialect_of("/telnyx/?a=b"), Some(Dialect::Telnyx));
        assert_eq!(settings.dialect_of("/"), None);
    }

    #[test]
    fn mistakes_name_the_key() {
        let message = |phone: Value| parse(phone).unwrap_err().to_string();
        assert!(message(json!({})).contains("provider_config.phone.listen: required"));
        assert!(message(json!({"listen": "localhost"})).contains("not an IP address and port"));
        assert!(
            message(json!({"listen": "127.0.0.1:1", "port": 1}))
                .contains("phone.port: unknown key")
        );
        assert!(
            message(json!({"listen": "127.0.0.1:1", "twilio_path": "twilio"}))
                .contains("twilio_path: 'twilio' is not a URL path")
        );
        assert!(
            message(json!({"listen": "127.0.0.1:1", "telnyx_path": "/twilio"}))
                .contains("both '/twilio'")
        );
        assert!(
            message(json!({"listen": "127.0.0.1:1", "start_timeout_ms": 5}))
                .contains("start_timeout_ms: 5 is outside")
        );
    }
}
