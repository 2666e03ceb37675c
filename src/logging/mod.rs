//! Logging: the engine reports through [`tracing`] — spans per backend (`backend`), session
//! (`session`) and turn (`turn`), events for connection changes, retries, errors and admission
//! decisions — and installs no subscriber of its own unless the host asks:
//!
//! - a Rust host uses its own subscriber (`tracing_subscriber::fmt`, `tracing-opentelemetry`,
//!   …); the engine's targets start with `voicebackend`, and [`ENV_FILTER`] (`VB_LOG`, else
//!   `RUST_LOG`) is the convention its filter may follow;
//! - a C, C++ or Go host calls `vb_set_log_callback`, which installs the process's global
//!   subscriber once ([`forward`]): records that pass the environment filter and the host's
//!   level are formatted on the thread that logs them and handed to the host's callback by one
//!   log thread.
//!
//! Nothing is logged on the realtime thread or inside the two audio calls (`src/rt/` and the
//! host's audio edge never log). Transcripts and agent text appear only where the session's
//! privacy policy allows it ([`LogPolicy`]); secrets (keys, tokens, URL user info and query)
//! never.

pub mod forward;

pub use forward::{LogRecord, LogSink, forward};
pub use tracing::Level;
pub use tracing::level_filters::LevelFilter;

/// The environment variable with the filter directives (`tracing-subscriber`'s `EnvFilter`
/// syntax, e.g. `voicebackend=debug,warn`); `RUST_LOG` is read when it is not set.
pub const ENV_FILTER: &str = "VB_LOG";

/// The filter directives of the environment: [`ENV_FILTER`], else `RUST_LOG`, else `None`.
pub fn env_directives() -> Option<String> {
    [ENV_FILTER, "RUST_LOG"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty())
}

/// What of a session's conversation may appear in its log records: the answers of the backend's
/// `PrivacyPolicy::may_log` for the session, asked once when it is created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogPolicy {
    /// What the user said (final and partial transcripts).
    pub transcripts: bool,
    /// What the agent answered.
    pub agent_text: bool,
}

impl LogPolicy {
    /// `text` when `allowed`, else `None`: a record then says how long it was, never what.
    pub fn gate(allowed: bool, text: &str) -> Option<&str> {
        allowed.then_some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_passes_the_gate_only_when_allowed() {
        assert_eq!(LogPolicy::gate(true, "hello"), Some("hello"));
        assert_eq!(LogPolicy::gate(false, "hello"), None);
        assert!(!LogPolicy::default().transcripts);
    }
}
