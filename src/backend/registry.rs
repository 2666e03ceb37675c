//! The backend registry: backend providers by name (`local`, and `pipecat`, `livekit`, … as they
//! are built). A backend provider checks its configuration and decides what each session runs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::{BackendConfig, PipelineType, parse_section};
use crate::error::Result;
use crate::pipeline::SessionPipeline;
use crate::pipeline::s2s::S2sPipeline;
use crate::pipeline::stt_tts::SttTtsPipeline;
use crate::provider::{ProviderRegistry, ProviderSetup};
use crate::registry::NameMap;

/// A kind of backend.
pub trait BackendProvider: Send + Sync {
    /// The registry name.
    fn name(&self) -> &str;
    /// Validates `config.provider_config` and the pipeline settings and returns what every
    /// session of the backend runs. Unknown providers give `VB_ERR_PROVIDER_NOT_FOUND`.
    fn prepare(&self, config: &BackendConfig) -> Result<Arc<dyn SessionPipeline>>;
    /// Transports its sessions accept.
    fn transports(&self) -> &[&'static str];
}

/// The process-wide backend registry.
pub fn backend_registry() -> &'static NameMap<Arc<dyn BackendProvider>> {
    static GLOBAL: OnceLock<NameMap<Arc<dyn BackendProvider>>> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let map: NameMap<Arc<dyn BackendProvider>> = NameMap::new("backend");
        map.register("local", Arc::new(LocalBackend))
            .expect("valid name");
        map.register("pipecat", Arc::new(super::pipecat::PipecatBackend))
            .expect("valid name");
        map
    })
}

/// The embedded backend: the whole pipeline runs in this process, audio comes through the host
/// calls, providers come from the provider registry.
pub struct LocalBackend;

impl BackendProvider for LocalBackend {
    fn name(&self) -> &str {
        "local"
    }

    fn prepare(&self, config: &BackendConfig) -> Result<Arc<dyn SessionPipeline>> {
        #[derive(Default, serde::Deserialize)]
        struct NoSettings {}
        let _: NoSettings = parse_section("provider_config", &config.provider_config, &[])?;
        config.require_pipeline_providers()?;
        let providers = ProviderRegistry::global();
        let named = |name: &Option<String>| name.clone().unwrap_or_default();
        let setup = |section| ProviderSetup {
            config: section,
            retry: config.retry,
        };
        Ok(match config.pipeline_type {
            PipelineType::SttTts => {
                let stt = providers
                    .create_stt(&named(&config.stt_provider), &setup(&config.stt_config))?;
                let tts = providers
                    .create_tts(&named(&config.tts_provider), &setup(&config.tts_config))?;
                Arc::new(SttTtsPipeline::new(
                    stt,
                    tts,
                    Duration::from_millis(config.agent_timeout_ms.into()),
                ))
            }
            PipelineType::S2s => {
                let model = providers
                    .create_s2s(&named(&config.s2s_provider), &setup(&config.s2s_config))?;
                Arc::new(S2sPipeline::new(
                    model,
                    Duration::from_millis(config.agent_timeout_ms.into()),
                ))
            }
        })
    }

    fn transports(&self) -> &[&'static str] {
        &crate::transport::TRANSPORTS
    }
}
