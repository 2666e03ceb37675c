//! Provider traits (STT, TTS, S2S) and the registry that creates providers by name.
//!
//! Providers run on the backend's tokio runtime (the I/O threads), never on the realtime thread.
//! Each provider is configured by its own JSON object, validated when the backend is created.

pub mod builtin;
pub mod deepgram;
pub mod elevenlabs;
pub mod espeak;
pub mod openai;
pub mod openai_realtime;
pub mod pipecat;
pub mod registry;
pub mod s2s;
pub mod speech;
pub mod stt;
pub mod tts;
pub mod whisper;
pub mod ws_link;

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: what provider methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub use registry::{ProviderKind, ProviderRegistry, ProviderSetup};
pub use s2s::{S2sEvent, S2sInput, S2sProvider, S2sSession};
pub use stt::{SttProvider, SttSink, SttTurn};
pub use tts::{TtsProvider, TtsRequest};
