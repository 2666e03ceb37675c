package backend

// The C side of Config.OnSession, exported to C (incoming.go adapts it to the exact VbIncoming
// type). It runs on an engine I/O thread.

/*
#include "voicebackend.h"
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// backendFromHandle resolves user_data; nil for a stale handle (a bug) instead of a panic in
// C's stack.
func backendFromHandle(userData unsafe.Pointer) (b *Backend) {
	defer func() {
		if recover() != nil {
			b = nil
		}
	}()
	b, _ = cgo.Handle(uintptr(userData)).Value().(*Backend)
	return b
}

//export vbgoOnSession
func vbgoOnSession(userData unsafe.Pointer, session *C.VbSession, infoJSON *C.char, callbacks *C.VbCallbacks) C.enum_VbStatus {
	b := backendFromHandle(userData)
	if b == nil {
		return C.VB_ERR_INVALID_STATE
	}
	return b.acceptIncoming(session, C.GoString(infoJSON), callbacks)
}
