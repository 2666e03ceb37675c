package backend

// Sessions that arrive by themselves (Config.OnSession), installed in the engine as a VbIncoming
// whose user_data is a runtime/cgo.Handle of the *Backend. The engine calls on_session on one of
// its I/O threads, one call per arriving session (a LiveKit job dispatched to this worker).

/*
#include <stdint.h>
#include <string.h>
#include "voicebackend.h"

// Exported from incoming_export.go and callbacks.go (cgo writes them without const).
extern enum VbStatus vbgoOnSession(void *user_data, VbSession *session, char *info_json,
                                   VbCallbacks *callbacks);
extern enum VbStatus vbgoOnTranscript(void *user_data, VbSession *session, char *transcript, VbReply *reply);
extern void vbgoOnEvent(void *user_data, VbEvent *event);

static enum VbStatus vbgo_on_session(void *user_data, VbSession *session, const char *info_json,
                                     VbCallbacks *callbacks) {
	return vbgoOnSession(user_data, session, (char *)info_json, callbacks);
}

static enum VbStatus vbgo_incoming_on_transcript(void *user_data, VbSession *session,
                                                 const char *transcript, VbReply *reply) {
	return vbgoOnTranscript(user_data, session, (char *)transcript, reply);
}

static void vbgo_incoming_on_event(void *user_data, const VbEvent *event) {
	vbgoOnEvent(user_data, (VbEvent *)event);
}

// user_data is a runtime/cgo.Handle (an integer), never a Go pointer.
static enum VbStatus vbgo_set_incoming(VbBackend *backend, uintptr_t handle) {
	VbIncoming incoming;
	incoming.user_data = (void *)handle;
	incoming.on_session = vbgo_on_session;
	return vb_backend_set_incoming(backend, &incoming);
}

// Fills the callbacks of a session the host takes; user_data is the session's handle.
static void vbgo_fill_callbacks(VbCallbacks *callbacks, uintptr_t handle, int with_agent) {
	callbacks->user_data = (void *)handle;
	callbacks->on_transcript = with_agent ? vbgo_incoming_on_transcript : NULL;
	callbacks->on_event = vbgo_incoming_on_event;
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

// OnSessionFunc takes a session that arrived by itself (Config.OnSession): on the livekit
// backend in worker mode, one per job the LiveKit server dispatched to this worker, already
// configured to join info.Room with the job's token. It runs on an engine I/O thread, possibly
// concurrently for different sessions; ctx ends when the backend stops or closes.
//
// Return the session's agent to take it: the backend then starts it (do not Start it
// yourself), and s behaves like a session of CreateSession (Events, ReceiveAudio, Say,
// Interrupt, Close). Once it has stopped (the job ended, the room closed) the binding closes it;
// Close it earlier to end it. An s2s backend needs no agent (return nil, nil).
//
// Return an error to refuse it: the engine frees it and the job fails (the status is the
// error's *BackendError Code, else ErrCodeProvider); s must not be used afterwards. A nil agent
// without an error on an stt_tts backend refuses it too (ErrCodeInvalidArgument), and so does a
// panic (recovered: ErrCodePanic) or closing s inside the call.
type OnSessionFunc func(ctx context.Context, s *Session, info SessionInfo) (AgentCallback, error)

// SessionInfo describes a session that arrived by itself (the engine's info_json).
type SessionInfo struct {
	// Source says where it came from: "livekit-dispatch" for a LiveKit job.
	Source string `json:"source"`
	// Room is the LiveKit room the session joins.
	Room string `json:"room"`
	// Participant is the identity of the participant the job is for (also the session's user
	// id); "" when the job names none.
	Participant string `json:"participant"`
	// JobID, DispatchID and AgentName identify the LiveKit job, the dispatch that created it
	// (Rooms.CreateDispatch), and the agent name it was dispatched to.
	JobID      string `json:"job_id"`
	DispatchID string `json:"dispatch_id"`
	AgentName  string `json:"agent_name"`
	// Metadata is the job's metadata, as the dispatch gave it.
	Metadata string `json:"metadata"`
	// Raw is info_json as the engine wrote it, with any keys not named above.
	Raw string `json:"-"`
}

// installIncoming installs Config.OnSession in a backend that has not started.
func installIncoming(op string, b *Backend) error {
	if b.cfg.OnSession == nil {
		return nil
	}
	b.incoming = cgo.NewHandle(b)
	handle := C.uintptr_t(b.incoming)
	if err := call(op, func() C.enum_VbStatus { return C.vbgo_set_incoming(b.c, handle) }); err != nil {
		b.incoming.Delete()
		b.incoming = 0
		return err
	}
	return nil
}

// pipelineS2S reports whether the backend's sessions run speech to speech (no agent needed).
func (b *Backend) pipelineS2S() bool {
	if v, ok := b.cfg.Extra["pipeline_type"].(string); ok {
		return v == string(PipelineTypeS2S)
	}
	return b.cfg.PipelineType == PipelineTypeS2S
}

// onSessionOp names OnSession's refusals.
const onSessionOp = "Config.OnSession"

// acceptIncoming runs OnSession for a session the engine opened (on its I/O thread) and fills
// callbacks when the host takes it; any other status refuses it (the engine then frees c).
func (b *Backend) acceptIncoming(c *C.VbSession, infoJSON string, callbacks *C.VbCallbacks) C.enum_VbStatus {
	s, err := b.openIncoming(c, infoJSON)
	if err != nil {
		return refusalStatus(err)
	}
	agent, err := b.runOnSession(s, infoJSON)
	err = b.checkAnswer(agent, err)
	// c stays the engine's (s.arriving) until the decision below: a Close meanwhile (inside
	// OnSession, or Backend.Close) only lets go of it, and the session is refused.
	s.life.Lock()
	b.mu.Lock()
	gone := s.c == nil
	if !gone && err == nil && b.refuse {
		err = closedBackend(onSessionOp)
	}
	if !gone && err == nil {
		s.agent = agent
		s.arriving = false
		b.sessions[s] = struct{}{}
	}
	b.mu.Unlock()
	if !gone && err != nil {
		// Refused: the engine frees c; the Go side lets go of it without a C call.
		s.c = nil
		s.releaseC()
	}
	s.life.Unlock()
	switch {
	case gone:
		return C.VB_ERR_INVALID_STATE // Close already released the Go side
	case err != nil:
		s.closing.Store(true) // a later Close is a no-op
		s.cancel()
		s.finish()
		s.handle.Delete()
		return refusalStatus(err)
	}
	withAgent := C.int(0)
	if agent != nil {
		withAgent = 1
	}
	C.vbgo_fill_callbacks(callbacks, C.uintptr_t(s.handle), withAgent)
	// The backend starts the session right after this returns: read its audio from now on.
	s.mu.Lock()
	if !s.finished && !s.readerStarted {
		s.readerStarted = true
		go s.readLoop()
	}
	s.mu.Unlock()
	return C.VB_OK
}

// openIncoming wraps the engine's session c (not started, still the engine's) in a *Session.
func (b *Backend) openIncoming(c *C.VbSession, infoJSON string) (*Session, error) {
	b.mu.Lock()
	refuse := b.refuse
	b.mu.Unlock()
	if refuse {
		return nil, closedBackend(onSessionOp)
	}
	id, err := sessionID(c)
	if err != nil {
		return nil, err
	}
	s := newSession(b.ctx, b, &SessionConfig{})
	s.incoming, s.arriving = true, true
	s.attach(c, cgo.NewHandle(s))
	s.id = id
	return s, nil
}

// runOnSession calls OnSession; a panic becomes an ErrCodePanic error.
func (b *Backend) runOnSession(s *Session, infoJSON string) (agent AgentCallback, err error) {
	var info SessionInfo
	if jerr := json.Unmarshal([]byte(infoJSON), &info); jerr != nil {
		return nil, &BackendError{Op: onSessionOp, Code: ErrCodeInternal, Message: "the session's info_json: " + jerr.Error()}
	}
	info.Raw = infoJSON
	defer func() {
		if r := recover(); r != nil {
			agent, err = nil, &BackendError{Op: onSessionOp, Code: ErrCodePanic, Message: fmt.Sprintf("OnSession panicked: %v", r)}
		}
	}()
	return b.cfg.OnSession(b.ctx, s, info)
}

// checkAnswer is the error that refuses a session after OnSession returned agent and err: err,
// or, for a nil agent on an stt_tts backend, ErrCodeInvalidArgument; nil takes it.
func (b *Backend) checkAnswer(agent AgentCallback, err error) error {
	if err == nil && agent == nil && !b.pipelineS2S() {
		return &BackendError{Op: onSessionOp, Code: ErrCodeInvalidArgument,
			Message: "OnSession returned neither an AgentCallback nor an error: an stt_tts session needs an agent"}
	}
	return err
}

// refusalStatus is the status that refuses a session for err: a *BackendError's Code, else
// VB_ERR_PROVIDER.
func refusalStatus(err error) C.enum_VbStatus {
	var be *BackendError
	if errors.As(err, &be) && be.Code > 0 && int(be.Code) < len(codeNames) {
		return C.enum_VbStatus(be.Code)
	}
	return C.VB_ERR_PROVIDER
}
