//! Neural models off the realtime thread (ARCHITECTURE.md, "Models off the realtime thread"):
//! Silero VAD and the Smart Turn end-of-turn model, run through ONNX Runtime (the `ort` crate,
//! loading PyPI's `libonnxruntime.so` at run time) on the backend's [`pool::InferencePool`].
//! Realtime threads reach the pool only through the rings of [`crate::rt::neural`].

pub mod pool;
pub mod runtime;
pub mod silero;
pub mod smart_turn;
