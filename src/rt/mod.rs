//! The realtime core: frames, rings, the per-session realtime loop and its DSP stages.
//!
//! Nothing in this module is async, and nothing on the realtime path allocates, locks or blocks.
//! The module is public so that benchmarks and tests can drive each stage directly.

pub mod core;
pub mod denoise;
pub mod frame;
pub mod message;
pub mod neural;
pub mod playout;
pub mod pool;
pub mod processor;
pub mod shared;
pub mod thread;
pub mod turn;
pub mod vad;
pub mod wake;
