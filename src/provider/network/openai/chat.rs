//! OpenAI's Chat Completions API, streamed (`POST {base_url}/v1/chat/completions` with
//! `"stream": true`): the client of the built-in agent ([`crate::provider::llm`]). Any server
//! that speaks the API works: OpenAI, llama.cpp's server, vLLM, Ollama.
//!
//! Wire format, as the API reference documents it (read in the generated types of the official
//! `openai-python` SDK: `types/chat/completion_create_params.py`, `chat_completion_chunk.py`,
//! `chat_completion_message_tool_call_param.py`): the answer is a server-sent event stream of
//! `chat.completion.chunk` objects ending with `data: [DONE]`. Each chunk's `choices[0].delta`
//! may carry `content` (text to append) and `tool_calls` (pieces of calls, keyed by `index`: the
//! first piece has the call's `id` and `function.name`, every piece appends to
//! `function.arguments`); `choices[0].finish_reason` says why it stopped (`stop`, `length`,
//! `tool_calls`). A server that fails mid-stream sends `{"error": {...}}` as an event. A server
//! that ignores `stream` answers one `chat.completion` object (`choices[0].message`): read as
//! well.
//!
//! Failures follow the module's rules ([`super`]): a refused key is `VB_ERR_UNAUTHORIZED`, 5xx
//! and lost connections are retried per `retry` — only until the first text arrived, since what
//! was said cannot be taken back — and a server silent for `timeout_ms` is `VB_ERR_TIMEOUT`.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use super::sse::SseReader;
use super::{DEFAULT_BASE_URL, Endpoint, KEY_ENV};
use crate::config::{RetryConfig, Secret};
use crate::error::Result;
use crate::net::{api_key, with_retry};

/// How often a wait for the next piece of the answer looks whether the reply was cancelled.
const CANCEL_CHECK: Duration = Duration::from_millis(20);

/// The streaming Chat Completions client of one agent configuration. Runs on the I/O runtime.
pub struct ChatClient {
    endpoint: Endpoint,
}

/// A call of one of the host's tools, as the model asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The call's id, quoted back with its result.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// Its arguments, a JSON object as text (as the model wrote it: may be malformed).
    pub arguments: String,
}

/// What one completion produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChatRound {
    /// The text, as streamed.
    pub text: String,
    /// The tools the model wants called before it goes on, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Why the model stopped (`stop`, `length`, `tool_calls`, …), if the server said.
    pub finish_reason: Option<String>,
}

impl ChatClient {
    /// A client for `base_url` (default OpenAI's). The key is `api_key`, else `OPENAI_API_KEY`;
    /// with neither, a self-hosted `base_url` is called without one, OpenAI's is a
    /// configuration error. `section` names the settings in messages (`agent`).
    pub fn new(
        section: &str,
        configured_key: Option<&Secret>,
        base_url: Option<&str>,
        timeout_ms: Option<u32>,
        retry: RetryConfig,
    ) -> Result<ChatClient> {
        let field = format!("{section}.api_key");
        let key = match api_key(&field, configured_key, KEY_ENV) {
            Ok(key) => key,
            Err(_) if base_url.is_some_and(|u| !u.starts_with(DEFAULT_BASE_URL)) => {
                Secret::new(String::new())
            }
            Err(e) => return Err(e),
        };
        Ok(ChatClient {
            endpoint: Endpoint::with_key(
                section,
                key,
                Some(base_url.unwrap_or(DEFAULT_BASE_URL)),
                timeout_ms,
                "chat/completions",
                retry,
            )?,
        })
    }

    /// The endpoint's URL as shown in messages (no credentials).
    pub fn url(&self) -> &str {
        &self.endpoint.shown
    }

    /// Streams one completion of `body` (the request without `stream`), handing each piece of
    /// text to `on_text` as it arrives. `Ok(None)` when `cancelled` turned true: the request is
    /// dropped at once (its connection closed, which stops generation on servers that notice).
    pub async fn complete(
        &self,
        body: &Value,
        cancelled: &(dyn Fn() -> bool + Sync),
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Option<ChatRound>> {
        let mut body = body.clone();
        body["stream"] = Value::Bool(true);
        let body = body.to_string();
        let e = &self.endpoint;
        let send = with_retry(&e.retry, || {
            e.send(|r| {
                r.header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
        });
        let Some(response) = until_cancelled(send, cancelled).await else {
            return Ok(None);
        };
        let mut response = response?;
        let streamed = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if !streamed {
            let Some(whole) = until_cancelled(e.body(response), cancelled).await else {
                return Ok(None);
            };
            let round = whole_completion(e, &whole?)?;
            on_text(&round.text);
            return Ok(Some(round));
        }
        let mut stream = ChatStream::default();
        loop {
            let Some(chunk) = until_cancelled(e.chunk(&mut response), cancelled).await else {
                return Ok(None);
            };
            let Some(chunk) = chunk? else {
                // The stream ended without saying why the model stopped: the server gave up
                // mid-answer (llama.cpp's server does so when the context overflows).
                return match stream.finish_reason {
                    Some(_) => Ok(Some(stream.finish())),
                    None => Err(e.unreadable(
                        "completion",
                        "the answer ended before the model finished (no finish_reason)",
                    )),
                };
            };
            for text in stream.push(e, &chunk)? {
                on_text(&text);
            }
            if stream.done {
                return Ok(Some(stream.finish()));
            }
        }
    }
}

/// `future`'s output, or `None` as soon as `cancelled` says so (looked at every 20 ms).
async fn until_cancelled<T>(
    future: impl Future<Output = T>,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Option<T> {
    tokio::pin!(future);
    let mut tick = tokio::time::interval(CANCEL_CHECK);
    loop {
        tokio::select! {
            out = &mut future => return Some(out),
            _ = tick.tick() => if cancelled() { return None },
        }
    }
}

/// A streamed completion being read.
#[derive(Default)]
struct ChatStream {
    events: SseReader,
    text: String,
    /// Tool calls by their `index`.
    calls: BTreeMap<u64, ToolCall>,
    finish_reason: Option<String>,
    /// `finish_reason` came (some servers keep the connection open a while after it).
    done: bool,
}

impl ChatStream {
    /// Reads a piece of the stream; the text deltas it completed.
    fn push(&mut self, e: &Endpoint, chunk: &[u8]) -> Result<Vec<String>> {
        let mut texts = Vec::new();
        for data in self.events.push(chunk) {
            let event: Value =
                serde_json::from_str(&data).map_err(|err| e.unreadable("completion chunk", err))?;
            if let Some(error) = event.get("error") {
                let message = error["message"].as_str().unwrap_or("no message");
                return Err(e.unreadable(
                    "completion",
                    format!("the server failed mid-answer: {message}"),
                ));
            }
            let Some(choice) = event["choices"].get(0) else {
                continue; // e.g. a usage chunk
            };
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                self.text.push_str(text);
                texts.push(text.to_owned());
            }
            if let Some(calls) = delta["tool_calls"].as_array() {
                for (position, call) in calls.iter().enumerate() {
                    let index = call["index"].as_u64().unwrap_or(position as u64);
                    let entry = self.calls.entry(index).or_insert_with(|| ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                    if let Some(id) = call["id"].as_str() {
                        entry.id = id.to_owned();
                    }
                    // OpenAI names the function in the call's first piece only; some servers
                    // (llama-cpp-python) repeat the whole name in every piece.
                    if let Some(name) = call["function"]["name"].as_str() {
                        if entry.name != name {
                            entry.name.push_str(name);
                        }
                    }
                    if let Some(arguments) = call["function"]["arguments"].as_str() {
                        entry.arguments.push_str(arguments);
                    }
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.finish_reason = Some(reason.to_owned());
                self.done = true;
            }
        }
        Ok(texts)
    }

    fn finish(self) -> ChatRound {
        ChatRound {
            text: self.text,
            tool_calls: numbered(self.calls.into_values()),
            finish_reason: self.finish_reason,
        }
    }
}

/// Tool calls with an id each (a server that gives none gets `call_<n>`).
fn numbered(calls: impl Iterator<Item = ToolCall>) -> Vec<ToolCall> {
    calls
        .enumerate()
        .map(|(n, mut call)| {
            if call.id.is_empty() {
                call.id = format!("call_{n}");
            }
            call
        })
        .collect()
}

/// A whole `chat.completion` object (a server that does not stream).
fn whole_completion(e: &Endpoint, body: &[u8]) -> Result<ChatRound> {
    let value: Value =
        serde_json::from_slice(body).map_err(|err| e.unreadable("completion", err))?;
    let choice = value["choices"]
        .get(0)
        .ok_or_else(|| e.unreadable("completion", "no choices"))?;
    let message = &choice["message"];
    let calls = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|call| ToolCall {
                    id: call["id"].as_str().unwrap_or_default().to_owned(),
                    name: call["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    arguments: call["function"]["arguments"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Ok(ChatRound {
        text: message["content"].as_str().unwrap_or_default().to_owned(),
        tool_calls: numbered(calls.into_iter()),
        finish_reason: choice["finish_reason"].as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        ChatClient::new(
            "agent",
            None,
            Some("http://127.0.0.1:9"),
            None,
            RetryConfig::default(),
        )
        .unwrap()
        .endpoint
    }

    #[test]
    fn streamed_text_and_tool_calls_are_put_together_from_their_pieces() {
        let e = endpoint();
        let mut stream = ChatStream::default();
        let pieces = [
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Let me \"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"check.\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"ci\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ty\\\": \\\"Paris\\\"}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
        ];
        let mut texts = Vec::new();
        for piece in pieces {
            texts.extend(stream.push(&e, piece.as_bytes()).unwrap());
        }
        assert_eq!(texts, ["Let me ", "check."]);
        assert!(stream.done);
        let round = stream.finish();
        assert_eq!(round.text, "Let me check.");
        assert_eq!(round.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            round.tool_calls,
            [ToolCall {
                id: "call_a".into(),
                name: "get_weather".into(),
                arguments: "{\"city\": \"Paris\"}".into()
            }]
        );
    }

    #[test]
    fn a_name_repeated_in_every_piece_is_taken_once() {
        // llama-cpp-python 0.3.36 sends the function's name with each piece of its arguments.
        let e = endpoint();
        let mut stream = ChatStream::default();
        for arguments in ["{", "\\\"city\\\": ", "\\\"Paris\\\"}"] {
            let piece = format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{{\"name\":\"get_weather\",\"arguments\":\"{arguments}\"}}}}]}}}}]}}\n\n"
            );
            stream.push(&e, piece.as_bytes()).unwrap();
        }
        let round = stream.finish();
        assert_eq!(round.tool_calls[0].name, "get_weather");
        assert_eq!(round.tool_calls[0].arguments, r#"{"city": "Paris"}"#);
    }

    #[test]
    fn an_error_event_mid_stream_and_a_broken_chunk_are_provider_errors() {
        let e = endpoint();
        let mut stream = ChatStream::default();
        let error = stream
            .push(
                &e,
                b"data: {\"error\":{\"message\":\"model crashed\",\"type\":\"server_error\"}}\n\n",
            )
            .unwrap_err();
        assert_eq!(error.status(), crate::error::VbStatus::VB_ERR_PROVIDER);
        assert!(
            error.message().contains("model crashed"),
            "{}",
            error.message()
        );
        let mut stream = ChatStream::default();
        let broken = stream.push(&e, b"data: {\"choices\":[\n\n").unwrap_err();
        assert!(
            broken.message().contains("unreadable completion chunk"),
            "{}",
            broken.message()
        );
    }

    #[test]
    fn a_whole_completion_is_read_as_well() {
        let e = endpoint();
        let round = whole_completion(
            &e,
            br#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"","type":"function","function":{"name":"t","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        )
        .unwrap();
        assert_eq!(round.text, "");
        assert_eq!(round.tool_calls[0].id, "call_0");
        assert_eq!(round.tool_calls[0].name, "t");
    }

    #[test]
    fn openai_itself_needs_a_key_a_self_hosted_server_does_not() {
        if std::env::var_os(KEY_ENV).is_some() {
            return; // a developer's own key would make both work
        }
        let missing = ChatClient::new("agent", None, None, None, RetryConfig::default())
            .err()
            .unwrap();
        assert!(
            missing.message().starts_with("agent.api_key: missing"),
            "{}",
            missing.message()
        );
        let local = ChatClient::new(
            "agent",
            None,
            Some("http://127.0.0.1:8080"),
            None,
            RetryConfig::default(),
        )
        .unwrap();
        assert_eq!(local.url(), "http://127.0.0.1:8080/v1/chat/completions");
    }
}
