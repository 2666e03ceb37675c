package backend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// The store file of TestDiesWithSessionsActive, set by the test that runs it as a child process.
const dyingStoreEnv = "VBGO_DYING_STORE"

// storeConfig is the test providers' backend with its session store at path.
func storeConfig(path string) *Config {
	cfg := testConfig()
	cfg.Extra = map[string]any{"persistence": map[string]any{"path": path}}
	return cfg
}

// Not a test of its own: the child process of TestRecoveredSessionsAreResumedOrDiscarded. It
// holds a turn in one session, opens a second that says nothing, and exits without stopping
// either, as a process that died would.
func TestDiesWithSessionsActive(t *testing.T) {
	path := os.Getenv(dyingStoreEnv)
	if path == "" {
		t.Skip("the child process of TestRecoveredSessionsAreResumedOrDiscarded")
	}
	ctx := context.Background()
	b, err := GetRegistry().Create(ctx, "local", storeConfig(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	talker := newTestSession(t, b, &SessionConfig{UserID: "ada", AgentCallback: echoAgent})
	rec := record(talker)
	if err := talker.ProcessAudioInt16(ctx, utterance(150, 800, 16000)); err != nil {
		t.Fatal(err)
	}
	i := rec.waitEvent(t, 0, "the reply", isKind(EventAgentResponse))
	rec.waitEvent(t, i, "back to listening", isState(StateListening))
	idle := newTestSession(t, b, &SessionConfig{UserID: "bob", AgentCallback: echoAgent})
	if err := b.FlushStore(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("SESSIONS %s %s\n", talker.GetID(), idle.GetID())
	os.Exit(0)
}

// A process died with two sessions active; the next backend on its store lists both, discards
// one and resumes the other with its history; after that a third backend finds nothing.
func TestRecoveredSessionsAreResumedOrDiscarded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.redb")
	child := exec.Command(os.Args[0], "-test.run=^TestDiesWithSessionsActive$", "-test.count=1")
	// Its own cache: this process holds the default store file (the child's TestMain opens it).
	child.Env = append(os.Environ(), dyingStoreEnv+"="+path, "XDG_CACHE_HOME="+t.TempDir())
	out, err := child.Output()
	var talker, idle string
	at := strings.Index(string(out), "SESSIONS ")
	if err != nil || at < 0 {
		t.Fatalf("the child failed (%v): %s", err, out)
	}
	if _, err := fmt.Sscanf(string(out[at:]), "SESSIONS %s %s", &talker, &idle); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	b := newTestBackend(t, func(c *Config) { *c = *storeConfig(path) })
	list, err := b.RecoveredSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []RecoveredSession{{SessionID: talker, UserID: "ada", Turns: 1}, {SessionID: idle, UserID: "bob", Turns: 0}}
	if fmt.Sprint(list) != fmt.Sprint(want) {
		t.Fatalf("recovered %v, want %v", list, want)
	}

	// Discarded: gone from the list, and it cannot be resumed.
	wantCode(t, b.DiscardRecovered(ctx, "sess-nobody"), ErrCodeNotFound, "sess-nobody")
	if err := b.DiscardRecovered(ctx, idle); err != nil {
		t.Fatal(err)
	}
	wantCode(t, b.DiscardRecovered(ctx, idle), ErrCodeNotFound)
	_, err = b.ResumeSession(ctx, idle, &SessionConfig{AgentCallback: echoAgent})
	wantCode(t, err, ErrCodeNotFound)
	if list, _ := b.RecoveredSessions(ctx); len(list) != 1 || list[0].SessionID != talker {
		t.Fatalf("after discarding: %v", list)
	}

	// Resumed: same id, its turn in the history, and the agent sees it when the talk goes on.
	seen := make(chan []Turn, 1)
	var resumed atomic.Pointer[Session]
	s, err := b.ResumeSession(ctx, talker, &SessionConfig{
		StreamingAgentCallback: func(ctx context.Context, transcript string, reply *Reply) error {
			history, err := resumed.Load().History(ctx)
			seen <- history
			if err != nil {
				return err
			}
			return reply.Write(fmt.Sprintf("turn %d: you said %s", len(history)+1, transcript))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	resumed.Store(s)
	t.Cleanup(func() { _ = s.Close() })
	if s.GetID() != talker {
		t.Fatalf("resumed as %q, want %q", s.GetID(), talker)
	}
	history, err := s.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(history) != 1 || !strings.HasPrefix(history[0].Transcript, "pitch 150 hz") ||
		history[0].Reply != "you said "+history[0].Transcript || history[0].Interrupted {
		t.Fatalf("history %+v", history)
	}
	_, err = b.ResumeSession(ctx, talker, &SessionConfig{AgentCallback: echoAgent})
	wantCode(t, err, ErrCodeNotFound)
	if list, _ := b.RecoveredSessions(ctx); len(list) != 0 {
		t.Fatalf("still recovered: %v", list)
	}
	rec := record(s)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.ProcessAudioInt16(ctx, utterance(220, 800, 16000)); err != nil {
		t.Fatal(err)
	}
	i := rec.waitEvent(t, 0, "the reply", isKind(EventAgentResponse))
	if got := rec.snapshot()[i].Text; !strings.HasPrefix(got, "turn 2: you said pitch 220 hz") {
		t.Fatalf("reply %q", got)
	}
	if context := <-seen; len(context) != 1 || context[0] != history[0] {
		t.Fatalf("the agent's context %+v, want %+v", context, history)
	}
	// A streaming agent's reply may start playing before its text is complete: SPEAKING can come
	// before or after AGENT_RESPONSE, so the states are looked for from the turn's start.
	speaking := rec.waitEvent(t, 0, "speaking", isState(StateSpeaking))
	rec.waitEvent(t, speaking, "back to listening", isState(StateListening)) // the turn is recorded
	if history, _ := s.History(ctx); len(history) != 2 {
		t.Fatalf("history after the turn: %+v", history)
	}

	// Stopped, the resumed session completed; a third backend recovers nothing.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	third := newTestBackend(t, func(c *Config) { *c = *storeConfig(path) })
	if list, err := third.RecoveredSessions(ctx); err != nil || len(list) != 0 {
		t.Fatalf("a third backend recovered %v (%v)", list, err)
	}
	if err := third.FlushStore(ctx); err != nil {
		t.Fatal(err)
	}
	_ = third.Close()
	wantCode(t, third.FlushStore(ctx), ErrCodeInvalidState, "closed")
	_, err = third.RecoveredSessions(ctx)
	wantCode(t, err, ErrCodeInvalidState, "closed")
	if _, err := s.History(ctx); !errors.As(err, new(*BackendError)) {
		t.Fatalf("History of a closed session: %v", err)
	}
}

// Without a store nothing is recovered, and nothing can be resumed or discarded.
func TestWithoutAStoreNothingIsRecovered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newTestBackend(t, func(c *Config) { *c = *storeConfig("") })
	if list, err := b.RecoveredSessions(ctx); err != nil || len(list) != 0 {
		t.Fatalf("recovered %v (%v)", list, err)
	}
	wantCode(t, b.DiscardRecovered(ctx, "sess-1"), ErrCodeNotFound, "persistence is off")
	_, err := b.ResumeSession(ctx, "sess-1", &SessionConfig{AgentCallback: echoAgent})
	wantCode(t, err, ErrCodeNotFound, "persistence is off")
	wantCode(t, b.DiscardRecovered(ctx, "nul\x00"), ErrCodeInvalidArgument, "NUL")
	if err := b.FlushStore(ctx); err != nil {
		t.Fatal(err)
	}
}
