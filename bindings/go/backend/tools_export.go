package backend

// The C side of Config.Tools, exported to C (tools.go adapts it to the exact VbTool call type).
// It runs on an engine agent worker thread.

/*
#include <stdlib.h>
#include "voicebackend.h"
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// toolFromHandle resolves user_data; nil for a stale handle (a bug) instead of a panic in C's
// stack.
func toolFromHandle(userData unsafe.Pointer) (ht *hostTool) {
	defer func() {
		if recover() != nil {
			ht = nil
		}
	}()
	ht, _ = cgo.Handle(uintptr(userData)).Value().(*hostTool)
	return ht
}

// vbgoToolCall is VbTool.call: it runs the Go tool and writes its answer, or the reason it
// failed, with vb_tool_result_write.
//
//export vbgoToolCall
func vbgoToolCall(userData unsafe.Pointer, argumentsJSON *C.char, result *C.VbToolResult) C.enum_VbStatus {
	ht := toolFromHandle(userData)
	if ht == nil {
		return C.VB_ERR_INTERNAL
	}
	text, status := ht.run(C.GoString(argumentsJSON))
	if status != C.VB_OK {
		// The reason: whatever the error says, made writable.
		text = strings.ReplaceAll(strings.ToValidUTF8(text, "\uFFFD"), "\x00", "\uFFFD")
	} else if !utf8.ValidString(text) || strings.IndexByte(text, 0) >= 0 {
		text = fmt.Sprintf("the tool %s answered with text that is not valid UTF-8 or contains a NUL byte", ht.tool.Name)
		status = C.VB_ERR_INVALID_ARGUMENT
	}
	if text == "" {
		return status
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	if written := C.vb_tool_result_write(result, ctext); written != C.VB_OK && status == C.VB_OK {
		return written
	}
	return status
}
