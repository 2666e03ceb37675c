//! The backend layer: registry, backends, sessions, health.

#[allow(clippy::module_inception)]
pub mod backend;
pub mod health;
pub mod pipecat;
pub mod registry;
pub mod session;

pub use backend::Backend;
pub use health::{VbHealth, VbHealthStatus};
pub use registry::{BackendProvider, backend_registry};
pub use session::{EventCallback, Session};
