package backend

// Tools of the built-in agent (Config.Tools), installed in the engine with vb_backend_add_tool
// before the backend starts. Each tool's user_data is a runtime/cgo.Handle of its *hostTool; the
// engine calls it on an agent worker thread (tools_export.go), possibly for several sessions at
// once.

/*
#include <stdint.h>
#include <stdlib.h>
#include "voicebackend.h"

// Exported from tools_export.go (cgo writes it without const).
extern enum VbStatus vbgoToolCall(void *user_data, char *arguments_json, VbToolResult *result);

static enum VbStatus vbgo_tool_call(void *user_data, const char *arguments_json, VbToolResult *result) {
	return vbgoToolCall(user_data, (char *)arguments_json, result);
}

// user_data is a runtime/cgo.Handle (an integer), never a Go pointer. The engine copies the
// struct and its strings.
static enum VbStatus vbgo_add_tool(VbBackend *backend, const char *name, const char *description,
                                   const char *parameters_json, uintptr_t handle) {
	VbTool tool;
	tool.name = name;
	tool.description = description;
	tool.parameters_json = parameters_json;
	tool.call = vbgo_tool_call;
	tool.user_data = (void *)handle;
	return vb_backend_add_tool(backend, &tool);
}
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/cgo"
)

// Tool is a function the backend's built-in agent may call while it answers (Config.Tools).
// The built-in agent answers the sessions created without an agent callback when the backend's
// "agent" section configures one (Config.Agent); the model sees Name, Description and the JSON
// schema Parameters, and calls the tool with arguments that are a JSON object.
type Tool struct {
	// Name: 1-64 characters of [A-Za-z0-9_-], unique per backend.
	Name string
	// Description says what the tool does and when to use it, for the model.
	Description string
	// Parameters is the JSON schema of the arguments, an object, e.g.
	// {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}.
	// nil means {"type":"object","properties":{}} (no arguments).
	Parameters json.RawMessage
	// Call runs the tool with the model's arguments (a JSON object, as text) and returns the
	// answer the model reads (JSON or plain text). It runs on an engine agent worker thread
	// (never the realtime thread), possibly concurrently for several sessions, and may block up
	// to the agent's tool_timeout_ms (default 10 s); after that the model is told the tool
	// timed out, while Call keeps its thread until it returns. ctx is the backend's: it is
	// cancelled when the backend is stopped or closed, not per call (the engine gives a call
	// no cancellation of its own), so bound slow work with a timeout of your own.
	//
	// An error's message is what the model reads as the result; the session gets an EventError
	// (its Code is the error's *BackendError Code, else ErrCodeProvider) and the conversation
	// goes on. A panic is recovered and treated like an error (ErrCodePanic).
	Call func(ctx context.Context, arguments string) (string, error)
}

// hostTool is one Tool as the engine's C side sees it.
type hostTool struct {
	tool   Tool
	ctx    context.Context // the backend's: cancelled by Stop and Close
	handle cgo.Handle
}

// installTools offers b.cfg.Tools to the engine backend b.c, which has not started. On an error
// the tools added so far stay in the engine (the caller frees it) and their handles are kept in
// b.tools for release.
func installTools(op string, b *Backend) error {
	for i, t := range b.cfg.Tools {
		if t.Call == nil {
			return &BackendError{Op: op, Code: ErrCodeInvalidArgument,
				Message: fmt.Sprintf("Config.Tools[%d] (%q): Call is nil", i, t.Name)}
		}
		params := string(t.Parameters)
		if len(t.Parameters) == 0 {
			params = `{"type":"object","properties":{}}`
		}
		name, err := cString(op, "Tool.Name", t.Name)
		if err != nil {
			return err
		}
		defer freeCString(name)
		description, err := cString(op, "Tool.Description", t.Description)
		if err != nil {
			return err
		}
		defer freeCString(description)
		parameters, err := cString(op, "Tool.Parameters", params)
		if err != nil {
			return err
		}
		defer freeCString(parameters)
		ht := &hostTool{tool: t, ctx: b.ctx}
		ht.handle = cgo.NewHandle(ht)
		handle := C.uintptr_t(ht.handle)
		if err := call(op, func() C.enum_VbStatus {
			return C.vbgo_add_tool(b.c, name, description, parameters, handle)
		}); err != nil {
			ht.handle.Delete()
			if be, ok := err.(*BackendError); ok {
				be.Message = fmt.Sprintf("Config.Tools[%d] (%q): %s", i, t.Name, be.Message)
			}
			return err
		}
		b.tools = append(b.tools, ht.handle)
	}
	return nil
}

// releaseTools frees the tools' handles once the engine backend is freed (no call can run any
// more).
func (b *Backend) releaseTools() {
	for _, h := range b.tools {
		h.Delete()
	}
	b.tools = nil
}

// run calls the tool, turning an error or a panic into the status and reason for the engine.
func (ht *hostTool) run(arguments string) (answer string, status C.enum_VbStatus) {
	defer func() {
		if r := recover(); r != nil {
			answer = fmt.Sprintf("the tool %s panicked: %v", ht.tool.Name, r)
			status = C.VB_ERR_PANIC
		}
	}()
	answer, err := ht.tool.Call(ht.ctx, arguments)
	if err != nil {
		return err.Error(), toolStatus(err)
	}
	return answer, C.VB_OK
}

// toolStatus is the status for a tool's error: a *BackendError's code, else VB_ERR_PROVIDER.
func toolStatus(err error) C.enum_VbStatus {
	var be *BackendError
	if errors.As(err, &be) && be.Code > 0 && int(be.Code) < len(codeNames) {
		return C.enum_VbStatus(be.Code)
	}
	return C.VB_ERR_PROVIDER
}
