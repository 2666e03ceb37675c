//! Providers reached over the network, each speaking its vendor's documented wire protocol:
//! Deepgram (STT), ElevenLabs (TTS), OpenAI (STT, TTS, and the Realtime API as S2S), and a
//! Pipecat bot (as an S2S model, for the `pipecat` backend). [`ws_link`] is what their
//! streaming WebSocket connections share; `crate::net` what every network client shares.

pub mod deepgram;
pub mod elevenlabs;
pub mod openai;
pub mod openai_realtime;
pub mod pipecat;
pub mod ws_link;
