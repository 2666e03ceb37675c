//! The STT, TTS and S2S provider registries: name → factory taking the provider's JSON config.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::{S2sProvider, SttProvider, TtsProvider};
use crate::error::Result;
use crate::registry::NameMap;

/// Makes an STT provider from its JSON config (validating it).
pub type SttFactory = Arc<dyn Fn(&Value) -> Result<Arc<dyn SttProvider>> + Send + Sync>;
/// Makes a TTS provider from its JSON config (validating it).
pub type TtsFactory = Arc<dyn Fn(&Value) -> Result<Arc<dyn TtsProvider>> + Send + Sync>;
/// Makes an S2S provider from its JSON config (validating it).
pub type S2sFactory = Arc<dyn Fn(&Value) -> Result<Arc<dyn S2sProvider>> + Send + Sync>;

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

    /// Creates the STT provider `name` with `config`.
    pub fn create_stt(&self, name: &str, config: &Value) -> Result<Arc<dyn SttProvider>> {
        (self.stt.get(name)?)(config)
    }

    /// Creates the TTS provider `name` with `config`.
    pub fn create_tts(&self, name: &str, config: &Value) -> Result<Arc<dyn TtsProvider>> {
        (self.tts.get(name)?)(config)
    }

    /// Creates the S2S provider `name` with `config`.
    pub fn create_s2s(&self, name: &str, config: &Value) -> Result<Arc<dyn S2sProvider>> {
        (self.s2s.get(name)?)(config)
    }
}
