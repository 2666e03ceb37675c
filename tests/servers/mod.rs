pub mod deepgram;
pub mod elevenlabs;
pub mod ws_server;
