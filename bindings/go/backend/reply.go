package backend

/*
#include <stdlib.h>
#include "voicebackend.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Reply is the streaming reply of one agent call (a VbReply). It is valid only while the
// StreamingAgentCallback it was given to runs; its methods may be called from any goroutine
// (they are serialized) but fail with ErrCodeInvalidState once the callback has returned.
type Reply struct {
	mu     sync.Mutex
	c      *C.VbReply // nil once the callback returned
	failed bool       // Fail succeeded
}

func (r *Reply) finished(op string) error {
	return &BackendError{Op: op, Code: ErrCodeInvalidState, Message: "the agent callback has returned: the reply is finished"}
}

// Write appends text to the reply (vb_reply_write); TTS speaks complete sentences as they
// arrive. ErrCodeInvalidState after End or once barge-in cancelled the reply: stop producing
// it then (the callback's ctx is cancelled too).
func (r *Reply) Write(text string) error {
	const op = "Reply.Write"
	if text == "" {
		return nil
	}
	cs, err := cString(op, "text", text)
	if err != nil {
		return err
	}
	defer freeCString(cs)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil {
		return r.finished(op)
	}
	return call(op, func() C.enum_VbStatus { return C.vb_reply_write(r.c, cs) })
}

// End ends the reply (vb_reply_end). Optional: returning from the callback ends it too.
func (r *Reply) End() error {
	const op = "Reply.End"
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil {
		return r.finished(op)
	}
	return call(op, func() C.enum_VbStatus { return C.vb_reply_end(r.c) })
}

// Fail fails the reply with the agent's own error (vb_reply_fail): the host gets an EventError
// with code and the text "agent: <message>", the turn ends (text written before is still
// spoken) and the session listens again. What the callback returns afterwards is not reported
// a second time. ErrCodeInvalidArgument for code 0 (VB_OK), a code that is no status, or a
// message with a NUL byte; ErrCodeInvalidState after End, a previous Fail, or once barge-in
// cancelled the reply.
func (r *Reply) Fail(code ErrorCode, message string) error {
	const op = "Reply.Fail"
	cs, err := cString(op, "message", message)
	if err != nil {
		return err
	}
	defer freeCString(cs)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil {
		return r.finished(op)
	}
	if code < math.MinInt32 || code > math.MaxInt32 {
		return &BackendError{Op: op, Code: ErrCodeInvalidArgument, Message: fmt.Sprintf("code %d is no status", int(code))}
	}
	err = call(op, func() C.enum_VbStatus { return C.vb_reply_fail(r.c, C.int32_t(code), cs) })
	if err == nil {
		r.failed = true
	}
	return err
}

// Cancelled reports whether barge-in (or Interrupt) cancelled the reply
// (vb_reply_is_cancelled).
func (r *Reply) Cancelled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c != nil && bool(C.vb_reply_is_cancelled(r.c))
}

// replyWatchPeriod is how often a running agent call checks for barge-in to cancel its ctx.
const replyWatchPeriod = 20 * time.Millisecond

// runAgent runs the session's agent callback for one transcript on the engine's agent thread.
// Go errors and panics become VB_ERR_PROVIDER / VB_ERR_PANIC (an error event whose Err is the
// Go error); a callback that returns its ctx's error after cancellation is not a failure.
func (s *Session) runAgent(transcript string, c *C.VbReply) (status C.enum_VbStatus) {
	tid := s.agentEnter()
	defer s.agentLeave(tid)
	r := &Reply{c: c}
	ctx, cancel := context.WithCancel(s.ctx)
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() { // barge-in → ctx cancelled
		defer close(watched)
		tick := time.NewTicker(replyWatchPeriod)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if r.Cancelled() {
					cancel()
					return
				}
			}
		}
	}()
	defer func() {
		close(stop)
		<-watched
		cancel()
		r.mu.Lock()
		r.c = nil // no C call on this reply after we return to the engine
		r.mu.Unlock()
		if p := recover(); p != nil {
			s.setAgentErr(fmt.Errorf("agent callback panicked: %v", p))
			status = C.VB_ERR_PANIC
		}
	}()
	var err error
	if s.streaming != nil {
		err = s.streaming(ctx, transcript, r)
	} else if s.agent != nil {
		var text string
		if text, err = s.agent(ctx, transcript); err == nil {
			err = r.Write(text)
		}
	}
	r.mu.Lock()
	failed := r.failed
	r.mu.Unlock()
	if failed {
		return C.VB_OK // the agent's error was reported by Fail
	}
	if err != nil {
		if ctx.Err() != nil && (errors.Is(err, ctx.Err()) || r.Cancelled()) {
			return C.VB_OK // cancelled by barge-in or stop: not a failure
		}
		var be *BackendError
		if errors.As(err, &be) && be.Op == "Reply.Write" && be.Code == ErrCodeInvalidState && r.Cancelled() {
			return C.VB_OK
		}
		s.setAgentErr(err)
		return C.VB_ERR_PROVIDER
	}
	_ = r.End() // fails harmlessly when the callback ended it or barge-in cancelled it
	return C.VB_OK
}
