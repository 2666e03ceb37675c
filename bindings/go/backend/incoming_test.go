package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unreachableLiveKit is a livekit backend config whose server does not exist (nothing listens on
// port 9), failing fast: one connection attempt per try, two tries.
func unreachableLiveKit(edit func(*Config)) *Config {
	cfg := &Config{
		Provider: "livekit",
		ProviderConfig: map[string]any{
			"url": "ws://127.0.0.1:9", "api_key": "devkey", "api_secret": "secret", "timeout_ms": 300,
		},
		STTProvider: "test-pitch-stt",
		TTSProvider: "test-tone-tts",
		Extra:       map[string]any{"retry": map[string]any{"max_attempts": 2, "initial_backoff_ms": 10}},
	}
	if edit != nil {
		edit(cfg)
	}
	return cfg
}

// A worker backend with OnSession: Start registers with the server as an agent worker, and
// reports an unreachable one (OnSession is never called).
func TestOnSessionWorkerStartReportsAnUnreachableServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	called := make(chan struct{}, 1)
	b, err := GetRegistry().Create(ctx, "livekit", unreachableLiveKit(func(c *Config) {
		c.ProviderConfig["worker"] = map[string]any{"agent_name": "go-test", "max_jobs": 2, "load_threshold": 0.9}
		c.OnSession = func(ctx context.Context, s *Session, info SessionInfo) (AgentCallback, error) {
			called <- struct{}{}
			return echoAgent, nil
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Start(ctx)
	wantCode(t, err, ErrCodeConnectionFailed, "registering as an agent worker at ws://127.0.0.1:9")
	select {
	case <-called:
		t.Fatal("OnSession was called without a server")
	default:
	}
}

// OnSession can only be installed before Start, which Create does; a backend that is not
// livekit accepts it too (nothing arrives there).
func TestOnSessionOnALocalBackend(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, func(c *Config) {
		c.OnSession = func(context.Context, *Session, SessionInfo) (AgentCallback, error) { return echoAgent, nil }
	})
	s := newTestSession(t, b, &SessionConfig{AgentCallback: echoAgent})
	if s.incoming {
		t.Fatal("a created session counts as arrived")
	}
}

// What OnSession's answers mean: an agent takes the session; an error refuses it with its
// BackendError code (else VB_ERR_PROVIDER); nil, nil refuses an stt_tts session with a clear
// error but takes an s2s one; a panic is recovered and refuses.
func TestOnSessionAnswers(t *testing.T) {
	t.Parallel()
	stt := &Backend{cfg: &Config{}}
	s2s := &Backend{cfg: &Config{PipelineType: PipelineTypeS2S}}
	s2sExtra := &Backend{cfg: &Config{Extra: map[string]any{"pipeline_type": "s2s"}}}
	if err := stt.checkAnswer(echoAgent, nil); err != nil {
		t.Fatalf("an agent: %v", err)
	}
	err := stt.checkAnswer(nil, nil)
	wantCode(t, err, ErrCodeInvalidArgument, "an stt_tts session needs an agent")
	if got := refusalStatus(err); ErrorCode(got) != ErrCodeInvalidArgument {
		t.Fatalf("status %v", ErrorCode(got))
	}
	for _, b := range []*Backend{s2s, s2sExtra} {
		if err := b.checkAnswer(nil, nil); err != nil {
			t.Fatalf("s2s without an agent: %v", err)
		}
	}
	busy := errors.New("too busy")
	if err := stt.checkAnswer(echoAgent, busy); err != busy || ErrorCode(refusalStatus(err)) != ErrCodeProvider {
		t.Fatalf("a plain error: %v", err)
	}
	limit := fmt.Errorf("wrapped: %w", &BackendError{Code: ErrCodeSessionLimit, Message: "full"})
	if ErrorCode(refusalStatus(limit)) != ErrCodeSessionLimit {
		t.Fatal("a BackendError's code is not kept")
	}

	panicking := &Backend{cfg: &Config{OnSession: func(context.Context, *Session, SessionInfo) (AgentCallback, error) {
		panic("boom")
	}}, ctx: context.Background()}
	agent, err := panicking.runOnSession(nil, `{"source":"livekit-dispatch"}`)
	if agent != nil {
		t.Fatal("a panic returned an agent")
	}
	wantCode(t, err, ErrCodePanic, "OnSession panicked: boom")

	var got SessionInfo
	reader := &Backend{cfg: &Config{OnSession: func(_ context.Context, _ *Session, info SessionInfo) (AgentCallback, error) {
		got = info
		return echoAgent, nil
	}}, ctx: context.Background()}
	raw := `{"source":"livekit-dispatch","room":"r1","participant":"p1","job_id":"AJ_1","dispatch_id":"AD_1","agent_name":"a","metadata":"m","extra":1}`
	if _, err := reader.runOnSession(nil, raw); err != nil {
		t.Fatal(err)
	}
	want := SessionInfo{Source: "livekit-dispatch", Room: "r1", Participant: "p1", JobID: "AJ_1", DispatchID: "AD_1", AgentName: "a", Metadata: "m", Raw: raw}
	if got != want {
		t.Fatalf("SessionInfo %+v, want %+v", got, want)
	}
}

// ConnectionToken becomes the session key connection_token.
func TestSessionConfigConnectionToken(t *testing.T) {
	t.Parallel()
	js, err := (&SessionConfig{ConnectionToken: "tok"}).configJSON("test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"connection_token":"tok"`) {
		t.Fatalf("session JSON %s", js)
	}
	// The engine knows the key: a local session with one is created.
	b := newTestBackend(t, nil)
	newTestSession(t, b, &SessionConfig{ConnectionToken: "tok", AgentCallback: echoAgent})
}

// The room service needs a livekit backend, and reports an unreachable server.
func TestRoomsNeedALiveKitServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	local := newTestBackend(t, nil)
	_, err := local.Rooms().ListRooms(ctx)
	wantCode(t, err, ErrCodeInvalidConfig, "")

	b, err := GetRegistry().Create(ctx, "livekit", unreachableLiveKit(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Rooms().ListRooms(ctx)
	wantCode(t, err, ErrCodeConnectionFailed, "livekit: list_rooms at http://127.0.0.1:9")
	_, err = b.Rooms().CreateDispatch(ctx, "r", "a", "")
	wantCode(t, err, ErrCodeConnectionFailed, "")
	_ = b.Close()
	_, err = b.Rooms().ListRooms(ctx)
	wantCode(t, err, ErrCodeInvalidState, "closed")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := local.Rooms().ListRooms(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled ctx: %v", err)
	}
}

// liveKitServer starts a real livekit-server (scripts/livekit-server.sh) on a free port for the
// test; skipped when the script is missing.
func liveKitServer(t *testing.T) string {
	t.Helper()
	script, err := filepath.Abs("../../../scripts/livekit-server.sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Skipf("no %s: %v", script, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	rtc := 51000 + port%2000*4
	cmd := exec.Command(script, "start", strconv.Itoa(port), strconv.Itoa(rtc), strconv.Itoa(rtc+3))
	cmd.Env = append(os.Environ(), "LIVEKIT_LOG_LEVEL=warn")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("livekit-server.sh start %d: %v\n%s", port, err, stderr)
	}
	t.Logf("livekit-server pid %s on port %d", strings.TrimSpace(string(out)), port)
	t.Cleanup(func() {
		if out, err := exec.Command(script, "stop", strconv.Itoa(port)).CombinedOutput(); err != nil {
			t.Errorf("livekit-server.sh stop %d: %v\n%s", port, err, out)
		}
	})
	return "ws://127.0.0.1:" + strconv.Itoa(port)
}

// Against a real server: rooms round-trip through the room service, and a dispatch to a
// worker backend arrives at OnSession, whose session joins the room as the agent and is closed
// by the binding once the room is deleted.
func TestLiveKitServerRoomsAndDispatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a livekit-server")
	}
	url := liveKitServer(t)
	ctx := context.Background()
	lk := func(worker bool) *Config {
		pc := map[string]any{"url": url, "api_key": "devkey", "api_secret": "secret", "timeout_ms": 5000}
		if worker {
			pc["worker"] = map[string]any{"agent_name": "go-test-agent"}
		}
		return &Config{Provider: "livekit", ProviderConfig: pc, STTProvider: "test-pitch-stt", TTSProvider: "test-tone-tts"}
	}

	// The room service on a backend that is not started.
	admin, err := GetRegistry().Create(ctx, "livekit", lk(false))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	rooms := admin.Rooms()
	room, err := rooms.CreateRoom(ctx, "go-rooms-1")
	if err != nil {
		t.Fatal(err)
	}
	if room.Name != "go-rooms-1" || room.SID == "" || room.CreatedAt.IsZero() {
		t.Fatalf("CreateRoom: %+v", room)
	}
	list, err := rooms.ListRooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "go-rooms-1" || list[0].SID != room.SID {
		t.Fatalf("ListRooms: %+v", list)
	}
	if ps, err := rooms.ListParticipants(ctx, "go-rooms-1"); err != nil || len(ps) != 0 {
		t.Fatalf("ListParticipants of an empty room: %v, %v", ps, err)
	}
	if err := rooms.DeleteRoom(ctx, "go-rooms-1"); err != nil {
		t.Fatal(err)
	}
	if list, err := rooms.ListRooms(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListRooms after DeleteRoom: %+v, %v", list, err)
	}
	// A dispatch arrives at the worker's OnSession.
	type arrival struct {
		s    *Session
		info SessionInfo
	}
	arrived := make(chan arrival, 4)
	cfg := lk(true)
	refused := make(chan string, 16)
	cfg.OnSession = func(ctx context.Context, s *Session, info SessionInfo) (AgentCallback, error) {
		switch info.Room {
		case "go-refused":
			refused <- info.Room
			return nil, errors.New("no thanks")
		case "go-panic":
			refused <- info.Room
			panic("boom")
		case "go-no-agent":
			refused <- info.Room
			return nil, nil
		}
		arrived <- arrival{s, info}
		return echoAgent, nil
	}
	worker, err := GetRegistry().Create(ctx, "livekit", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	if err := worker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rooms.CreateRoom(ctx, "go-dispatch-1"); err != nil {
		t.Fatal(err)
	}
	dispatchID, err := rooms.CreateDispatch(ctx, "go-dispatch-1", "go-test-agent", `{"k":"v"}`)
	if err != nil || dispatchID == "" {
		t.Fatalf("CreateDispatch: %q, %v", dispatchID, err)
	}
	var a arrival
	select {
	case a = <-arrived:
	case <-time.After(patience):
		t.Fatal("the dispatch did not arrive at OnSession")
	}
	if a.info.Source != "livekit-dispatch" || a.info.Room != "go-dispatch-1" || a.info.DispatchID != dispatchID ||
		a.info.AgentName != "go-test-agent" || a.info.Metadata != `{"k":"v"}` || !strings.HasPrefix(a.info.JobID, "AJ_") {
		t.Fatalf("SessionInfo %+v (dispatch %s)", a.info, dispatchID)
	}
	// The session is listed once OnSession has returned, and joins the room as the agent.
	deadline := time.Now().Add(patience)
	for {
		got, err := worker.GetSession(ctx, a.s.GetID())
		if err == nil && got == a.s {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the arrived session is not listed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		ps, err := rooms.ListParticipants(ctx, "go-dispatch-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) == 1 && ps[0].Kind == "agent" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agent joined the room: %+v (state %v)", ps, a.s.GetState())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Deleting the room ends the job: the session stops and the binding closes it.
	if err := rooms.DeleteRoom(ctx, "go-dispatch-1"); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(patience)
	for open := true; open; {
		select {
		case _, open = <-a.s.Events():
		case <-timeout:
			t.Fatalf("the session did not end with its room (state %v)", a.s.GetState())
		}
	}
	for worker.GetActiveSessionCount() != 0 || len(worker.ListSessions(ctx)) != 0 {
		select {
		case <-timeout:
			t.Fatalf("the ended session is still open: %d active, %d listed", worker.GetActiveSessionCount(), len(worker.ListSessions(ctx)))
		case <-time.After(20 * time.Millisecond):
		}
	}
	wantCode(t, a.s.Say(ctx, "hi"), ErrCodeInvalidState, "closed")

	// Refused sessions (an error, a panic, no agent) are freed by the engine and never listed.
	for _, room := range []string{"go-refused", "go-panic", "go-no-agent"} {
		if _, err := rooms.CreateRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		if _, err := rooms.CreateDispatch(ctx, room, "go-test-agent", ""); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-refused:
			if got != room {
				t.Fatalf("OnSession for %s, want %s", got, room)
			}
		case <-time.After(patience):
			t.Fatalf("the dispatch to %s did not arrive", room)
		}
		for worker.GetActiveSessionCount() != 0 {
			select {
			case <-timeout:
				t.Fatalf("a refused session is still active (%s)", room)
			case <-time.After(20 * time.Millisecond):
			}
		}
		if n := len(worker.ListSessions(ctx)); n != 0 {
			t.Fatalf("%d sessions listed after a refusal (%s)", n, room)
		}
		if err := rooms.DeleteRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		for len(refused) > 0 { // the server may offer the job again
			<-refused
		}
	}
	if len(arrived) != 0 {
		t.Fatal("a refused session arrived")
	}
	// The worker still takes jobs after refusals.
	if _, err := rooms.CreateRoom(ctx, "go-dispatch-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := rooms.CreateDispatch(ctx, "go-dispatch-2", "go-test-agent", ""); err != nil {
		t.Fatal(err)
	}
	select {
	case a = <-arrived:
	case <-time.After(patience):
		t.Fatal("no dispatch arrived after the refusals")
	}
	if a.info.Room != "go-dispatch-2" {
		t.Fatalf("SessionInfo %+v", a.info)
	}
	// Backend.Close closes the sessions that are still open.
	_ = worker.Close()
	for range a.s.Events() { // closed by Close
	}
	wantCode(t, a.s.Say(ctx, "hi"), ErrCodeInvalidState, "closed")
}
