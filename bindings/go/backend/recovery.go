package backend

// Sessions an earlier process left in the session store: listing, resuming and discarding them,
// a session's conversation history, flushing the store.

/*
#include <stdlib.h>
#include "voicebackend.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"runtime/cgo"
	"unsafe"
)

// RecoveredSession is a session found in the backend's session store when it was created: the
// process that ran it ended without stopping it (it crashed, or was killed). Resume it with
// ResumeSession, or forget it with DiscardRecovered.
type RecoveredSession struct {
	SessionID string `json:"session_id"`
	UserID    string `json:"user_id"`
	Turns     int    `json:"turns"` // finished user turns in its history
}

// Turn is one finished user turn of a session's conversation.
type Turn struct {
	// Transcript is what the user said, Reply what the agent answered (as far as it got when
	// interrupted). In a resumed session a text the privacy policy kept out of the store is "".
	Transcript string
	Reply      string
	// Interrupted: barge-in or Interrupt cut the reply short (or cancelled it before it began).
	Interrupted bool
}

// RecoveredSessions lists the sessions found in the store when the backend was created and not
// resumed or discarded since, oldest first (vb_backend_recovered_sessions); empty when
// persistence is off ("persistence": {"path": ""} in Config.Extra).
func (b *Backend) RecoveredSessions(ctx context.Context) ([]RecoveredSession, error) {
	const op = "Backend.RecoveredSessions"
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	b.life.RLock()
	defer b.life.RUnlock()
	if b.c == nil {
		return nil, closedBackend(op)
	}
	var list []RecoveredSession
	err := fillJSON(op, &list, func(buf *C.char, capacity C.size_t, needed *C.size_t) C.enum_VbStatus {
		return C.vb_backend_recovered_sessions(b.c, buf, capacity, needed)
	})
	return list, err
}

// ResumeSession reopens a recovered session (vb_session_resume): same id, configuration (but
// no AuthToken, which is never stored) and history; Start it to go on, and the agent's next
// call sees the earlier turns in its History. Of cfg only the Go side is used: the agent
// (AgentCallback or StreamingAgentCallback), EventBuffer, AudioBuffer, and OutputSampleRate,
// which paces the ReceiveAudio reader and must be the rate the session was created with (when
// it was not the default). The session is admitted by the auth hook's Authorize
// ("session.resume"; there is no token to authenticate) and by the rate limiter, with ctx, and
// counts against MaxConcurrentSessions.
// ErrCodeNotFound when no recovered session has that id (unknown, resumed or discarded
// already, or persistence off).
func (b *Backend) ResumeSession(ctx context.Context, id string, cfg *SessionConfig) (*Session, error) {
	const op = "Backend.ResumeSession"
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = &SessionConfig{}
	}
	cid, err := cString(op, "id", id)
	if err != nil {
		return nil, err
	}
	defer freeCString(cid)
	return b.openSession(ctx, op, cfg, func(h cgo.Handle, withAgent bool, out **C.VbSession) C.enum_VbStatus {
		return resumeSession(b.c, cid, h, withAgent, out)
	})
}

// DiscardRecovered forgets a recovered session without resuming it
// (vb_backend_discard_recovered): its record and audio are deleted from the store before this
// returns, and neither this backend nor a later one lists it again. ErrCodeNotFound when no
// recovered session has that id (unknown, resumed or discarded already, or persistence off).
// Blocks for the disk write.
func (b *Backend) DiscardRecovered(ctx context.Context, id string) error {
	const op = "Backend.DiscardRecovered"
	if err := ctxErr(ctx); err != nil {
		return err
	}
	cid, err := cString(op, "id", id)
	if err != nil {
		return err
	}
	defer freeCString(cid)
	b.life.RLock()
	defer b.life.RUnlock()
	if b.c == nil {
		return closedBackend(op)
	}
	return call(op, func() C.enum_VbStatus { return C.vb_backend_discard_recovered(b.c, cid) })
}

// FlushStore blocks until every session record written so far is on disk
// (vb_backend_flush_store); ErrCodeInternal with the reason when a write failed since the
// previous flush. Records are written when a session starts and after each turn.
func (b *Backend) FlushStore(ctx context.Context) error {
	const op = "Backend.FlushStore"
	if err := ctxErr(ctx); err != nil {
		return err
	}
	b.life.RLock()
	defer b.life.RUnlock()
	if b.c == nil {
		return closedBackend(op)
	}
	return call(op, func() C.enum_VbStatus { return C.vb_backend_flush_store(b.c) })
}

// History returns the session's finished turns, oldest first, a resumed session's earlier
// turns included (vb_session_history). An agent callback may call it for the context of the
// turn it answers.
func (s *Session) History(ctx context.Context) ([]Turn, error) {
	const op = "Session.History"
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.c == nil {
		return nil, closedSession(op)
	}
	var stored []struct {
		Transcript  *string `json:"transcript"`
		Reply       *string `json:"reply"`
		Interrupted bool    `json:"interrupted"`
	}
	err := fillJSON(op, &stored, func(buf *C.char, capacity C.size_t, needed *C.size_t) C.enum_VbStatus {
		return C.vb_session_history(s.c, buf, capacity, needed)
	})
	if err != nil {
		return nil, err
	}
	turns := make([]Turn, len(stored))
	for i, t := range stored {
		turns[i].Interrupted = t.Interrupted
		if t.Transcript != nil {
			turns[i].Transcript = *t.Transcript
		}
		if t.Reply != nil {
			turns[i].Reply = *t.Reply
		}
	}
	return turns, nil
}

// fillJSON calls one of the vb_* functions that fill a caller's buffer with JSON, growing the
// buffer to what it needs, and decodes the answer into v.
func fillJSON(op string, v any, fill func(buf *C.char, capacity C.size_t, needed *C.size_t) C.enum_VbStatus) error {
	buf := make([]byte, 1024)
	for {
		var needed C.size_t
		err := call(op, func() C.enum_VbStatus {
			return fill((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &needed)
		})
		if err == nil {
			text := C.GoString((*C.char)(unsafe.Pointer(&buf[0])))
			if jerr := json.Unmarshal([]byte(text), v); jerr != nil {
				return &BackendError{Op: op, Code: ErrCodeInternal, Message: "the engine's JSON: " + jerr.Error()}
			}
			return nil
		}
		if int(needed) <= len(buf) {
			return err
		}
		buf = make([]byte, int(needed))
	}
}
