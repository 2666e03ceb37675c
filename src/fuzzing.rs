//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`, never in a release
//! build): thin wrappers that reach parsers the public API keeps private, so that a target feeds
//! them exactly what the network, a file or a host would. Nothing here changes what the library
//! does; each function runs the library's own code on that input. Parsers the public API
//! already reaches (configuration, JWTs, Pipecat frames and RTVI, the CT2 reader, the Whisper
//! tokenizer, the jitter buffer, LiveKit captions) are fuzzed through it.

use std::future::Future;
use std::sync::OnceLock;

/// Runs `future` to completion on the fuzzing runtime (one current-thread runtime with I/O and
/// timers, made once).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
        })
        .block_on(future)
}

/// Deepgram's streaming listen messages (`Results`, `Error`, the rest).
pub mod deepgram {
    pub use crate::provider::network::deepgram::fuzz::*;
}

/// ElevenLabs' stream-input messages (audio with alignment, `isFinal`, errors).
pub mod elevenlabs {
    pub use crate::provider::network::elevenlabs::fuzz::*;
}

/// OpenAI's HTTP answers: error bodies, transcriptions, server-sent event streams.
pub mod openai {
    pub use crate::provider::network::openai::fuzz::*;
}

/// OpenAI's Realtime server events, through a session's conversation.
pub mod openai_realtime {
    pub use crate::provider::network::openai_realtime::fuzz::*;
}
