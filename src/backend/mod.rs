//! The backend layer: registry, backends, sessions, health, persistence, privacy.

#[allow(clippy::module_inception)]
pub mod backend;
pub mod health;
pub mod persist;
pub mod privacy;
pub mod registry;
pub mod session;

pub use backend::Backend;
pub use health::{VbHealth, VbHealthStatus};
pub use persist::{RecoveredSession, StoredAudio, StoredSession};
pub use privacy::{DataKind, DataOwner, PrivacyPolicy};
pub use registry::{BackendProvider, backend_registry};
pub use session::{EventCallback, Session};
