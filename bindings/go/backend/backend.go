package backend

/*
#include <stdint.h>
#include <stdlib.h>
#include "voicebackend.h"
*/
import "C"

import (
	"context"
	"math"
	"runtime/cgo"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// HealthState is the verdict of a health check.
type HealthState string

const (
	// HealthStatusHealthy: running, below 90% of the session limit, no audio lost since the
	// previous check.
	HealthStatusHealthy HealthState = "healthy"
	// HealthStatusDegraded: running, but near the session limit, or audio was lost or late
	// since the previous check.
	HealthStatusDegraded HealthState = "degraded"
	// HealthStatusUnhealthy: not running (not started, or stopped).
	HealthStatusUnhealthy HealthState = "unhealthy"
)

// HealthStatus is a health snapshot (vb_backend_health). "Since the previous check" is per
// backend: each HealthCheck starts a new interval.
type HealthStatus struct {
	Status    HealthState
	LastCheck time.Time
	// Counters over all sessions since the backend started.
	ActiveSessions          int
	FramesProcessed         uint64
	FramesDropped           uint64 // input overruns and pipeline stalls that lost audio, in frames
	DeadlineMisses          uint64 // frames processed later than one frame period after they arrived
	RealtimeThreadsElevated int    // running sessions whose realtime thread got SCHED_FIFO
	// Network transports (LiveKit): audio packets received, packets that never arrived in time,
	// and 20 ms frames the decoders filled in (concealment or in-band FEC).
	MediaPacketsReceived uint64
	MediaPacketsLost     uint64
	MediaFramesConcealed uint64
	// Details holds the same counters by their engine names, for generic health endpoints.
	Details map[string]any
}

// Backend is one configured engine (a VbBackend). Its methods are safe for concurrent use.
type Backend struct {
	cfg *Config

	// life guards c: C calls hold it for reading, Close holds it for writing to free.
	life sync.RWMutex
	c    *C.VbBackend

	// stopping serializes an engine-wide stop (vb_backend_stop / vb_backend_free, held for
	// writing) with freeing single sessions (Session.Close, held for reading): while the engine
	// stops every session it may still deliver their last callbacks, so their handles must live.
	stopping sync.RWMutex

	// hooks are the Go auth hook and rate limiter (nil without either); freed after c.
	hooks *hostHooks
	// incoming is the handle of Config.OnSession's VbIncoming (0 without one); freed after c.
	incoming cgo.Handle
	// tools are the handles of Config.Tools as the engine holds them; freed after c.
	tools []cgo.Handle
	// ctx is OnSession's context; cancelled by Stop and Close.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	refuse   bool // Close has begun: no new sessions
	sessions map[*Session]struct{}

	closing atomic.Bool
}

func newBackend(c *C.VbBackend, cfg *Config, hooks *hostHooks) *Backend {
	b := &Backend{c: c, cfg: cfg, hooks: hooks, sessions: map[*Session]struct{}{}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

func closedBackend(op string) error {
	return &BackendError{Op: op, Code: ErrCodeInvalidState, Message: "the backend is closed"}
}

// GetConfig returns a copy of the configuration the backend was created with.
func (b *Backend) GetConfig() *Config {
	c := *b.cfg
	return &c
}

// Start starts the backend's I/O runtime (vb_backend_start); sessions can be created
// afterwards. ErrCodeInvalidState when already started or stopped.
func (b *Backend) Start(ctx context.Context) error {
	const op = "Backend.Start"
	if err := ctxErr(ctx); err != nil {
		return err
	}
	b.life.RLock()
	defer b.life.RUnlock()
	if b.c == nil {
		return closedBackend(op)
	}
	return call(op, func() C.enum_VbStatus { return C.vb_backend_start(b.c) })
}

// Stop stops the backend gracefully (vb_backend_stop): new sessions are refused, replies in
// flight may finish until ctx's deadline (5 s without one), then every session stops; their
// Events and ReceiveAudio channels close. Agent callbacks see their ctx cancelled. The backend
// cannot be started again; Close it to free it.
func (b *Backend) Stop(ctx context.Context) error {
	const op = "Backend.Stop"
	drain := defaultDrain
	if ctx != nil {
		if deadline, ok := ctx.Deadline(); ok {
			drain = max(time.Until(deadline), 0)
		}
	}
	ms := min(drain.Milliseconds(), math.MaxUint32)
	b.cancel()
	b.stopping.Lock()
	defer b.stopping.Unlock()
	b.life.RLock()
	defer b.life.RUnlock()
	if b.c == nil {
		return closedBackend(op)
	}
	// Replies in flight may finish during the drain; then agent callbacks see their ctx
	// cancelled, so that the engine's stop (which waits for them) cannot hang on one.
	timer := time.AfterFunc(time.Duration(ms)*time.Millisecond, func() {
		for _, s := range b.snapshot() {
			s.cancelAgents()
		}
	})
	err := call(op, func() C.enum_VbStatus { return C.vb_backend_stop(b.c, C.uint32_t(ms)) })
	timer.Stop()
	// The engine stopped every session and delivered their last events: finish the Go side.
	for _, s := range b.snapshot() {
		s.cancelAgents()
		s.finish()
	}
	return err
}

// Close stops the backend without draining, closes every session still open and frees the
// engine backend (vb_backend_free). Idempotent; always returns nil (a Close that finds another
// one in progress returns at once).
func (b *Backend) Close() error {
	if !b.closing.CompareAndSwap(false, true) {
		return nil
	}
	b.mu.Lock()
	b.refuse = true
	b.mu.Unlock()
	b.cancel()
	for _, s := range b.snapshot() {
		_ = s.Close()
	}
	b.stopping.Lock()
	b.life.Lock()
	C.vb_backend_free(b.c)
	b.c = nil
	b.hooks.release()
	b.releaseTools()
	if b.incoming != 0 {
		b.incoming.Delete()
	}
	b.life.Unlock()
	b.stopping.Unlock()
	return nil
}

// HealthCheck returns a health snapshot (vb_backend_health).
func (b *Backend) HealthCheck(ctx context.Context) (*HealthStatus, error) {
	const op = "Backend.HealthCheck"
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	b.life.RLock()
	defer b.life.RUnlock()
	if b.c == nil {
		return nil, closedBackend(op)
	}
	var h C.VbHealth
	if err := call(op, func() C.enum_VbStatus { return C.vb_backend_health(b.c, &h) }); err != nil {
		return nil, err
	}
	hs := &HealthStatus{
		LastCheck:               time.Now(),
		ActiveSessions:          int(h.active_sessions),
		FramesProcessed:         uint64(h.frames_processed),
		FramesDropped:           uint64(h.frames_dropped),
		DeadlineMisses:          uint64(h.deadline_misses),
		RealtimeThreadsElevated: int(h.realtime_threads_elevated),
		MediaPacketsReceived:    uint64(h.media_packets_received),
		MediaPacketsLost:        uint64(h.media_packets_lost),
		MediaFramesConcealed:    uint64(h.media_frames_concealed),
	}
	switch h.status {
	case C.VB_HEALTH_HEALTHY:
		hs.Status = HealthStatusHealthy
	case C.VB_HEALTH_DEGRADED:
		hs.Status = HealthStatusDegraded
	default:
		hs.Status = HealthStatusUnhealthy
	}
	hs.Details = map[string]any{
		"active_sessions":           hs.ActiveSessions,
		"frames_processed":          hs.FramesProcessed,
		"frames_dropped":            hs.FramesDropped,
		"deadline_misses":           hs.DeadlineMisses,
		"realtime_threads_elevated": hs.RealtimeThreadsElevated,
		"media_packets_received":    hs.MediaPacketsReceived,
		"media_packets_lost":        hs.MediaPacketsLost,
		"media_frames_concealed":    hs.MediaFramesConcealed,
	}
	return hs, nil
}

// GetActiveSessionCount returns the number of sessions created and not yet stopped
// (vb_backend_active_sessions); 0 once closed.
func (b *Backend) GetActiveSessionCount() int {
	b.life.RLock()
	defer b.life.RUnlock()
	if b.c == nil {
		return 0
	}
	return int(C.vb_backend_active_sessions(b.c))
}

// CreateSession creates a session on a started backend (vb_session_create). Start it to begin;
// Close it when done (Backend.Close closes the ones left). The session is admitted first: by
// the auth hook when it has an AuthToken (ErrCodeUnauthorized), then by the rate limiter
// (ErrCodeRateLimited); the hooks get ctx, and a refusal carries the hook's error as Err.
func (b *Backend) CreateSession(ctx context.Context, cfg *SessionConfig) (*Session, error) {
	const op = "Backend.CreateSession"
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = &SessionConfig{}
	}
	js, err := cfg.configJSON(op)
	if err != nil {
		return nil, err
	}
	cjs := C.CString(string(js))
	defer C.free(unsafe.Pointer(cjs))
	return b.openSession(ctx, op, cfg, func(h cgo.Handle, withAgent bool, out **C.VbSession) C.enum_VbStatus {
		return createSession(b.c, cjs, h, withAgent, out)
	})
}

// openSession makes a session with open (vb_session_create or vb_session_resume, given the
// session's handle) under the backend's lock and the hooks' ctx, and registers it.
func (b *Backend) openSession(ctx context.Context, op string, cfg *SessionConfig,
	open func(h cgo.Handle, withAgent bool, out **C.VbSession) C.enum_VbStatus) (*Session, error) {
	b.life.RLock()
	defer b.life.RUnlock()
	if b.c == nil {
		return nil, closedBackend(op)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	s := newSession(ctx, b, cfg)
	h := cgo.NewHandle(s)
	var out *C.VbSession
	var hookErr error
	err := call(op, func() C.enum_VbStatus {
		end := b.hooks.begin(ctx)
		defer func() { hookErr = end() }()
		return open(h, s.agent != nil || s.streaming != nil, &out)
	})
	if err != nil {
		h.Delete()
		if be, ok := err.(*BackendError); ok {
			be.Err = hookErr
		}
		return nil, err
	}
	s.attach(out, h)
	if s.id, err = sessionID(out); err != nil {
		s.free()
		return nil, err
	}
	b.mu.Lock()
	if b.refuse {
		b.mu.Unlock()
		s.free()
		return nil, closedBackend(op)
	}
	b.sessions[s] = struct{}{}
	b.mu.Unlock()
	return s, nil
}

// GetSession returns the open session with that id, or ErrCodeNotFound.
func (b *Backend) GetSession(ctx context.Context, id string) (*Session, error) {
	for _, s := range b.snapshot() {
		if s.id == id {
			return s, nil
		}
	}
	return nil, &BackendError{Op: "Backend.GetSession", Code: ErrCodeNotFound, Message: "no open session " + id}
}

// ListSessions returns the sessions created and not yet closed, ordered by id.
func (b *Backend) ListSessions(ctx context.Context) []*Session {
	list := b.snapshot()
	sort.Slice(list, func(i, j int) bool { return list[i].id < list[j].id })
	return list
}

// CloseSession closes the open session with that id, or returns ErrCodeNotFound.
func (b *Backend) CloseSession(ctx context.Context, id string) error {
	s, err := b.GetSession(ctx, id)
	if err != nil {
		return err
	}
	return s.Close()
}

func (b *Backend) snapshot() []*Session {
	b.mu.Lock()
	defer b.mu.Unlock()
	list := make([]*Session, 0, len(b.sessions))
	for s := range b.sessions {
		list = append(list, s)
	}
	return list
}

func (b *Backend) forget(s *Session) {
	b.mu.Lock()
	delete(b.sessions, s)
	b.mu.Unlock()
}
