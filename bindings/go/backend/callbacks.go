package backend

// The C callbacks of a session, exported to C. user_data is a runtime/cgo.Handle of the
// *Session: C never holds a Go pointer. The static adapters that give them the exact
// VbCallbacks signatures live in cgo.go's preamble (a file with //export may only declare).

/*
#include "voicebackend.h"
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// vbgoOnTranscript is VbCallbacks.on_transcript: it runs on an engine agent worker thread.
//
//export vbgoOnTranscript
func vbgoOnTranscript(userData unsafe.Pointer, session *C.VbSession, transcript *C.char, reply *C.VbReply) C.enum_VbStatus {
	s := sessionFromHandle(userData)
	if s == nil {
		return C.VB_ERR_INVALID_STATE
	}
	return s.runAgent(C.GoString(transcript), reply)
}

// vbgoOnEvent is VbCallbacks.on_event: it runs on the session's event thread and never blocks.
//
//export vbgoOnEvent
func vbgoOnEvent(userData unsafe.Pointer, event *C.VbEvent) {
	if s := sessionFromHandle(userData); s != nil {
		s.deliver(event)
	}
}

// sessionFromHandle resolves user_data. The binding frees a handle only once no callback can
// run any more; a stale one (which would be a bug) yields nil instead of a panic in C's stack.
func sessionFromHandle(userData unsafe.Pointer) (s *Session) {
	defer func() {
		if recover() != nil {
			s = nil
		}
	}()
	s, _ = cgo.Handle(uintptr(userData)).Value().(*Session)
	return s
}
