//! The backend layer: registry, backends, sessions, health, admission (auth, rate limits).

mod admission;
pub mod auth;
#[allow(clippy::module_inception)]
pub mod backend;
pub mod health;
pub mod limits;
pub mod registry;
pub mod session;

pub use auth::{AuthHook, AuthResult, JwtHs256Hook};
pub use backend::Backend;
pub use health::{VbHealth, VbHealthStatus};
pub use limits::{RateLimiter, TokenBuckets};
pub use registry::{BackendProvider, backend_registry};
pub use session::{EventCallback, Session};
