//! Running the host's tools for the built-in agent: each call on a blocking worker thread (a tool
//! may block; never the realtime thread), within `tool_timeout_ms`, its panic caught. Whatever
//! goes wrong — an unknown tool, arguments that are not a JSON object, a tool that fails, panics
//! or hangs — becomes an error the model reads as the call's result and the host hears of as a
//! `VB_EVENT_ERROR`; the conversation goes on.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use crate::agent::Tool;
use crate::error::{Error, VbStatus};
use crate::provider::network::openai::ToolCall;

/// How often a wait for a tool looks whether the reply was cancelled.
const CANCEL_CHECK: Duration = Duration::from_millis(20);

/// How a tool call ended.
#[derive(Debug)]
pub enum ToolOutcome {
    /// The tool's result.
    Answered(String),
    /// What went wrong (the model reads it; the host gets it as an event).
    Failed(Error),
    /// Barge-in cancelled the reply while the tool ran; its result no longer matters.
    Cancelled,
}

/// Runs `call` with the tool of that name among `tools`. `slow` is called once if the tool has
/// not answered after `filler_after` (the agent says its filler then). A tool still running after
/// `timeout` is left to finish on its thread (a thread cannot be stopped from outside) and the
/// call fails with `VB_ERR_TIMEOUT`. Runs on the backend's runtime.
pub async fn run_tool(
    tools: &[Tool],
    call: &ToolCall,
    timeout: Duration,
    filler_after: Duration,
    cancelled: &(dyn Fn() -> bool + Sync),
    slow: &mut dyn FnMut(),
) -> ToolOutcome {
    let Some(tool) = tools.iter().find(|t| t.name == call.name) else {
        return ToolOutcome::Failed(Error::new(
            VbStatus::VB_ERR_NOT_FOUND,
            format!(
                "the model called a tool named '{}', which is not offered (offered: {})",
                call.name,
                super::tool_names(tools)
            ),
        ));
    };
    let arguments = if call.arguments.trim().is_empty() {
        "{}".to_owned() // some servers send no arguments for a tool without parameters
    } else {
        call.arguments.clone()
    };
    if let Err(e) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&arguments) {
        return ToolOutcome::Failed(Error::invalid_argument(format!(
            "the model called tool '{}' with arguments that are not a JSON object ({e})",
            call.name
        )));
    }
    let handler = tool.handler.clone();
    let name = tool.name.clone();
    let task = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(AssertUnwindSafe(|| handler(&arguments)))
    });
    tokio::pin!(task);
    let started = tokio::time::Instant::now();
    let mut filler_due = true;
    let mut tick = tokio::time::interval(CANCEL_CHECK);
    loop {
        tokio::select! {
            joined = &mut task => {
                return match joined {
                    Ok(Ok(Ok(result))) => ToolOutcome::Answered(result),
                    Ok(Ok(Err(e))) => ToolOutcome::Failed(Error::new(
                        e.status(),
                        format!("tool '{name}' failed: {}", e.message()),
                    )),
                    Ok(Err(_)) | Err(_) => ToolOutcome::Failed(Error::new(
                        VbStatus::VB_ERR_PANIC,
                        format!("tool '{name}' panicked"),
                    )),
                };
            }
            _ = tick.tick() => {
                if cancelled() {
                    return ToolOutcome::Cancelled;
                }
                let waited = started.elapsed();
                if filler_due && waited >= filler_after {
                    filler_due = false;
                    slow();
                }
                if waited >= timeout {
                    return ToolOutcome::Failed(Error::new(
                        VbStatus::VB_ERR_TIMEOUT,
                        format!(
                            "tool '{name}' did not answer within {} ms (agent.tool_timeout_ms)",
                            timeout.as_millis()
                        ),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tool(
        name: &str,
        handler: impl Fn(&str) -> crate::error::Result<String> + Send + Sync + 'static,
    ) -> Tool {
        Tool {
            name: name.into(),
            description: String::new(),
            parameters: serde_json::json!({"type": "object"}),
            handler: Arc::new(handler),
        }
    }

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: "call_0".into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    async fn run(tools: &[Tool], call: &ToolCall, timeout_ms: u64) -> (ToolOutcome, u32) {
        let mut fillers = 0;
        let outcome = run_tool(
            tools,
            call,
            Duration::from_millis(timeout_ms),
            Duration::from_millis(100),
            &|| false,
            &mut || fillers += 1,
        )
        .await;
        (outcome, fillers)
    }

    fn failed(outcome: ToolOutcome) -> Error {
        match outcome {
            ToolOutcome::Failed(e) => e,
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_tool_gets_its_arguments_and_the_model_its_result() {
        let echo = tool("echo", |args| Ok(format!("got {args}")));
        let (outcome, fillers) = run(&[echo], &call("echo", r#"{"x":1}"#), 1000).await;
        assert!(
            matches!(outcome, ToolOutcome::Answered(ref r) if r == r#"got {"x":1}"#),
            "{outcome:?}"
        );
        assert_eq!(fillers, 0);
    }

    #[tokio::test]
    async fn every_way_a_call_goes_wrong_is_a_clear_error() {
        let tools = [
            tool("fails", |_| {
                Err(Error::new(VbStatus::VB_ERR_PROVIDER, "no such city"))
            }),
            tool("panics", |_| panic!("tool bug")),
            tool("hangs", |_| {
                std::thread::sleep(Duration::from_millis(600));
                Ok("late".into())
            }),
        ];
        let unknown = failed(run(&tools, &call("weather", "{}"), 1000).await.0);
        assert_eq!(unknown.status(), VbStatus::VB_ERR_NOT_FOUND);
        assert!(
            unknown
                .message()
                .contains("'weather', which is not offered (offered: fails, panics, hangs)"),
            "{}",
            unknown.message()
        );
        let malformed = failed(run(&tools, &call("fails", "{\"city\": "), 1000).await.0);
        assert_eq!(malformed.status(), VbStatus::VB_ERR_INVALID_ARGUMENT);
        assert!(
            malformed.message().contains("not a JSON object"),
            "{}",
            malformed.message()
        );
        let error = failed(run(&tools, &call("fails", "{}"), 1000).await.0);
        assert_eq!(error.status(), VbStatus::VB_ERR_PROVIDER);
        assert_eq!(error.message(), "tool 'fails' failed: no such city");
        let panic = failed(run(&tools, &call("panics", ""), 1000).await.0);
        assert_eq!(panic.status(), VbStatus::VB_ERR_PANIC);
        let (outcome, fillers) = run(&tools, &call("hangs", "{}"), 300).await;
        let timeout = failed(outcome);
        assert_eq!(timeout.status(), VbStatus::VB_ERR_TIMEOUT);
        assert!(
            timeout.message().contains("within 300 ms"),
            "{}",
            timeout.message()
        );
        assert_eq!(fillers, 1, "a slow tool gets one filler");
    }

    #[tokio::test]
    async fn barge_in_stops_waiting_for_a_tool() {
        let hangs = tool("hangs", |_| {
            std::thread::sleep(Duration::from_millis(500));
            Ok("late".into())
        });
        let started = std::time::Instant::now();
        let outcome = run_tool(
            &[hangs],
            &call("hangs", "{}"),
            Duration::from_secs(5),
            Duration::from_secs(5),
            &|| started.elapsed() > Duration::from_millis(50),
            &mut || {},
        )
        .await;
        assert!(matches!(outcome, ToolOutcome::Cancelled), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_millis(400));
    }
}
