//! Kinds of backend (`local`, `pipecat`, …): what each makes of a backend configuration — the
//! conversation every session runs and the transports its sessions accept. The backend layer
//! keeps the registry of kinds by name; this is where they are built.

use std::sync::Arc;
use std::time::Duration;

use super::SessionPipeline;
use super::s2s::S2sPipeline;
use super::stt_tts::SttTtsPipeline;
use crate::config::{BackendConfig, PipelineType, parse_section};
use crate::error::{Error, Result};
use crate::provider::network::pipecat;
use crate::provider::{ProviderRegistry, ProviderSetup};
use crate::transport::livekit::{self, LiveKit};
use crate::transport::phone::{self, Phone, PhoneSettings};
use crate::transport::webrtc::{self, WebRtc, WebRtcSettings};
use crate::transport::{self, MediaTransport};

/// A kind of backend.
pub trait BackendKind: Send + Sync {
    /// The registry name.
    fn name(&self) -> &str;
    /// Validates `config.provider_config` and the pipeline settings and returns what every session
    /// of the backend runs. Unknown providers give `VB_ERR_PROVIDER_NOT_FOUND`.
    fn prepare(&self, config: &BackendConfig) -> Result<Recipe>;
}

/// What every session of one backend runs.
pub struct Recipe {
    /// The session task: STT → agent → TTS, or a speech-to-speech model.
    pub conversation: Arc<dyn SessionPipeline>,
    /// Transport names its sessions accept (`SessionConfig::transport`).
    pub transports: &'static [&'static str],
    /// The network transport that carries the sessions naming it, if the kind has one.
    pub media: Option<Arc<dyn MediaTransport>>,
}

/// The kinds built into the library.
pub fn builtin() -> Vec<Arc<dyn BackendKind>> {
    vec![Arc::new(Local), Arc::new(Pipecat), Arc::new(LiveKitKind)]
}

/// The embedded backend: the whole pipeline runs in this process, audio comes through the host
/// calls, providers come from the provider registry. With `provider_config.phone` it also takes
/// phone calls ([`crate::transport::phone`]), with `provider_config.webrtc` browsers' direct
/// WebRTC calls ([`crate::transport::webrtc`]): sessions of transport `"phone"` or `"webrtc"`
/// that arrive by themselves. One listening transport per backend: not both.
pub struct Local;

impl BackendKind for Local {
    fn name(&self) -> &str {
        "local"
    }

    fn prepare(&self, config: &BackendConfig) -> Result<Recipe> {
        // The only sections are `phone` and `webrtc` (checked below); other keys are an error.
        let _: serde_json::Value = parse_section(
            "provider_config",
            &config.provider_config,
            &["phone", "webrtc"],
        )?;
        let conversation = local_conversation(config)?;
        let phone = PhoneSettings::from_provider_config(&config.provider_config)?;
        let webrtc = WebRtcSettings::from_provider_config(&config.provider_config)?;
        Ok(match (phone, webrtc) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_config(
                    "provider_config: 'phone' and 'webrtc' cannot both be set (one listening transport per backend: make two backends)",
                ));
            }
            (Some(settings), None) => Recipe {
                conversation,
                transports: &[transport::HOST, phone::TRANSPORT],
                media: Some(Arc::new(Phone::new(settings))),
            },
            (None, Some(settings)) => Recipe {
                conversation,
                transports: &[transport::HOST, webrtc::TRANSPORT],
                media: Some(Arc::new(WebRtc::new(settings))),
            },
            (None, None) => Recipe {
                conversation,
                transports: &[transport::HOST],
                media: None,
            },
        })
    }
}

/// The conversation of a backend whose STT, TTS or S2S providers run under this engine (named in
/// `stt_provider`, `tts_provider` or `s2s_provider`).
pub fn local_conversation(config: &BackendConfig) -> Result<Arc<dyn SessionPipeline>> {
    config.require_pipeline_providers()?;
    let providers = ProviderRegistry::global();
    let named = |name: &Option<String>| name.clone().unwrap_or_default();
    let setup = |section| ProviderSetup {
        config: section,
        retry: config.retry,
    };
    let agent_timeout = Duration::from_millis(config.agent_timeout_ms.into());
    Ok(match config.pipeline_type {
        PipelineType::SttTts => {
            let stt =
                providers.create_stt(&named(&config.stt_provider), &setup(&config.stt_config))?;
            let tts =
                providers.create_tts(&named(&config.tts_provider), &setup(&config.tts_config))?;
            let manners = super::manners::Manners::of(&config.interruptions);
            let preemptive = config.turn.preemptive_ms > 0;
            Arc::new(SttTtsPipeline::new(stt, tts, agent_timeout, manners).preemptive(preemptive))
        }
        PipelineType::S2s => {
            refuse_preemptive(config, "a speech-to-speech pipeline")?;
            let model =
                providers.create_s2s(&named(&config.s2s_provider), &setup(&config.s2s_config))?;
            Arc::new(S2sPipeline::new(model, agent_timeout))
        }
    })
}

/// Preemptive replies start the session's agent early: `what` has none (its model answers by
/// itself), so `turn.preemptive_ms` there is a mistake, refused rather than ignored.
fn refuse_preemptive(config: &BackendConfig, what: &str) -> Result<()> {
    if config.turn.preemptive_ms == 0 {
        return Ok(());
    }
    Err(Error::invalid_config(format!(
        "turn.preemptive_ms: {what} has no agent to start early (the model answers by itself); leave it 0"
    )))
}

/// Every session talks to a Pipecat bot (see [`crate::provider::network::pipecat`]): the bot listens,
/// answers and speaks; the engine runs its realtime side and reports events, so hosts need no
/// agent callback.
pub struct Pipecat;

impl BackendKind for Pipecat {
    fn name(&self) -> &str {
        "pipecat"
    }

    fn prepare(&self, config: &BackendConfig) -> Result<Recipe> {
        refuse_preemptive(config, "the pipecat backend")?;
        let bot = pipecat::bot_from_backend_config(config)?;
        let answer_timeout = Duration::from_millis(config.agent_timeout_ms.into());
        Ok(Recipe {
            conversation: Arc::new(S2sPipeline::new(Arc::new(bot), answer_timeout)),
            transports: &[transport::HOST],
            media: None,
        })
    }
}

/// Every session joins a LiveKit room as the agent participant ([`crate::transport::livekit`]):
/// the room's audio runs through this engine's pipeline (STT → agent → TTS, or S2S), as on
/// `local`.
pub struct LiveKitKind;

impl BackendKind for LiveKitKind {
    fn name(&self) -> &str {
        livekit::NAME
    }

    fn prepare(&self, config: &BackendConfig) -> Result<Recipe> {
        let transport = LiveKit::from_backend_config(config)?;
        Ok(Recipe {
            conversation: local_conversation(config)?,
            transports: &[livekit::TRANSPORT],
            media: Some(Arc::new(transport)),
        })
    }
}
