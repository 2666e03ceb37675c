//! The backend layer: the registry of backend kinds, backends, sessions, health, admission
//! (auth, rate limits), persistence, privacy.

mod admission;
pub mod auth;
#[allow(clippy::module_inception)]
pub mod backend;
pub mod health;
pub mod incoming;
pub mod limits;
pub mod persist;
pub mod privacy;
mod recovery;
pub mod session;
mod store;

pub use crate::pipeline::kinds::BackendKind;
pub use crate::pipeline::{AudioProcessor, ProcessorFactory, PushOutcome};
pub use auth::{AuthHook, AuthResult, JwtHs256Hook};
pub use backend::Backend;
pub use backend::backend_registry;
pub use health::{VbHealth, VbHealthStatus};
pub use incoming::{Accepted, IncomingHandler};
pub use limits::{RateLimiter, TokenBuckets};
pub use persist::{RecoveredSession, StoredAudio, StoredSession};
pub use privacy::{DataKind, DataOwner, PrivacyPolicy};
pub use session::{EventCallback, Session};
