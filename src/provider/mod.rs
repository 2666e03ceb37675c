//! Providers: what STT, TTS and S2S engines look like to a session ([`stt`], [`tts`], [`s2s`],
//! the speech ring [`speech`]), the registry that creates them by name ([`registry`],
//! [`builtin`]), and the engines themselves: [`embedded`] (offline, in-process) and [`network`]
//! (vendors' wire protocols).
//!
//! Providers run on the backend's tokio runtime (the I/O threads), never on the realtime thread.
//! Each provider is configured by its own JSON object, validated when the backend is created.

pub mod builtin;
pub mod embedded;
pub mod llm;
pub mod network;
pub mod registry;
pub mod s2s;
pub mod speech;
pub mod stt;
pub mod tts;

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: what provider methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub use registry::{ProviderKind, ProviderRegistry, ProviderSetup};
pub use s2s::{S2sEvent, S2sInput, S2sProvider, S2sSession};
pub use stt::{SttProvider, SttSink, SttTurn};
pub use tts::{TtsProvider, TtsRequest};
