pub mod openai_engines;
pub mod openai_http;
pub mod openai_realtime;
pub mod otlp;
