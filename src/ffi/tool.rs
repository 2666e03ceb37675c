//! C ABI of the host's tools for the built-in agent: `VbTool`, `vb_backend_add_tool`, and the
//! `VbToolResult` a tool writes its answer into.

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use super::backend::VbBackend;
use super::{HostPtr, guard, required_ref, required_str};
use crate::agent::Tool;
use crate::error::{Error, Result, VbStatus};

/// Where a tool writes its answer (`vb_tool_result_write`). Valid only during the `call` it is
/// handed to.
pub struct VbToolResult {
    text: String,
}

/// A tool the host offers the built-in agent (the backend's `agent` section): the model sees
/// `name`, `description` and the JSON schema `parameters_json`, and may call it while it
/// answers. `call` runs on an agent worker thread (never the realtime thread; it may block, up
/// to the agent's `tool_timeout_ms`, after which the model is told the tool timed out) and may
/// run for several sessions at once.
#[repr(C)]
pub struct VbTool {
    /// `[A-Za-z0-9_-]`, 1–64 characters, unique per backend.
    pub name: *const c_char,
    /// What the tool does and when to use it, for the model.
    pub description: *const c_char,
    /// The JSON schema of the arguments, an object, e.g. `{"type":"object","properties":{}}`.
    pub parameters_json: *const c_char,
    /// Runs the tool with the model's arguments (a JSON object, as text). Write the answer with
    /// `vb_tool_result_write` (JSON or plain text; the model reads it) and return `VB_OK`; on
    /// failure return an error status, with what was written as the reason: the model reads it,
    /// the session gets a `VB_EVENT_ERROR`, the conversation goes on.
    pub call: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            arguments_json: *const c_char,
            result: *mut VbToolResult,
        ) -> VbStatus,
    >,
    /// Passed back to `call`; must stay valid until the backend is freed.
    pub user_data: *mut c_void,
}

/// `call` as it is called: the status read as a plain integer, so that any value is safe.
type RawCallFn = unsafe extern "C" fn(*mut c_void, *const c_char, *mut VbToolResult) -> i32;
type CallFn = unsafe extern "C" fn(*mut c_void, *const c_char, *mut VbToolResult) -> VbStatus;

/// Offers a tool to the backend's built-in agent. The struct and its strings are copied. Only
/// before `vb_backend_start` (`VB_ERR_INVALID_STATE` after); `VB_ERR_INVALID_ARGUMENT` for a
/// NULL field, a name that is not 1–64 of `[A-Za-z0-9_-]` or already added, or parameters that
/// are not a JSON object. Thread-safe.
///
/// # Safety
/// `backend` is NULL or a live backend; `tool` is NULL or a valid struct whose strings are NULL
/// or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_backend_add_tool(
    backend: *mut VbBackend,
    tool: *const VbTool,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let backend = unsafe { required_ref(backend, "backend") }?;
        // SAFETY: forwarded caller contract.
        let tool = unsafe { required_ref(tool, "tool") }?;
        // SAFETY: forwarded caller contract (each string NULL or NUL-terminated).
        let (name, description, parameters) = unsafe {
            (
                required_str(tool.name, "tool->name")?,
                required_str(tool.description, "tool->description")?,
                required_str(tool.parameters_json, "tool->parameters_json")?,
            )
        };
        let parameters: serde_json::Value = serde_json::from_str(parameters).map_err(|e| {
            Error::invalid_argument(format!("tool->parameters_json is not JSON: {e}"))
        })?;
        let call = tool
            .call
            .ok_or_else(|| Error::invalid_argument("tool->call is NULL"))?;
        // SAFETY: `VbStatus` is a `repr(C)` enum returned like a C `int`: the raw type has the
        // same ABI, and reading an integer keeps an out-of-range value defined.
        let call = unsafe { std::mem::transmute::<CallFn, RawCallFn>(call) };
        let user_data = HostPtr(tool.user_data);
        let tool_name = name.to_owned();
        backend.backend.add_tool(Tool {
            name: name.to_owned(),
            description: description.to_owned(),
            parameters,
            handler: Arc::new(move |arguments| call_host(call, user_data, &tool_name, arguments)),
        })
    })
}

/// Calls the host's tool on this (agent worker) thread.
fn call_host(call: RawCallFn, user_data: HostPtr, name: &str, arguments: &str) -> Result<String> {
    let arguments = CString::new(arguments)
        .map_err(|_| Error::invalid_argument("the arguments contain a NUL byte"))?;
    let mut result = VbToolResult {
        text: String::new(),
    };
    // SAFETY: the host's function with its own user_data; the arguments and the result outlive
    // the call, and the result is not used elsewhere meanwhile.
    let raw = unsafe { call(user_data.get(), arguments.as_ptr(), &mut result) };
    match VbStatus::from_raw(raw.into()) {
        Some(VbStatus::VB_OK) => Ok(result.text),
        Some(status) => Err(Error::new(
            status,
            if result.text.is_empty() {
                format!("the host's '{name}' returned {status}")
            } else {
                result.text
            },
        )),
        None => Err(Error::new(
            VbStatus::VB_ERR_INTERNAL,
            format!("the host's '{name}' returned {raw}, which is no VbStatus"),
        )),
    }
}

/// Appends `text` (UTF-8) to a tool's answer. `VB_ERR_INVALID_ARGUMENT` for NULL or invalid
/// UTF-8. Only from within the `call` that was handed `result`.
///
/// # Safety
/// `result` is NULL or the result handed to the running `call`; `text` is NULL or
/// NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_tool_result_write(
    result: *mut VbToolResult,
    text: *const c_char,
) -> VbStatus {
    guard(|| {
        // SAFETY: forwarded caller contract: the live result of the running call, used by
        // nothing else during it.
        let result =
            unsafe { result.as_mut() }.ok_or_else(|| Error::invalid_argument("result is NULL"))?;
        // SAFETY: forwarded caller contract.
        let text = unsafe { required_str(text, "text") }?;
        result.text.push_str(text);
        Ok(())
    })
}
