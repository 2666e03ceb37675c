//! The built-in agent: an LLM that answers sessions whose host gave no agent callback, configured
//! by the backend's `agent` section (a session's own `agent` object overrides it field by
//! field). `{"provider": "openai", …}` speaks OpenAI's Chat Completions API, streamed, to any
//! compatible server ([`crate::provider::network::openai::ChatClient`]); the answer is written
//! into the reply as it streams, so TTS speaks each sentence as soon as it is complete, and
//! barge-in drops the request at once. The host's tools ([`crate::Tool`]) are offered to the
//! model; [`tools`] runs the calls.
//!
//! `{"provider": "embedded", "model_path", "system_prompt", "temperature", "max_tokens",
//! "context_tokens", "seed"}` runs a small model in-process instead
//! ([`crate::provider::embedded::llm`]).
//!
//! Settings of `openai` (strict; unknown keys are configuration errors):
//!
//! | key | default | |
//! |---|---|---|
//! | `provider` | required | `"openai"` (or `"embedded"`) |
//! | `base_url` | OpenAI's | any server speaking the API (`http://127.0.0.1:8080` for llama.cpp's) |
//! | `model` | `gpt-4o-mini` | |
//! | `api_key` | `OPENAI_API_KEY` | optional for a self-hosted `base_url` |
//! | `system_prompt` | a short voice-agent prompt | |
//! | `temperature` | server's | 0–2 |
//! | `max_tokens` | 256 | 1–32768: a spoken answer is short |
//! | `timeout_ms` | 10000 | 100–600000: the longest silence of the server, per piece |
//! | `context_tokens` | 4096 | 256–1000000: the model's window; older turns are left out to fit |
//! | `tools` | all the host's | names of the host's tools to offer (`[]`: none) |
//! | `tool_choice` | `auto` | `auto`, `none`, `required`, or a tool's name (first round only) |
//! | `tool_timeout_ms` | 10000 | 100–600000 per call |
//! | `filler` | `"One moment."` | said when a tool is slow; `""`: nothing |
//! | `filler_after_ms` | 700 | 0–60000 |
//! | `max_tool_rounds` | 4 | 1–16: tool calls answered before the model must speak |

mod agent;
pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::agent::{Agent, Tool};
use crate::config::{RetryConfig, Secret, check_range};
use crate::error::{Error, Result};
use crate::provider::embedded::llm as embedded_llm;
use crate::provider::network::openai::ChatClient;

pub use agent::ChatAgent;

/// The prompt when the settings give none.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful voice assistant. Your answers are \
     spoken aloud: answer in one to three short sentences of plain text, with no lists, \
     markdown or emoji.";

/// The built-in agent's settings, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    provider: String,
    base_url: Option<String>,
    model: Option<String>,
    api_key: Option<Secret>,
    system_prompt: Option<String>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    timeout_ms: Option<u32>,
    context_tokens: Option<u32>,
    tools: Option<Vec<String>>,
    tool_choice: Option<String>,
    tool_timeout_ms: Option<u32>,
    filler: Option<String>,
    filler_after_ms: Option<u32>,
    max_tool_rounds: Option<u32>,
    model_path: Option<String>,
    seed: Option<u64>,
}

/// `session`'s fields over `backend`'s (both objects or null).
pub fn merged(backend: &Value, session: &Value) -> Value {
    let mut out: Map<String, Value> = backend.as_object().cloned().unwrap_or_default();
    if let Some(over) = session.as_object() {
        for (key, value) in over {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

/// Validates `config` (the `agent` section, merged) without building anything; `tools` are the
/// host's, if known yet (their names are checked against `tools` only when given).
pub fn validate(config: &Value, tools: Option<&[Tool]>) -> Result<()> {
    create(
        config,
        tools.unwrap_or(&[]),
        RetryConfig::default(),
        tools.is_some(),
    )
    .map(|_| ())
}

/// The embedded provider's agent (its model is loaded at the first turn).
fn embedded(settings: Settings, preload: bool) -> Result<Arc<dyn Agent>> {
    let foreign = [
        ("base_url", settings.base_url.is_some()),
        ("model", settings.model.is_some()),
        ("api_key", settings.api_key.is_some()),
        ("timeout_ms", settings.timeout_ms.is_some()),
        (
            "tools",
            settings.tools.as_ref().is_some_and(|t| !t.is_empty()),
        ),
        ("tool_choice", settings.tool_choice.is_some()),
        ("tool_timeout_ms", settings.tool_timeout_ms.is_some()),
        ("filler", settings.filler.is_some()),
        ("filler_after_ms", settings.filler_after_ms.is_some()),
        ("max_tool_rounds", settings.max_tool_rounds.is_some()),
    ];
    if let Some((field, _)) = foreign.iter().find(|(_, set)| *set) {
        return Err(Error::invalid_config(format!(
            "agent.{field}: not a setting of the embedded provider (it runs its model_path in-process, without tools)"
        )));
    }
    let max_tokens = settings.max_tokens.unwrap_or(96);
    check_range("agent.max_tokens", max_tokens.into(), 1, 4096)?;
    let context_tokens = settings.context_tokens.unwrap_or(2048);
    check_range("agent.context_tokens", context_tokens.into(), 256, 8192)?;
    let temperature = settings.temperature.unwrap_or(0.0);
    check_temperature(temperature)?;
    let model_path = match settings.model_path {
        Some(path) if path.is_empty() => {
            return Err(Error::invalid_config("agent.model_path: must not be empty"));
        }
        Some(path) => path.into(),
        None => embedded_llm::default_model_path(),
    };
    embedded_llm::create(
        embedded_llm::EmbeddedSettings {
            model_path,
            system_prompt: settings
                .system_prompt
                .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_owned()),
            temperature,
            max_tokens,
            context_tokens,
            seed: settings.seed.unwrap_or(299_792_458),
        },
        preload,
    )
}

/// The built-in agent `config` describes, offering the host's `tools` (those `config.tools`
/// names, or all). `VB_ERR_INVALID_CONFIG` naming the field when a setting is wrong;
/// `VB_ERR_PROVIDER_NOT_FOUND` for an unknown provider.
pub fn create_agent(config: &Value, tools: &[Tool], retry: RetryConfig) -> Result<Arc<dyn Agent>> {
    create(config, tools, retry, true)
}

/// `for_sessions`: made for sessions (the host's tools are all added, so configured tool names
/// must exist; an embedded model starts loading), or only validating (`validate(_, None)`).
fn create(
    config: &Value,
    tools: &[Tool],
    retry: RetryConfig,
    for_sessions: bool,
) -> Result<Arc<dyn Agent>> {
    if !config.is_object() {
        return Err(Error::invalid_config("agent: must be an object"));
    }
    let settings: Settings = serde_json::from_value(config.clone())
        .map_err(|e| Error::invalid_config(format!("agent: {e}")))?;
    match settings.provider.as_str() {
        "openai" => {}
        "embedded" if for_sessions && !tools.is_empty() => {
            return Err(Error::invalid_config(format!(
                "agent: the embedded model does not call tools, so the host's tools ({}) would never be called: use provider \"openai\" with a model that calls tools for these sessions, or add no tools",
                tool_names(tools)
            )));
        }
        "embedded" => return embedded(settings, for_sessions),
        other => {
            return Err(Error::provider_not_found(
                "agent",
                other,
                &["embedded".to_owned(), "openai".to_owned()],
            ));
        }
    }
    if let Some(field) = [
        ("model_path", settings.model_path.is_some()),
        ("seed", settings.seed.is_some()),
    ]
    .iter()
    .find_map(|(f, set)| set.then_some(f))
    {
        return Err(Error::invalid_config(format!(
            "agent.{field}: a setting of the embedded provider, not of openai"
        )));
    }
    let ms = |field: &str, value: Option<u32>, default: u32, min: u32, max: u32| -> Result<u32> {
        let value = value.unwrap_or(default);
        check_range(
            &format!("agent.{field}"),
            value.into(),
            min.into(),
            max.into(),
        )?;
        Ok(value)
    };
    let max_tokens = ms("max_tokens", settings.max_tokens, 256, 1, 32_768)?;
    let timeout_ms = ms("timeout_ms", settings.timeout_ms, 10_000, 100, 600_000)?;
    let context_tokens = ms(
        "context_tokens",
        settings.context_tokens,
        4096,
        256,
        1_000_000,
    )?;
    let tool_timeout_ms = ms(
        "tool_timeout_ms",
        settings.tool_timeout_ms,
        10_000,
        100,
        600_000,
    )?;
    let filler_after_ms = ms("filler_after_ms", settings.filler_after_ms, 700, 0, 60_000)?;
    let max_tool_rounds = ms("max_tool_rounds", settings.max_tool_rounds, 4, 1, 16)?;
    if let Some(t) = settings.temperature {
        check_temperature(t)?;
    }
    if settings.model.as_deref() == Some("") {
        return Err(Error::invalid_config("agent.model: must not be empty"));
    }
    let offered = offered_tools(&settings, tools, for_sessions)?;
    let tool_choice = match settings.tool_choice.as_deref() {
        None | Some("auto") => None,
        Some(choice @ ("none" | "required")) => Some(Value::String(choice.to_owned())),
        Some(name) if !for_sessions || offered.iter().any(|t| t.name == name) => {
            Some(serde_json::json!({"type": "function", "function": {"name": name}}))
        }
        Some(name) => {
            return Err(Error::invalid_config(format!(
                "agent.tool_choice: '{name}' is neither auto, none, required nor an offered tool"
            )));
        }
    };
    let client = ChatClient::new(
        "agent",
        settings.api_key.as_ref(),
        settings.base_url.as_deref(),
        Some(timeout_ms),
        retry,
    )?;
    Ok(Arc::new(ChatAgent {
        client,
        model: settings.model.unwrap_or_else(|| "gpt-4o-mini".to_owned()),
        system_prompt: settings
            .system_prompt
            .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_owned()),
        temperature: settings.temperature,
        max_tokens,
        context_tokens,
        tools: offered,
        tool_choice,
        tool_timeout: Duration::from_millis(tool_timeout_ms.into()),
        filler: settings.filler.unwrap_or_else(|| "One moment.".to_owned()),
        filler_after: Duration::from_millis(filler_after_ms.into()),
        max_tool_rounds,
    }))
}

/// `agent.temperature` within 0–2.
fn check_temperature(t: f64) -> Result<()> {
    if (0.0..=2.0).contains(&t) {
        return Ok(());
    }
    Err(Error::invalid_config(format!(
        "agent.temperature: {t} is outside 0-2"
    )))
}

/// The names of `tools` for a message: "a, b", or "none".
pub(crate) fn tool_names(tools: &[Tool]) -> String {
    if tools.is_empty() {
        return "none".to_owned();
    }
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    names.join(", ")
}

/// The host's tools the settings offer: those named in `tools` (each must exist), or all.
fn offered_tools(settings: &Settings, tools: &[Tool], check: bool) -> Result<Vec<Tool>> {
    let Some(names) = &settings.tools else {
        return Ok(tools.to_vec());
    };
    let mut offered = Vec::new();
    for name in names {
        match tools.iter().find(|t| &t.name == name) {
            Some(tool) => offered.push(tool.clone()),
            None if !check => {}
            None => {
                return Err(Error::invalid_config(format!(
                    "agent.tools: no tool named '{name}' was added (added: {})",
                    tool_names(tools)
                )));
            }
        }
    }
    Ok(offered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VbStatus;
    use serde_json::json;

    fn tool(name: &str) -> Tool {
        Tool {
            name: name.into(),
            description: "test".into(),
            parameters: json!({"type": "object", "properties": {}}),
            handler: Arc::new(|_| Ok("ok".into())),
        }
    }

    fn local(extra: Value) -> Value {
        merged(
            &json!({"provider": "openai", "base_url": "http://127.0.0.1:8080"}),
            &extra,
        )
    }

    #[test]
    fn settings_are_checked_field_by_field() {
        let cases = [
            (
                json!({"provider": "nope"}),
                VbStatus::VB_ERR_PROVIDER_NOT_FOUND,
                "no agent provider named 'nope'",
            ),
            (
                local(json!({"temprature": 1})),
                VbStatus::VB_ERR_INVALID_CONFIG,
                "agent: unknown field `temprature`",
            ),
            (
                local(json!({"temperature": 3.0})),
                VbStatus::VB_ERR_INVALID_CONFIG,
                "agent.temperature: 3 is outside 0-2",
            ),
            (
                local(json!({"max_tokens": 0})),
                VbStatus::VB_ERR_INVALID_CONFIG,
                "agent.max_tokens",
            ),
            (
                local(json!({"tools": ["weather"]})),
                VbStatus::VB_ERR_INVALID_CONFIG,
                "agent.tools: no tool named 'weather' was added (added: clock)",
            ),
            (
                local(json!({"tool_choice": "weather"})),
                VbStatus::VB_ERR_INVALID_CONFIG,
                "agent.tool_choice: 'weather'",
            ),
            (
                local(json!({"base_url": "ftp://x"})),
                VbStatus::VB_ERR_INVALID_CONFIG,
                "agent.base_url",
            ),
            (
                json!("openai"),
                VbStatus::VB_ERR_INVALID_CONFIG,
                "agent: must be an object",
            ),
        ];
        for (config, status, start) in cases {
            let e = create_agent(&config, &[tool("clock")], RetryConfig::default())
                .err()
                .unwrap_or_else(|| panic!("{config} was accepted"));
            assert_eq!(e.status(), status, "{config}: {}", e.message());
            assert!(e.message().contains(start), "{config}: {}", e.message());
        }
        assert!(
            create_agent(
                &local(json!({"tools": ["clock"], "tool_choice": "clock"})),
                &[tool("clock")],
                RetryConfig::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn a_session_overrides_the_backend_field_by_field() {
        let config = merged(
            &json!({"provider": "openai", "model": "a", "system_prompt": "x"}),
            &json!({"model": "b"}),
        );
        assert_eq!(
            config,
            json!({"provider": "openai", "model": "b", "system_prompt": "x"})
        );
        assert_eq!(
            merged(&json!({"provider": "openai"}), &Value::Null),
            json!({"provider": "openai"})
        );
    }

    #[test]
    fn tools_named_later_are_not_checked_before_the_host_added_them() {
        assert!(validate(&local(json!({"tools": ["weather"]})), None).is_ok());
        assert!(validate(&local(json!({"tools": ["weather"]})), Some(&[])).is_err());
    }
}
