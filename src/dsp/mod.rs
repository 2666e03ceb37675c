//! Signal processing shared by every layer that touches audio: the realtime core (input frames),
//! the providers (models that want another rate) and the transports (codecs at the edge).
//!
//! Nothing here is async, and nothing here knows about sessions. Which functions are
//! realtime-safe is said on each.

pub mod decimate;
pub mod interpolate;
pub mod mel;
pub mod resample;
