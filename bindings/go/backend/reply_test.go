package backend

import (
	"context"
	"errors"
	"testing"
)

// An agent that fails its reply reports its own code and message; the turn ends, what it wrote
// is spoken, the session listens again, and what the callback returns after Fail is not
// reported a second time.
func TestReplyFailReportsTheAgentsOwnError(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	refusals := make(chan error, 4)
	s := newTestSession(t, b, &SessionConfig{
		StreamingAgentCallback: func(ctx context.Context, transcript string, reply *Reply) error {
			if err := reply.Write("Let me look. "); err != nil {
				return err
			}
			refusals <- reply.Fail(0, "no failure")
			if err := reply.Fail(ErrCodeConnectionFailed, "the order database is down"); err != nil {
				return err
			}
			refusals <- reply.Fail(ErrCodeProvider, "again")
			refusals <- reply.Write("more")
			return errors.New("returned after Fail")
		},
	})
	rec := record(s)
	if err := s.ProcessAudioInt16(context.Background(), utterance(150, 800, 16000)); err != nil {
		t.Fatal(err)
	}
	i := rec.waitEvent(t, 0, "the error", isKind(EventError))
	e := rec.snapshot()[i]
	if e.Err.Code != ErrCodeConnectionFailed || e.Text != "agent: the order database is down" {
		t.Fatalf("error event %v (%q)", e.Err, e.Text)
	}
	j := rec.waitEvent(t, i, "the reply", isKind(EventAgentResponse))
	if got := rec.snapshot()[j].Text; got != "Let me look. " {
		t.Fatalf("reply %q", got)
	}
	// What it wrote is spoken: playout may start before the reply's text event (the audio of
	// "Let me look." is ready before the failure ends the reply).
	rec.waitEvent(t, 0, "speaking", isState(StateSpeaking))
	end := rec.waitEvent(t, j, "back to listening", isState(StateListening))
	for _, e := range rec.snapshot()[i+1 : end+1] {
		if e.Kind == EventError {
			t.Errorf("a second error: %v", e.Err)
		}
	}
	wantCode(t, <-refusals, ErrCodeInvalidArgument, "VB_OK")
	wantCode(t, <-refusals, ErrCodeInvalidState, "already failed")
	wantCode(t, <-refusals, ErrCodeInvalidState, "already failed")
}
