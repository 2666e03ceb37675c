//! Providers that run inside this process, offline, with no account anywhere: Whisper tiny.en
//! (STT, pure-Rust inference with candle) and eSpeak NG (TTS, through Debian's libespeak-ng).

pub mod espeak;
pub mod whisper;
