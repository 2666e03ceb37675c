//! Registers the providers built into the library (embedded, offline ones and network clients).

use std::sync::Arc;

use super::ProviderRegistry;

/// Adds every built-in provider to `registry`.
pub fn register(registry: &ProviderRegistry) {
    let _ = registry;
    registry
        .tts
        .register("espeak", super::embedded::espeak::factory())
        .expect("valid name");
    registry
        .stt
        .register("whisper", Arc::new(super::embedded::whisper::create))
        .expect("valid name");
    registry
        .stt
        .register(
            super::network::openai::NAME,
            Arc::new(super::network::openai::create_stt),
        )
        .expect("valid name");
    registry
        .tts
        .register(
            super::network::openai::NAME,
            Arc::new(super::network::openai::create_tts),
        )
        .expect("valid name");
    registry
        .s2s
        .register(
            super::network::openai_realtime::NAME,
            Arc::new(super::network::openai_realtime::create),
        )
        .expect("valid name");
    registry
        .stt
        .register(
            "deepgram",
            std::sync::Arc::new(super::network::deepgram::create),
        )
        .expect("valid name");
    registry
        .tts
        .register(
            "elevenlabs",
            std::sync::Arc::new(super::network::elevenlabs::create),
        )
        .expect("valid name");
}
