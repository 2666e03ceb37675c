//! Backend configuration JSON, as `vb_backend_create` gets it, and the provider sections the
//! network providers and backends validate from it (without connecting anywhere).
//!
//! Checks: no panic; every refusal is `VB_ERR_INVALID_CONFIG` with a message; a configuration that
//! parsed validates again the same way and parses again from the same text to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::provider::ProviderSetup;
use voicebackend::provider::network::{deepgram, elevenlabs, openai, openai_realtime, pipecat};
use voicebackend::transport::livekit::Settings;
use voicebackend::{BackendConfig, Result, VbStatus};

fn refused_as_config<T>(what: &str, result: Result<T>) {
    if let Err(e) = result {
        assert_eq!(
            e.status(),
            VbStatus::VB_ERR_INVALID_CONFIG,
            "{what}: {}",
            e.message()
        );
        assert!(
            !e.message().is_empty(),
            "{what}: an error without a message"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let config = match BackendConfig::from_json(json) {
        Ok(config) => config,
        Err(e) => return refused_as_config("backend config", Err::<(), _>(e)),
    };
    config.validate().expect("a parsed configuration validates");
    let again = BackendConfig::from_json(json).expect("the same text parses again");
    assert_eq!(format!("{config:?}"), format!("{again:?}"));
    refused_as_config("pipeline providers", config.require_pipeline_providers());
    let setup = |section| ProviderSetup {
        config: section,
        retry: config.retry,
    };
    refused_as_config("deepgram", deepgram::create(&setup(&config.stt_config)));
    refused_as_config("elevenlabs", elevenlabs::create(&setup(&config.tts_config)));
    refused_as_config(
        "openai-realtime",
        openai_realtime::create(&setup(&config.s2s_config)),
    );
    // OpenAI's providers make an HTTP client each (costly): only when named.
    if config.stt_provider.as_deref() == Some(openai::NAME) {
        refused_as_config("openai stt", openai::create_stt(&setup(&config.stt_config)));
    }
    if config.tts_provider.as_deref() == Some(openai::NAME) {
        refused_as_config("openai tts", openai::create_tts(&setup(&config.tts_config)));
    }
    refused_as_config(
        "pipecat",
        pipecat::settings::bot_from_backend_config(&config),
    );
    refused_as_config("livekit", Settings::from_backend_config(&config));
});
