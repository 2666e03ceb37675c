package backend

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// captured is a slog.Handler that keeps every record, for the tests.
type captured struct {
	level slog.Level
	mu    sync.Mutex
	recs  []slog.Record
}

func (c *captured) Enabled(_ context.Context, l slog.Level) bool { return l >= c.level }
func (c *captured) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r.Clone())
	return nil
}
func (c *captured) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *captured) WithGroup(string) slog.Handler      { return c }

func (c *captured) records() []slog.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]slog.Record(nil), c.recs...)
}

func target(r slog.Record) string {
	var t string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "target" {
			t = a.Value.String()
		}
		return true
	})
	return t
}

// waitRecord waits for a record whose message contains all of parts.
func (c *captured) waitRecord(t *testing.T, parts ...string) slog.Record {
	t.Helper()
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		for _, r := range c.records() {
			found := true
			for _, p := range parts {
				found = found && strings.Contains(r.Message, p)
			}
			if found {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no record containing %q; got %d records", parts, len(c.records()))
	return slog.Record{}
}

func TestSetLoggerRoutesRecordsToSlog(t *testing.T) {
	h := &captured{level: slog.LevelInfo}
	if err := SetLogger(slog.New(h)); err != nil {
		t.Fatalf("SetLogger: %v", err)
	}
	t.Cleanup(func() { _ = SetLogger(nil) })

	b := newTestBackend(t, nil)
	s := newTestSession(t, b, &SessionConfig{AgentCallback: echoAgent})
	id := s.GetID()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r := h.waitRecord(t, "session{session.id="+id+"}", "session stopped")
	if r.Level != slog.LevelInfo {
		t.Errorf("level %v, want INFO", r.Level)
	}
	if got := target(r); !strings.HasPrefix(got, "voicebackend") {
		t.Errorf("target %q, want voicebackend::…", got)
	}
	for _, r := range h.records() {
		if r.Level < slog.LevelInfo {
			t.Errorf("a record below the handler's level: %v %s", r.Level, r.Message)
		}
	}

	// Stopped: no record reaches the handler any more.
	if err := SetLogger(nil); err != nil {
		t.Fatalf("SetLogger(nil): %v", err)
	}
	n := len(h.records())
	b2 := newTestBackend(t, nil)
	_ = b2.Close()
	time.Sleep(100 * time.Millisecond)
	if got := len(h.records()); got != n {
		t.Errorf("%d records after SetLogger(nil)", got-n)
	}
}

func TestSetLoggerPassesTheLevelOfItsHandler(t *testing.T) {
	h := &captured{level: slog.LevelDebug}
	if err := SetLogger(slog.New(h)); err != nil {
		t.Fatalf("SetLogger: %v", err)
	}
	t.Cleanup(func() { _ = SetLogger(nil) })
	b := newTestBackend(t, nil)
	s := newTestSession(t, b, &SessionConfig{AgentCallback: echoAgent})
	_ = s.Close()
	r := h.waitRecord(t, "session{session.id="+s.GetID()+"}", "state changed")
	if r.Level != slog.LevelDebug {
		t.Errorf("level %v, want DEBUG", r.Level)
	}
}
