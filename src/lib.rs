//! voicebackend: a lock-free realtime voice-agent engine with a stable C ABI.
//!
//! A host creates a [`Backend`] from JSON configuration, opens one [`Session`] per conversation
//! and streams PCM in with [`Session::process_audio`]. Each session has a realtime thread (VAD,
//! turn detection, barge-in, playout), a task on the backend's I/O runtime (STT, the host's
//! [`Agent`], TTS) and reports [`Event`]s. The C ABI in [`ffi`] exposes the same API.
//!
//! Layers, top to bottom: [`ffi`] → [`backend`] → [`pipeline`] → [`rt`], [`provider`],
//! [`transport`]; [`telemetry`] and [`logging`] beside them. See `README.md` for examples.

#![warn(missing_docs)]

pub mod agent;
pub mod backend;
pub mod config;
pub mod dsp;
pub mod error;
pub mod event;
pub mod ffi;
pub mod infer;
pub mod logging;
pub mod net;
pub mod pipeline;
pub mod provider;
pub mod registry;
pub mod rt;
pub mod telemetry;
pub mod transport;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "test-providers")]
#[path = "../tests/support/providers.rs"]
pub mod test_providers;

pub use agent::{Agent, Reply, Tool, ToolHandler, Turn};
pub use backend::{Backend, Session, VbHealth, VbHealthStatus};
pub use config::{BackendConfig, SessionConfig};
pub use error::{Error, Result, VbStatus};
pub use event::{Event, VbEventKind, VbSessionState, VbTurnMetrics};
