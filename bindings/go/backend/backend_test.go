package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRegistryAndVersion(t *testing.T) {
	t.Parallel()
	r := GetRegistry()
	if got := r.ListProviders(); len(got) == 0 || !r.IsRegistered("local") {
		t.Fatalf("providers %q, want local among them", got)
	}
	if r.IsRegistered("no-such-backend") {
		t.Error("no-such-backend is registered")
	}
	if LibraryABIVersion() != ABIVersion {
		t.Errorf("library ABI %d, header %d", LibraryABIVersion(), ABIVersion)
	}
	if Version() == "" {
		t.Error("empty version")
	}
}

func TestConfigJSON(t *testing.T) {
	t.Parallel()
	cfg := &Config{
		STTProvider:           "s",
		TTSProvider:           "t",
		STTConfig:             map[string]any{"delay_ms": 5},
		LatencyTarget:         300 * time.Millisecond,
		MaxConcurrentSessions: 7,
		Audio:                 &AudioConfig{SampleRate: 8000, RealtimePriority: Bool(false), RealtimeThreads: 2},
		VAD:                   &VADConfig{Mode: Int(0)},
		Turn:                  &TurnConfig{Silence: 400 * time.Millisecond},
		Interruptions:         &InterruptionConfig{},
		Extra:                 map[string]any{"turn": map[string]any{"min_speech_ms": 0}},
	}
	js, err := cfg.configJSON("test", "local")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatal(err)
	}
	want := `{"audio":{"realtime_priority":false,"realtime_threads":2,"sample_rate":8000},"latency_target_ms":300,` +
		`"max_concurrent_sessions":7,"provider":"local","stt_config":{"delay_ms":5},"stt_provider":"s",` +
		`"tts_provider":"t","turn":{"min_speech_ms":0,"silence_ms":400},"vad":{"mode":0}}`
	if again, _ := json.Marshal(got); string(again) != want {
		t.Errorf("config JSON\n got %s\nwant %s", again, want)
	}
	js, err = (&SessionConfig{}).configJSON("test")
	if err != nil || string(js) != "{}" {
		t.Errorf("empty session config: %s %v", js, err)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	create := func(name string, edit func(*Config)) error {
		cfg := testConfig()
		cfg.Provider = ""
		if edit != nil {
			edit(cfg)
		}
		b, err := GetRegistry().Create(ctx, name, cfg)
		if err == nil {
			_ = b.Close()
		}
		return err
	}

	t.Run("unknown provider", func(t *testing.T) {
		wantCode(t, create("no-such-backend", nil), ErrCodeProviderNotFound, "no-such-backend")
		wantCode(t, create("local", func(c *Config) { c.STTProvider = "no-such-stt" }), ErrCodeProviderNotFound, "no-such-stt")
		wantCode(t, create("local", func(c *Config) { c.TTSProvider = "no-such-tts" }), ErrCodeProviderNotFound, "no-such-tts")
	})

	t.Run("invalid config names the field", func(t *testing.T) {
		err := create("local", func(c *Config) { c.Turn = &TurnConfig{Silence: 10 * time.Millisecond} })
		be := wantCode(t, err, ErrCodeInvalidConfig, "turn.silence_ms", "10")
		if be.Op != "Registry.Create" || !strings.Contains(be.Error(), "VB_ERR_INVALID_CONFIG") {
			t.Errorf("Op %q, Error() %q", be.Op, be.Error())
		}
		wantCode(t, create("local", func(c *Config) { c.MaxConcurrentSessions = 200000 }), ErrCodeInvalidConfig, "max_concurrent_sessions")
		wantCode(t, create("local", func(c *Config) { c.Audio = &AudioConfig{SampleRate: 44100} }), ErrCodeInvalidConfig, "audio.sample_rate")
		wantCode(t, create("local", func(c *Config) { c.STTConfig = map[string]any{"bogus": 1} }), ErrCodeInvalidConfig, "stt_config.bogus")
		wantCode(t, create("local", func(c *Config) { c.Extra = map[string]any{"no_such_key": 1} }), ErrCodeInvalidConfig, "no_such_key")
		wantCode(t, create("local", func(c *Config) { c.PipelineType = "s2s" }), ErrCodeInvalidConfig, "s2s_provider")
		// Checked on the Go side before the engine sees them.
		wantCode(t, create("local", func(c *Config) { c.LatencyTarget = -time.Second }), ErrCodeInvalidConfig, "latency_target_ms")
		wantCode(t, create("local", func(c *Config) { c.Turn = &TurnConfig{Silence: 1500 * time.Microsecond} }), ErrCodeInvalidConfig, "turn.silence_ms")
		wantCode(t, create("local", func(c *Config) { c.Provider = "other" }), ErrCodeInvalidConfig, "provider")
		wantCode(t, create("local", func(c *Config) { c.TTSConfig = map[string]any{"f": func() {}} }), ErrCodeInvalidConfig, "tts_config")
	})

	b := newTestBackend(t, func(c *Config) { c.MaxConcurrentSessions = 1 })

	t.Run("session limit", func(t *testing.T) {
		s, err := b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent})
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent})
		wantCode(t, err, ErrCodeSessionLimit, "max_concurrent_sessions")
		if IsRetryable(err) {
			t.Error("a session limit is not retryable")
		}
		_ = s.Close()
		s, err = b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent})
		if err != nil {
			t.Fatalf("a slot should be free again: %v", err)
		}
		_ = s.Close()
	})

	t.Run("session config", func(t *testing.T) {
		_, err := b.CreateSession(ctx, &SessionConfig{})
		wantCode(t, err, ErrCodeInvalidArgument, "agent")
		_, err = b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent, OutputSampleRate: 22050})
		wantCode(t, err, ErrCodeInvalidConfig, "output_sample_rate")
		_, err = b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent, Transport: "webrtc"})
		wantCode(t, err, ErrCodeProviderNotFound, "webrtc")
		_, err = b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent,
			StreamingAgentCallback: func(context.Context, string, *Reply) error { return nil }})
		wantCode(t, err, ErrCodeInvalidArgument, "not both")
		_, err = b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent, InputSampleRate: -1})
		wantCode(t, err, ErrCodeInvalidConfig, "input_sample_rate")
		if n := b.GetActiveSessionCount(); n != 0 {
			t.Errorf("%d sessions left by failed creations", n)
		}
	})

	t.Run("audio before start", func(t *testing.T) {
		s, err := b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.GetState() != StateIdle {
			t.Errorf("state %v before start", s.GetState())
		}
		wantCode(t, s.ProcessAudioInt16(ctx, make([]int16, 320)), ErrCodeInvalidState, "not been started")
		wantCode(t, s.ProcessAudio(ctx, make([]byte, 640)), ErrCodeInvalidState, "not been started")
		wantCode(t, s.Say(ctx, "hi"), ErrCodeInvalidState)
		wantCode(t, s.Interrupt(ctx), ErrCodeInvalidState)
		wantCode(t, s.ProcessAudio(ctx, make([]byte, 3)), ErrCodeInvalidArgument, "even")
	})

	t.Run("buffer full", func(t *testing.T) {
		s, err := b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rec := record(s)
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// The input ring holds 500 ms; 2 s in one call that does not wait overflows it.
		err = s.TryProcessAudioInt16(ctx, speech(150, 2000, 16000))
		wantCode(t, err, ErrCodeBufferFull, "8000 of 32000")
		if !IsRetryable(err) || !IsRetryable(fmt.Errorf("wrapped: %w", err)) {
			t.Error("buffer full should be retryable")
		}
		i := rec.waitEvent(t, 0, "audio dropped", isKind(EventAudioDropped))
		if got := rec.snapshot()[i].DroppedSamples; got != 24000 {
			t.Errorf("dropped %d samples, want 24000", got)
		}
		h, err := b.HealthCheck(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h.FramesDropped == 0 || h.Status != HealthStatusDegraded {
			t.Errorf("health after an overrun: %+v", *h)
		}
	})

	t.Run("lifecycle", func(t *testing.T) {
		s, err := b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		wantCode(t, s.Start(ctx), ErrCodeInvalidState, "already started")
		wantCode(t, b.Start(ctx), ErrCodeInvalidState, "already running")
		if err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Stop(ctx); err != nil {
			t.Fatalf("a second Stop: %v", err)
		}
		wantCode(t, s.ProcessAudioInt16(ctx, make([]int16, 320)), ErrCodeInvalidState, "stopped")
		wantCode(t, s.Start(ctx), ErrCodeInvalidState)
		_ = s.Close()
		_ = s.Close()
		wantCode(t, s.ProcessAudioInt16(ctx, make([]int16, 320)), ErrCodeInvalidState, "closed")
		wantCode(t, s.Say(ctx, "hi"), ErrCodeInvalidState, "closed")
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := b.CreateSession(cancelled, &SessionConfig{AgentCallback: echoAgent}); !errors.Is(err, context.Canceled) {
			t.Errorf("a cancelled ctx: %v", err)
		}

		idle, err := GetRegistry().Create(ctx, "local", testConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		_, err = idle.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent})
		wantCode(t, err, ErrCodeInvalidState, "start the backend")
	})

	t.Run("not a BackendError", func(t *testing.T) {
		if IsRetryable(nil) || IsRetryable(errors.New("x")) {
			t.Error("plain errors are not retryable")
		}
		for code := ErrCodeInvalidArgument; code <= ErrCodeInternal; code++ {
			if !strings.HasPrefix(code.String(), "VB_ERR_") {
				t.Errorf("code %d is named %q", int(code), code)
			}
		}
	})
}

func TestHealth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := GetRegistry().Create(ctx, "local", func() *Config {
		c := testConfig()
		c.MaxConcurrentSessions = 10
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h, err := b.HealthCheck(ctx)
	if err != nil || h.Status != HealthStatusUnhealthy {
		t.Fatalf("before start: %+v %v", h, err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h, err = b.HealthCheck(ctx)
	if err != nil || h.Status != HealthStatusHealthy || h.ActiveSessions != 0 || h.LastCheck.IsZero() {
		t.Fatalf("started: %+v %v", h, err)
	}
	var sessions []*Session
	for range 9 {
		s, err := b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent})
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	h, _ = b.HealthCheck(ctx)
	if h.Status != HealthStatusDegraded || h.ActiveSessions != 9 || h.Details["active_sessions"] != 9 {
		t.Errorf("at 90%% of the limit: %+v", *h)
	}
	for _, s := range sessions[1:] {
		_ = s.Close()
	}
	s := sessions[0]
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pushRealtime(s, silence(200, 16000), 16000); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(patience)
	for {
		h, _ = b.HealthCheck(ctx)
		if h.FramesProcessed >= 8 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h.ActiveSessions != 1 || h.FramesProcessed < 8 {
		t.Errorf("one session with 200 ms of audio: %+v", *h)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := b.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	h, _ = b.HealthCheck(ctx)
	if h.Status != HealthStatusUnhealthy {
		t.Errorf("stopped: %+v", *h)
	}
}

// Backend.Stop drains, stops every session and closes their channels; Close frees everything.
func TestStopAndClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := GetRegistry().Create(ctx, "", testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if b.GetConfig().STTProvider != "test-pitch-stt" {
		t.Errorf("GetConfig: %+v", b.GetConfig())
	}
	a := newTestSession(t, b, &SessionConfig{AgentCallback: echoAgent})
	c := newTestSession(t, b, &SessionConfig{AgentCallback: echoAgent})
	got, err := b.GetSession(ctx, a.GetID())
	if err != nil || got != a {
		t.Fatalf("GetSession: %v %v", got, err)
	}
	if list := b.ListSessions(ctx); len(list) != 2 {
		t.Fatalf("ListSessions: %v", list)
	}
	_, err = b.GetSession(ctx, "no-such-session")
	wantCode(t, err, ErrCodeNotFound)
	recA, recC := record(a), record(c)
	if err := a.Say(ctx, "Goodbye."); err != nil {
		t.Fatal(err)
	}
	recA.waitEvent(t, 0, "speaking", isState(StateSpeaking))

	// A session stopped on its own closes its channels.
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, recC)
	if c.GetState() != StateStopped {
		t.Errorf("state %v after Stop", c.GetState())
	}
	if err := b.CloseSession(ctx, c.GetID()); err != nil {
		t.Fatal(err)
	}

	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, recA)
	events := recA.snapshot()
	if last := events[len(events)-1]; last.State != StateStopped {
		t.Errorf("last event %v", last)
	}
	if a.GetState() != StateStopped || b.GetActiveSessionCount() != 0 {
		t.Errorf("after Backend.Stop: state %v, %d sessions", a.GetState(), b.GetActiveSessionCount())
	}
	_, err = b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent})
	wantCode(t, err, ErrCodeInvalidState, "stopp")
	wantCode(t, b.Stop(ctx), ErrCodeInvalidState)
	_ = b.Close()
	_ = b.Close()
	wantCode(t, a.Say(ctx, "hi"), ErrCodeInvalidState, "closed")
	_, err = b.HealthCheck(ctx)
	wantCode(t, err, ErrCodeInvalidState, "closed")
	if b.GetActiveSessionCount() != 0 {
		t.Error("sessions on a closed backend")
	}
}

func waitClosed(t *testing.T, r *recorder) {
	t.Helper()
	for _, ch := range []chan struct{}{r.evDone, r.audioEnd} {
		select {
		case <-ch:
		case <-time.After(patience):
			t.Fatal("a session channel was not closed")
		}
	}
}

// An agent may hang up: Stop or Close its own session from inside the callback.
func TestStopAndCloseFromTheAgent(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	for _, closeIt := range []bool{false, true} {
		t.Run(fmt.Sprintf("close=%v", closeIt), func(t *testing.T) {
			var s *Session
			ready, returned := make(chan struct{}), make(chan error, 1)
			s = newTestSession(t, b, &SessionConfig{
				AgentCallback: func(ctx context.Context, transcript string) (string, error) {
					<-ready
					if closeIt {
						returned <- s.Close()
					} else {
						returned <- s.Stop(ctx)
					}
					return "goodbye", nil
				},
			})
			close(ready)
			rec := record(s)
			// The agent hangs up before all the trailing silence is pushed.
			var be *BackendError
			if err := pushRealtimeBytes(s, pcmBytes(utterance(200, 600, 16000)), 16000); err != nil &&
				!(errors.As(err, &be) && be.Code == ErrCodeInvalidState) {
				t.Fatal(err)
			}
			select {
			case err := <-returned:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(patience):
				t.Fatal("the agent did not return from Stop/Close")
			}
			waitClosed(t, rec)
			if s.GetState() != StateStopped {
				t.Errorf("state %v", s.GetState())
			}
			deadline := time.Now().Add(patience)
			for b.GetActiveSessionCount() != 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := b.GetActiveSessionCount(); n != 0 {
				t.Errorf("%d active sessions", n)
			}
			wantCode(t, s.ProcessAudioInt16(context.Background(), make([]int16, 320)), ErrCodeInvalidState)
		})
	}
}

// Backend.Stop drains for its ctx's deadline, then cancels agent callbacks that are still
// running, so that an agent waiting for its ctx cannot hang the stop.
func TestStopCancelsASlowAgent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := GetRegistry().Create(ctx, "local", testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	entered, left := make(chan struct{}), make(chan error, 1)
	s := newTestSession(t, b, &SessionConfig{
		AgentCallback: func(ctx context.Context, transcript string) (string, error) {
			close(entered)
			<-ctx.Done()
			left <- ctx.Err()
			return "", ctx.Err()
		},
	})
	go func() { _ = pushRealtime(s, utterance(200, 600, 16000), 16000) }()
	select {
	case <-entered:
	case <-time.After(patience):
		t.Fatal("the agent was not called")
	}
	stopCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Stop(stopCtx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(patience):
		t.Fatal("Backend.Stop hangs on an agent waiting for its ctx")
	}
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Errorf("agent ctx: %v", err)
	}
}

// Control and audio calls racing with Stop and Close from several goroutines: every failure
// is a *BackendError, nothing crashes, nothing hangs.
func TestConcurrentLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := GetRegistry().Create(ctx, "local", testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	frame := speech(200, 20, 16000)
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := 0; i < 10; i++ {
		s, err := b.CreateSession(ctx, &SessionConfig{AgentCallback: echoAgent, EventBuffer: 4})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 4; j++ {
			wg.Add(1)
			go func(s *Session, j int) {
				defer wg.Done()
				for k := 0; k < 30; k++ {
					for _, err := range []error{
						s.Say(ctx, "Hello."), s.Interrupt(ctx), s.ProcessAudioInt16(ctx, frame),
						s.ProcessAudio(ctx, append([]byte{0}, pcmBytes(frame)...)[1:]), // odd-aligned: the copying path
					} {
						var be *BackendError
						if err != nil && !errors.As(err, &be) {
							errs <- err
						}
					}
					if _, err := b.HealthCheck(ctx); err != nil {
						errs <- err
					}
					if k == 20 && j == 2 {
						_ = s.Stop(ctx)
					}
					if k == 25 && j == 3 {
						_ = s.Close()
					}
				}
			}(s, j)
		}
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { _ = b.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(patience):
		t.Fatal("Backend.Close hangs")
	}
	close(errs)
	for err := range errs {
		t.Errorf("not a *BackendError: %v", err)
	}
}

// The host closes a session while its agent hangs up too: neither waits for the other.
func TestHostAndAgentCloseAtOnce(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	var s *Session
	ready, entered, agentClosed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	s = newTestSession(t, b, &SessionConfig{
		AgentCallback: func(ctx context.Context, transcript string) (string, error) {
			<-ready
			close(entered)
			<-ctx.Done() // the host's Close cancelled us and waits for us to return
			_ = s.Close()
			close(agentClosed)
			return "", ctx.Err()
		},
	})
	close(ready)
	go func() { _ = pushRealtime(s, utterance(200, 600, 16000), 16000) }()
	select {
	case <-entered:
	case <-time.After(patience):
		t.Fatal("the agent was not called")
	}
	hostClosed := make(chan struct{})
	go func() { _ = s.Close(); close(hostClosed) }()
	for _, ch := range []chan struct{}{agentClosed, hostClosed} {
		select {
		case <-ch:
		case <-time.After(patience):
			t.Fatal("deadlock between the host's Close and the agent's Close")
		}
	}
	wantCode(t, s.Say(context.Background(), "hi"), ErrCodeInvalidState, "closed")
}

// The livekit backend as the seed's examples use it: ProviderConfig {url, api_key, api_secret}
// and sessions with Transport "webrtc" and a Room. No server listens here: Start reports that
// after the retry policy, and a session without a Room is refused before anything connects.
func TestLiveKitSessionsNeedARoomAndReportAnUnreachableServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := GetRegistry().Create(ctx, "livekit", &Config{
		ProviderConfig: map[string]any{"url": "ws://127.0.0.1:9", "api_key": "devkey", "api_secret": "secret"},
		STTProvider:    "test-pitch-stt",
		TTSProvider:    "test-tone-tts",
		Extra:          map[string]any{"retry": map[string]any{"max_attempts": 2, "initial_backoff_ms": 10}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	isCode := func(err error, code ErrorCode) bool {
		var be *BackendError
		return errors.As(err, &be) && be.Code == code
	}
	_, err = b.CreateSession(ctx, &SessionConfig{Transport: "webrtc", AgentCallback: echoAgent})
	if !isCode(err, ErrCodeInvalidConfig) || !strings.Contains(err.Error(), "room: required") {
		t.Fatalf("a webrtc session without a room: %v", err)
	}
	s, err := b.CreateSession(ctx, &SessionConfig{Transport: "webrtc", Room: "support-42", UserID: "user-123", AgentCallback: echoAgent})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(ctx); !isCode(err, ErrCodeTimeout) || !strings.Contains(err.Error(), "livekit: the server at ws://127.0.0.1:9") {
		t.Fatalf("an unreachable server: %v", err)
	}
}
