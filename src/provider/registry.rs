//! The STT, TTS and S2S provider registries: name → factory taking the provider's JSON config.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::{S2sProvider, SttProvider, TtsProvider};
use crate::config::RetryConfig;
use crate::error::Result;
use crate::registry::NameMap;

/// What a provider factory gets: its own JSON section and the backend-wide network rules.
#[derive(Debug, Clone, Copy)]
pub struct ProviderSetup<'a> {
    /// The provider's section (`stt_config`, `tts_config` or `s2s_config`), to validate strictly.
    pub config: &'a Value,
    /// How connections to network services are retried (the backend's `retry`).
    pub retry: RetryConfig,
}

impl<'a> ProviderSetup<'a> {
    /// `config` with the default retry rules.
    pub fn new(config: &'a Value) -> Self {
        ProviderSetup {
            config,
            retry: RetryConfig::default(),
        }
    }
}

/// Makes an STT provider (validating its config).
pub type SttFactory = Arc<dyn Fn(&ProviderSetup) -> Result<Arc<dyn SttProvider>> + Send + Sync>;
/// Makes a TTS provider (validating its config).
pub type TtsFactory = Arc<dyn Fn(&ProviderSetup) -> Result<Arc<dyn TtsProvider>> + Send + Sync>;
/// Makes an S2S provider (validating its config).
pub type S2sFactory = Arc<dyn Fn(&ProviderSetup) -> Result<Arc<dyn S2sProvider>> + Send + Sync>;

/// The three kinds of media provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Speech to text.
    Stt,
    /// Text to speech.
    Tts,
    /// Speech to speech.
    S2s,
}

/// All media providers this process knows.
pub struct ProviderRegistry {
    /// STT providers.
    pub stt: NameMap<SttFactory>,
    /// TTS providers.
    pub tts: NameMap<TtsFactory>,
    /// S2S providers.
    pub s2s: NameMap<S2sFactory>,
}

impl ProviderRegistry {
    /// The process-wide registry.
    pub fn global() -> &'static ProviderRegistry {
        static GLOBAL: OnceLock<ProviderRegistry> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let registry = ProviderRegistry {
                stt: NameMap::new("stt"),
                tts: NameMap::new("tts"),
                s2s: NameMap::new("s2s"),
            };
            super::builtin::register(&registry);
            #[cfg(feature = "test-providers")]
            crate::test_providers::register(&registry);
            registry
        })
    }

    /// Names registered for `kind`, sorted.
    pub fn names(&self, kind: ProviderKind) -> Vec<String> {
        match kind {
            ProviderKind::Stt => self.stt.names(),
            ProviderKind::Tts => self.tts.names(),
            ProviderKind::S2s => self.s2s.names(),
        }
    }

    /// Creates the STT provider `name`.
    pub fn create_stt(&self, name: &str, setup: &ProviderSetup) -> Result<Arc<dyn SttProvider>> {
        (self.stt.get(name)?)(setup)
    }

    /// Creates the TTS provider `name`.
    pub fn create_tts(&self, name: &str, setup: &ProviderSetup) -> Result<Arc<dyn TtsProvider>> {
        (self.tts.get(name)?)(setup)
    }

    /// Creates the S2S provider `name`.
    pub fn create_s2s(&self, name: &str, setup: &ProviderSetup) -> Result<Arc<dyn S2sProvider>> {
        (self.s2s.get(name)?)(setup)
    }
}
