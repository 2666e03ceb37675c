//! Local servers that speak the vendors' documented protocols (and an OTLP receiver), for the
//! tests: each test crate uses some of them.
#![allow(dead_code)]

pub mod deepgram;
pub mod elevenlabs;
pub mod openai_engines;
pub mod openai_http;
pub mod openai_realtime;
pub mod otlp;
pub mod ws_server;
