//! Providers that run inside this process, offline, with no account anywhere: Whisper tiny.en
//! (STT, pure-Rust inference with candle), eSpeak NG (TTS, through Debian's libespeak-ng) and a
//! small instruct LLM for the built-in agent ([`llm`], candle's quantized Llama).

pub mod espeak;
pub mod llm;
pub mod whisper;
