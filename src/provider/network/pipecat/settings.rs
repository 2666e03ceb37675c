//! The `pipecat` backend's `provider_config`: where the bot is and how long to wait for it.
//!
//! `pipecat_url` (required, `ws://` or `wss://`: the bot's WebSocket URL) and `timeout_ms`
//! (100–600000, default 10000: each connection attempt, and the wait for the bot to confirm an
//! interruption). Connections are retried under the backend's `retry` rules. The bot brings its
//! own STT, agent and TTS, so `stt_provider`, `tts_provider`, `s2s_provider` and their configs are
//! refused: naming them would be silently ignored.

use std::time::Duration;

use serde::Deserialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::PipecatBot;
use crate::config::{BackendConfig, check_range, parse_section};
use crate::error::{Error, Result};
use crate::net::{DEFAULT_TIMEOUT_MS, redact_url};

#[derive(Default, Deserialize)]
struct Settings {
    pipecat_url: Option<String>,
    timeout_ms: Option<u32>,
}

/// The bot a `pipecat` backend's sessions talk to, from its validated configuration.
pub fn bot_from_backend_config(config: &BackendConfig) -> Result<PipecatBot> {
    let settings: Settings = parse_section(
        "provider_config",
        &config.provider_config,
        &["pipecat_url", "timeout_ms"],
    )?;
    let url = settings.pipecat_url.ok_or_else(|| {
        Error::invalid_config(
            "provider_config.pipecat_url: required (the bot's WebSocket URL, ws:// or wss://)",
        )
    })?;
    check_websocket_url(&url)?;
    let timeout_ms = settings.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    check_range(
        "provider_config.timeout_ms",
        timeout_ms.into(),
        100,
        600_000,
    )?;
    refuse_pipeline_providers(config)?;
    Ok(PipecatBot::new(
        url,
        Duration::from_millis(timeout_ms.into()),
        config.retry,
    ))
}

fn check_websocket_url(url: &str) -> Result<()> {
    let shown = redact_url(url);
    let bad = |why: String| {
        Error::invalid_config(format!(
            "provider_config.pipecat_url: '{shown}' is not a WebSocket URL ({why})"
        ))
    };
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(bad("it must start with ws:// or wss://".into()));
    }
    url.into_client_request()
        .map(drop)
        .map_err(|e| bad(e.to_string()))
}

/// The bot does its own STT, agent and TTS: naming providers here would be silently ignored.
fn refuse_pipeline_providers(config: &BackendConfig) -> Result<()> {
    for (field, name) in [
        ("stt_provider", &config.stt_provider),
        ("tts_provider", &config.tts_provider),
        ("s2s_provider", &config.s2s_provider),
    ] {
        if name.is_some() {
            return Err(Error::invalid_config(format!(
                "{field}: the pipecat backend's bot brings its own speech pipeline; remove it"
            )));
        }
    }
    for (field, section) in [
        ("stt_config", &config.stt_config),
        ("tts_config", &config.tts_config),
        ("s2s_config", &config.s2s_config),
    ] {
        if section.as_object().is_some_and(|o| !o.is_empty()) {
            return Err(Error::invalid_config(format!(
                "{field}: the pipecat backend's bot brings its own speech pipeline; remove it"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bot_from_backend_config;
    use crate::config::BackendConfig;
    use crate::error::VbStatus;

    fn parsed(json: &str) -> crate::error::Result<super::PipecatBot> {
        bot_from_backend_config(&BackendConfig::from_json(json)?)
    }

    fn refused(json: &str) -> String {
        let e = parsed(json).unwrap_err();
        assert_eq!(e.status(), VbStatus::VB_ERR_INVALID_CONFIG, "{json}");
        e.message().to_owned()
    }

    #[test]
    fn a_bot_url_is_all_a_pipecat_backend_needs() {
        parsed(r#"{"provider":"pipecat","provider_config":{"pipecat_url":"ws://127.0.0.1:9/ws"}}"#)
            .unwrap();
        parsed(
            r#"{"provider":"pipecat","provider_config":{"pipecat_url":"wss://bot.example/ws","timeout_ms":2500}}"#,
        )
        .unwrap();
    }

    #[test]
    fn pipecat_config_is_validated_strictly() {
        for (json, message) in [
            (
                r#"{"provider":"pipecat"}"#,
                "provider_config.pipecat_url: required (the bot's WebSocket URL, ws:// or wss://)",
            ),
            (
                r#"{"provider":"pipecat","provider_config":{"pipecat_url":"http://127.0.0.1:9"}}"#,
                "provider_config.pipecat_url: 'http://127.0.0.1:9' is not a WebSocket URL (it must start with ws:// or wss://)",
            ),
            (
                r#"{"provider":"pipecat","provider_config":{"pipecat_url":"ws://127.0.0.1:9","timeout_ms":5}}"#,
                "provider_config.timeout_ms: 5 is below the minimum 100",
            ),
            (
                r#"{"provider":"pipecat","provider_config":{"pipecat_url":"ws://127.0.0.1:9","url":"x"}}"#,
                "provider_config.url: unknown key (it takes pipecat_url, timeout_ms)",
            ),
            (
                r#"{"provider":"pipecat","provider_config":{"pipecat_url":7}}"#,
                "provider_config.pipecat_url: invalid type: integer `7`, expected a string",
            ),
            (
                r#"{"provider":"pipecat","provider_config":{"pipecat_url":"ws://127.0.0.1:9"},"stt_provider":"whisper"}"#,
                "stt_provider: the pipecat backend's bot brings its own speech pipeline; remove it",
            ),
            (
                r#"{"provider":"pipecat","provider_config":{"pipecat_url":"ws://127.0.0.1:9"},"tts_config":{"voice":"x"}}"#,
                "tts_config: the pipecat backend's bot brings its own speech pipeline; remove it",
            ),
        ] {
            assert_eq!(refused(json), message);
        }
        let e = refused(
            r#"{"provider":"pipecat","provider_config":{"pipecat_url":"ws://user:secret@[::1"}}"#,
        );
        assert!(e.starts_with("provider_config.pipecat_url: "), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
