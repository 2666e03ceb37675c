//! [`ChatAgent`]: one user turn through the chat model — the conversation as context, the answer
//! streamed into the reply, tool calls answered in rounds.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use super::tools::{ToolOutcome, run_tool};
use crate::agent::{Agent, Reply, Tool, Turn};
use crate::error::{Error, Result, VbStatus};
use crate::provider::network::openai::{ChatClient, ToolCall};

/// The built-in agent over a Chat Completions server. Its calls run on the agent worker threads
/// of the backend's runtime (they block on the network), never on the realtime thread.
pub struct ChatAgent {
    pub(super) client: ChatClient,
    pub(super) model: String,
    pub(super) system_prompt: String,
    pub(super) temperature: Option<f64>,
    pub(super) max_tokens: u32,
    pub(super) context_tokens: u32,
    pub(super) tools: Vec<Tool>,
    /// `tool_choice` for the first round (`None`: the server's default, auto).
    pub(super) tool_choice: Option<Value>,
    pub(super) tool_timeout: Duration,
    pub(super) filler: String,
    pub(super) filler_after: Duration,
    pub(super) max_tool_rounds: u32,
}

impl Agent for ChatAgent {
    fn on_transcript(&self, transcript: &str, reply: &mut Reply) -> Result<()> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::internal("the built-in agent runs on the backend's agent worker threads only")
        })?;
        let cancel = reply.cancel_flag();
        let cancelled = move || cancel.load(Ordering::Acquire);
        let mut messages = self.context(&reply.history(), transcript);
        let mut filler_said = false;
        for round in 0..=self.max_tool_rounds {
            let body = self.request(&messages, round);
            let mut write_failed = false;
            let answer =
                runtime.block_on(self.client.complete(&body, &cancelled, &mut |text| {
                    // A write fails only once the reply is cancelled or over: stop quietly.
                    write_failed |= reply.write(text).is_err();
                }))?;
            let Some(answer) = answer else {
                return Ok(()); // barge-in: the request is dropped, the host knows
            };
            if write_failed || cancelled() {
                return Ok(());
            }
            if answer.tool_calls.is_empty() {
                return reply.end();
            }
            if round == self.max_tool_rounds {
                break;
            }
            messages.push(assistant_with_calls(&answer.text, &answer.tool_calls));
            for call in &answer.tool_calls {
                let outcome = runtime.block_on(run_tool(
                    &self.tools,
                    call,
                    self.tool_timeout,
                    self.filler_after,
                    &cancelled,
                    &mut || {
                        if !filler_said && !self.filler.is_empty() {
                            filler_said = true;
                            let _ = reply.write(&format!("{} ", self.filler));
                        }
                    },
                ));
                let content = match outcome {
                    ToolOutcome::Cancelled => return Ok(()),
                    ToolOutcome::Answered(result) => result,
                    ToolOutcome::Failed(error) => {
                        let text = format!("error: {}", error.message());
                        reply.report(error);
                        text
                    }
                };
                messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": content}));
            }
        }
        let error = Error::new(
            VbStatus::VB_ERR_PROVIDER,
            format!(
                "the model still asked for tools after {} rounds (agent.max_tool_rounds)",
                self.max_tool_rounds
            ),
        );
        reply.report(error);
        reply.end()
    }
}

impl ChatAgent {
    /// The messages of a turn: the system prompt, as much of the conversation as fits the
    /// context window (newest turns first to go in, oldest left out), and the new transcript.
    fn context(&self, history: &[Turn], transcript: &str) -> Vec<Value> {
        // About four characters a token, as OpenAI's own rule of thumb has it; the answer's room
        // and the tools' schemas come off the window first.
        let tools_chars: usize = self
            .tools
            .iter()
            .map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len())
            .sum();
        let window = (self.context_tokens as usize).saturating_sub(self.max_tokens as usize) * 4;
        let mut budget =
            window.saturating_sub(self.system_prompt.len() + transcript.len() + tools_chars);
        let mut earlier = Vec::new();
        for turn in history.iter().rev() {
            let (Some(said), Some(answered)) = (&turn.transcript, &turn.reply) else {
                continue; // withheld by the privacy policy: nothing to give the model
            };
            let cost = said.len() + answered.len() + 32;
            if cost > budget {
                break;
            }
            budget -= cost;
            earlier.push(json!({"role": "assistant", "content": answered}));
            earlier.push(json!({"role": "user", "content": said}));
        }
        let mut messages = vec![json!({"role": "system", "content": self.system_prompt})];
        messages.extend(earlier.into_iter().rev());
        messages.push(json!({"role": "user", "content": transcript}));
        messages
    }

    /// The request of round `round` (0 first): tools offered each time, `tool_choice` forced
    /// only in the first (a forced choice every round would never let the model speak).
    fn request(&self, messages: &[Value], round: u32) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
        });
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        if !self.tools.is_empty() {
            body["tools"] = self
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect();
            if let (0, Some(choice)) = (round, &self.tool_choice) {
                body["tool_choice"] = choice.clone();
            }
        }
        body
    }
}

/// The assistant's message that asked for `calls`, as the API wants it back in the context.
fn assistant_with_calls(text: &str, calls: &[ToolCall]) -> Value {
    json!({
        "role": "assistant",
        // A string even when empty: servers that render the context with the model's chat
        // template (llama.cpp) fail on a null content.
        "content": text,
        "tool_calls": calls.iter().map(|c| json!({
            "id": c.id, "type": "function",
            "function": {"name": c.name, "arguments": c.arguments}})).collect::<Vec<_>>(),
    })
}
