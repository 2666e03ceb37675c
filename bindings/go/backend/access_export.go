package backend

// The C side of Config.AuthHook and Config.RateLimiter, exported to C (access.go adapts them to
// the exact VbAuthHook and VbRateLimiter types). They run on the OS thread of the C call that
// creates a session.

/*
#include <stdint.h>
#include "voicebackend.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/cgo"
	"strings"
	"time"
	"unsafe"
)

// hooksFromHandle resolves user_data; nil for a stale handle (a bug) instead of a panic in C's
// stack.
func hooksFromHandle(userData unsafe.Pointer) (h *hostHooks) {
	defer func() {
		if recover() != nil {
			h = nil
		}
	}()
	h, _ = cgo.Handle(uintptr(userData)).Value().(*hostHooks)
	return h
}

//export vbgoAuthenticate
func vbgoAuthenticate(userData unsafe.Pointer, token, metadataJSON, userIDOut *C.char, capacity C.size_t) (status C.enum_VbStatus) {
	h := hooksFromHandle(userData)
	if h == nil {
		return C.VB_ERR_INTERNAL
	}
	hc := h.current()
	defer hc.recoverPanic(&status, "AuthHook.Authenticate")
	var metadata map[string]any
	if err := json.Unmarshal([]byte(C.GoString(metadataJSON)), &metadata); err != nil {
		return hc.refuse(fmt.Errorf("session metadata: %w", err), C.VB_ERR_INTERNAL)
	}
	res, err := h.auth.Authenticate(hc.ctx, C.GoString(token), metadata)
	switch {
	case err != nil:
		return hc.refuse(err, C.VB_ERR_UNAUTHORIZED)
	case res == nil || !res.Authorized:
		return C.VB_ERR_UNAUTHORIZED
	case len(res.UserID) >= int(capacity) || strings.IndexByte(res.UserID, 0) >= 0:
		return hc.refuse(fmt.Errorf("AuthResult.UserID is longer than %d bytes or contains a NUL byte", int(capacity)-1), C.VB_ERR_UNAUTHORIZED)
	}
	out := unsafe.Slice((*byte)(unsafe.Pointer(userIDOut)), int(capacity))
	out[copy(out, res.UserID)] = 0
	return C.VB_OK
}

//export vbgoAuthorize
func vbgoAuthorize(userData unsafe.Pointer, userID, operation *C.char) (status C.enum_VbStatus) {
	h := hooksFromHandle(userData)
	if h == nil {
		return C.VB_ERR_INTERNAL
	}
	hc := h.current()
	defer hc.recoverPanic(&status, "AuthHook.Authorize")
	ok, err := h.auth.Authorize(hc.ctx, C.GoString(userID), C.GoString(operation))
	switch {
	case err != nil:
		return hc.refuse(err, C.VB_ERR_UNAUTHORIZED)
	case !ok:
		return C.VB_ERR_UNAUTHORIZED
	}
	return C.VB_OK
}

//export vbgoAllow
func vbgoAllow(userData unsafe.Pointer, key *C.char) (status C.enum_VbStatus) {
	h := hooksFromHandle(userData)
	if h == nil {
		return C.VB_ERR_INTERNAL
	}
	hc := h.current()
	defer hc.recoverPanic(&status, "RateLimiter.Allow")
	ok, err := h.limiter.Allow(hc.ctx, C.GoString(key))
	switch {
	case err != nil:
		return hc.refuse(err, C.VB_ERR_RATE_LIMITED)
	case !ok:
		return C.VB_ERR_RATE_LIMITED
	}
	return C.VB_OK
}

//export vbgoWait
func vbgoWait(userData unsafe.Pointer, key *C.char, timeoutMs C.uint32_t) (status C.enum_VbStatus) {
	h := hooksFromHandle(userData)
	if h == nil {
		return C.VB_ERR_INTERNAL
	}
	hc := h.current()
	defer hc.recoverPanic(&status, "RateLimiter.Wait")
	ctx, cancel := context.WithTimeout(hc.ctx, time.Duration(timeoutMs)*time.Millisecond)
	defer cancel()
	if err := h.limiter.Wait(ctx, C.GoString(key)); err != nil {
		return hc.refuse(err, C.VB_ERR_RATE_LIMITED)
	}
	return C.VB_OK
}
