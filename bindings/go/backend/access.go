package backend

// Admission of new sessions from Go: Config.AuthHook and Config.RateLimiter, installed in the
// engine as a VbAuthHook and a VbRateLimiter whose user_data is a runtime/cgo.Handle of the
// backend's hostHooks. The engine calls them on the OS thread that runs CreateSession's C call,
// so the hooks get CreateSession's ctx, and CreateSession gets the error a hook returned.

/*
#include <stdint.h>
#include "voicebackend.h"

// Exported from access_export.go (cgo writes them without const).
extern enum VbStatus vbgoAuthenticate(void *user_data, char *token, char *metadata_json,
                                      char *user_id_out, size_t user_id_capacity);
extern enum VbStatus vbgoAuthorize(void *user_data, char *user_id, char *operation);
extern enum VbStatus vbgoAllow(void *user_data, char *key);
extern enum VbStatus vbgoWait(void *user_data, char *key, uint32_t timeout_ms);

static enum VbStatus vbgo_authenticate(void *user_data, const char *token, const char *metadata_json,
                                       char *user_id_out, size_t user_id_capacity) {
	return vbgoAuthenticate(user_data, (char *)token, (char *)metadata_json, user_id_out, user_id_capacity);
}

static enum VbStatus vbgo_authorize(void *user_data, const char *user_id, const char *operation) {
	return vbgoAuthorize(user_data, (char *)user_id, (char *)operation);
}

static enum VbStatus vbgo_allow(void *user_data, const char *key) {
	return vbgoAllow(user_data, (char *)key);
}

static enum VbStatus vbgo_wait(void *user_data, const char *key, uint32_t timeout_ms) {
	return vbgoWait(user_data, (char *)key, timeout_ms);
}

// user_data is a runtime/cgo.Handle (an integer), never a Go pointer.
static enum VbStatus vbgo_set_auth_hook(VbBackend *backend, uintptr_t handle) {
	VbAuthHook hook;
	hook.user_data = (void *)handle;
	hook.authenticate = vbgo_authenticate;
	hook.authorize = vbgo_authorize;
	return vb_backend_set_auth_hook(backend, &hook);
}

static enum VbStatus vbgo_set_rate_limiter(VbBackend *backend, uintptr_t handle) {
	VbRateLimiter limiter;
	limiter.user_data = (void *)handle;
	limiter.allow = vbgo_allow;
	limiter.wait = vbgo_wait;
	return vb_backend_set_rate_limiter(backend, &limiter);
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime/cgo"
	"sync"
)

// Operations that AuthHook.Authorize is asked about.
const (
	OperationSessionCreate = "session.create" // Backend.CreateSession
	OperationSessionResume = "session.resume" // reopening a recovered session
)

// AuthResult is what AuthHook.Authenticate established about a token.
type AuthResult struct {
	// UserID is the token's user; it becomes the session's user id (a SessionConfig.UserID
	// that differs is refused). Must not be empty.
	UserID string
	// Authorized must be true to admit the session; false refuses it like an error does.
	Authorized bool
}

// AuthHook authenticates and authorizes new sessions (Config.AuthHook). It replaces the
// engine's built-in JWT hook (Extra "auth": {"jwt_hs256_secret": …}). A session with an
// AuthToken is admitted only when Authenticate accepts the token and Authorize allows
// OperationSessionCreate; otherwise CreateSession fails with ErrCodeUnauthorized and the
// hook's error as Err, and nothing is created. A *BackendError returned by a hook keeps its
// Code (e.g. ErrCodeConnectionFailed when an auth server is down). Both methods run on the
// goroutine that called CreateSession, with its ctx, and may be called concurrently.
type AuthHook interface {
	Authenticate(ctx context.Context, token string, metadata map[string]any) (*AuthResult, error)
	Authorize(ctx context.Context, userID string, operation string) (bool, error)
}

// RateLimiter admits new sessions by rate (Config.RateLimiter), replacing the engine's
// built-in token buckets (Extra "rate_limit"). key is the session's user id ("" when it has
// none). Allow must not block; false refuses the session with ErrCodeRateLimited. Wait is
// used instead when SessionConfig.AdmissionWait is set: its ctx (CreateSession's) ends at that
// wait; an error refuses. Both run on the goroutine that called CreateSession and may be
// called concurrently.
type RateLimiter interface {
	Allow(ctx context.Context, key string) (bool, error)
	Wait(ctx context.Context, key string) error
}

// hostHooks are a backend's Go hooks, as the engine's C hooks see them.
type hostHooks struct {
	auth    AuthHook
	limiter RateLimiter
	handle  cgo.Handle

	mu    sync.Mutex
	calls map[uintptr]*hookCall // by OS thread: the CreateSession running there
}

// hookCall is one CreateSession as its hooks see it.
type hookCall struct {
	ctx context.Context
	err error // the first error a hook returned
}

// installHooks installs cfg's hooks in a backend that has not started; nil when it has none.
func installHooks(op string, c *C.VbBackend, cfg *Config) (*hostHooks, error) {
	if cfg.AuthHook == nil && cfg.RateLimiter == nil {
		return nil, nil
	}
	h := &hostHooks{auth: cfg.AuthHook, limiter: cfg.RateLimiter, calls: map[uintptr]*hookCall{}}
	h.handle = cgo.NewHandle(h)
	handle := C.uintptr_t(h.handle)
	var err error
	if h.auth != nil {
		err = call(op, func() C.enum_VbStatus { return C.vbgo_set_auth_hook(c, handle) })
	}
	if err == nil && h.limiter != nil {
		err = call(op, func() C.enum_VbStatus { return C.vbgo_set_rate_limiter(c, handle) })
	}
	if err != nil {
		h.handle.Delete()
		return nil, err
	}
	return h, nil
}

// release frees the handle once the engine backend is freed (no hook can run any more).
func (h *hostHooks) release() {
	if h != nil {
		h.handle.Delete()
	}
}

// begin makes ctx the context of hook calls on this OS thread (locked by the caller) until
// end, which returns the first error a hook returned meanwhile.
func (h *hostHooks) begin(ctx context.Context) (end func() error) {
	if h == nil {
		return func() error { return nil }
	}
	tid := threadID()
	hc := &hookCall{ctx: ctx}
	h.mu.Lock()
	h.calls[tid] = hc
	h.mu.Unlock()
	return func() error {
		h.mu.Lock()
		delete(h.calls, tid)
		h.mu.Unlock()
		return hc.err
	}
}

// current is the CreateSession running on this OS thread (a detached one if none is known).
func (h *hostHooks) current() *hookCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hc := h.calls[threadID()]; hc != nil {
		return hc
	}
	return &hookCall{ctx: context.Background()}
}

// refuse records err and returns the status for it: a *BackendError's code, else def.
func (hc *hookCall) refuse(err error, def C.enum_VbStatus) C.enum_VbStatus {
	if hc.err == nil {
		hc.err = err
	}
	var be *BackendError
	if errors.As(err, &be) && be.Code > 0 && int(be.Code) < len(codeNames) {
		return C.enum_VbStatus(be.Code)
	}
	return def
}

// recoverPanic turns a panic of a hook into VB_ERR_PANIC (a panic must not unwind into C).
// Deferred directly by the exported trampolines.
func (hc *hookCall) recoverPanic(status *C.enum_VbStatus, what string) {
	if r := recover(); r != nil {
		*status = hc.refuse(fmt.Errorf("%s panicked: %v", what, r), C.VB_ERR_PANIC)
	}
}
