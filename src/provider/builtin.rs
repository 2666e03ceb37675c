//! Registers the providers built into the library (embedded, offline ones and network clients).

use std::sync::Arc;

use super::ProviderRegistry;

/// Adds every built-in provider to `registry`.
pub fn register(registry: &ProviderRegistry) {
    let _ = registry;
    registry
        .tts
        .register("espeak", super::espeak::factory())
        .expect("valid name");
    registry
        .stt
        .register("whisper", Arc::new(super::whisper::create))
        .expect("valid name");
    registry
        .stt
        .register(super::openai::NAME, Arc::new(super::openai::create_stt))
        .expect("valid name");
    registry
        .tts
        .register(super::openai::NAME, Arc::new(super::openai::create_tts))
        .expect("valid name");
    registry
        .s2s
        .register(
            super::openai_realtime::NAME,
            Arc::new(super::openai_realtime::create),
        )
        .expect("valid name");
    registry
        .stt
        .register("deepgram", std::sync::Arc::new(super::deepgram::create))
        .expect("valid name");
    registry
        .tts
        .register("elevenlabs", std::sync::Arc::new(super::elevenlabs::create))
        .expect("valid name");
}
