package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A whole turn at 48 kHz through the []byte calls: speech in, events, the agent called with
// the transcript, the reply spoken back as audio.
func TestFullTurn(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	var mu sync.Mutex
	var heard []string
	s := newTestSession(t, b, &SessionConfig{
		UserID:           "go-test",
		InputSampleRate:  48000,
		OutputSampleRate: 48000,
		Metadata:         map[string]any{"test": "full turn"},
		AgentCallback: func(ctx context.Context, transcript string) (string, error) {
			if ctx == nil || ctx.Err() != nil {
				return "", errors.New("the agent got no live context")
			}
			mu.Lock()
			heard = append(heard, transcript)
			mu.Unlock()
			return echoAgent(ctx, transcript)
		},
	})
	if s.GetID() == "" {
		t.Fatal("empty session id")
	}
	rec := record(s)
	// Odd-aligned bytes: ProcessAudio's copying path (aligned input goes to the engine as is).
	raw := append([]byte{0}, pcmBytes(utterance(200, 1000, 48000))...)[1:]
	if err := pushRealtimeBytes(s, raw, 48000); err != nil {
		t.Fatal(err)
	}
	i := rec.waitEvent(t, 0, "the agent's response", isKind(EventAgentResponse))
	rec.waitEvent(t, i, "speaking", isState(StateSpeaking))
	end := rec.waitEvent(t, i, "back to listening", isState(StateListening))
	events := rec.snapshot()[:end+1]

	order := []EventKind{EventSpeechStarted, EventSpeechStopped, EventTranscriptFinal, EventAgentResponse}
	at := 0
	for _, e := range events {
		if at < len(order) && e.Kind == order[at] {
			at++
		}
		if e.Kind == EventError {
			t.Errorf("error event: %v", e.Err)
		}
	}
	if at != len(order) {
		t.Fatalf("want %v in this order, got %v", order, events)
	}
	finals := texts(events, EventTranscriptFinal)
	if len(finals) != 1 || !strings.HasPrefix(finals[0], "pitch 200 hz for ") {
		t.Fatalf("final transcripts %q", finals)
	}
	reply := texts(events, EventAgentResponse)
	if want := "you said " + finals[0]; len(reply) != 1 || reply[0] != want {
		t.Fatalf("agent response %q, want %q", reply, want)
	}
	mu.Lock()
	if len(heard) != 1 || heard[0] != finals[0] {
		t.Errorf("the agent heard %q, want %q", heard, finals)
	}
	mu.Unlock()
	var metrics *TurnMetrics
	for _, e := range events {
		if e.Kind == EventTurnMetrics {
			metrics = &e.Metrics
		}
	}
	if metrics == nil || metrics.FirstOutputAudio <= 0 || metrics.TTSFirstAudio <= 0 {
		t.Fatalf("turn metrics %+v", metrics)
	}
	t.Logf("voice to voice %v (stt final %v, agent %v, tts %v)", metrics.FirstOutputAudio,
		metrics.STTFinal, metrics.AgentFirstText, metrics.TTSFirstAudio)
	for k := 1; k < len(events); k++ {
		if events[k].Timestamp < events[k-1].Timestamp {
			t.Errorf("timestamps go back: %v then %v", events[k-1], events[k])
		}
	}

	// The reply: 20 ms of 440 Hz per character, resampled from 24 kHz to 48 kHz.
	want := len(reply[0]) * 20 * 48
	audio := rec.waitAudio(t, want*9/10)
	if hz := toneHz(audio, 48000); hz < 400 || hz > 480 {
		t.Errorf("the reply audio is a %.0f Hz tone, want about 440 Hz (byte order?)", hz)
	}
	if got := s.GetState(); got != StateListening {
		t.Errorf("state %v, want listening", got)
	}
	if n := s.DroppedEvents() + s.DroppedAudioChunks(); n != 0 {
		t.Errorf("%d events or audio chunks dropped", n)
	}
}

// A streaming agent writes its reply in pieces; two turns reach it in the order spoken.
func TestStreamingAgent(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	var mu sync.Mutex
	var heard []string
	var kept *Reply
	s := newTestSession(t, b, &SessionConfig{
		StreamingAgentCallback: func(ctx context.Context, transcript string, reply *Reply) error {
			mu.Lock()
			heard = append(heard, transcript)
			kept = reply
			mu.Unlock()
			for _, piece := range []string{"you ", "said ", transcript} {
				if err := reply.Write(piece); err != nil {
					return err
				}
			}
			return reply.End()
		},
	})
	rec := record(s)
	pcm := append(utterance(150, 700, 16000), utterance(250, 700, 16000)...)
	if err := pushRealtime(s, pcm, 16000); err != nil {
		t.Fatal(err)
	}
	first := rec.waitEvent(t, 0, "the first response", isKind(EventAgentResponse))
	rec.waitEvent(t, first+1, "the second response", isKind(EventAgentResponse))
	events := rec.snapshot()
	finals := texts(events, EventTranscriptFinal)
	replies := texts(events, EventAgentResponse)
	if len(finals) != 2 || !strings.HasPrefix(finals[0], "pitch 150 hz") || !strings.HasPrefix(finals[1], "pitch 250 hz") {
		t.Fatalf("transcripts %q", finals)
	}
	for k := range finals {
		if replies[k] != "you said "+finals[k] {
			t.Errorf("response %q to %q", replies[k], finals[k])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(heard) != fmt.Sprint(finals) {
		t.Errorf("the agent heard %q, want %q", heard, finals)
	}
	// A reply is only valid during its callback.
	wantCode(t, kept.Write("late"), ErrCodeInvalidState, "returned")
	if kept.Cancelled() {
		t.Error("a finished reply reads cancelled")
	}
}

// 100 sessions on one backend at once: each agent hears only its own user.
func TestHundredConcurrentSessions(t *testing.T) {
	const n = 100
	b := newTestBackend(t, func(c *Config) {
		c.MaxConcurrentSessions = n
		// 2 s of input ring instead of 500 ms: room for scheduling stalls on a loaded machine.
		c.Audio = &AudioConfig{InputBuffer: 2 * time.Second}
	})
	sessions := make([]*Session, n)
	recs := make([]*recorder, n)
	heard := make([][]string, n)
	var mu sync.Mutex
	for i := range sessions {
		i := i
		sessions[i] = newTestSession(t, b, &SessionConfig{
			UserID: fmt.Sprintf("user-%d", i),
			AgentCallback: func(ctx context.Context, transcript string) (string, error) {
				mu.Lock()
				heard[i] = append(heard[i], transcript)
				mu.Unlock()
				return "ok", nil
			},
		})
		recs[i] = record(sessions[i])
	}
	if got := b.GetActiveSessionCount(); got != n {
		t.Fatalf("%d active sessions, want %d", got, n)
	}
	_, err := b.CreateSession(context.Background(), &SessionConfig{AgentCallback: echoAgent})
	wantCode(t, err, ErrCodeSessionLimit, "100")

	// Session i speaks at its own pitch for its own length: its transcript is unique.
	pitch := func(i int) int { return 100 + 10*(i%25) }
	length := func(i int) int { return 500 + 20*i }
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Add(1)
		go func(i int, s *Session) {
			defer wg.Done()
			if err := pushRealtime(s, utterance(float64(pitch(i)), length(i), 16000), 16000); err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
			}
		}(i, s)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]int{}
	for i, rec := range recs {
		rec.waitEvent(t, 0, fmt.Sprintf("session %d's response", i), isKind(EventAgentResponse))
		finals := texts(rec.snapshot(), EventTranscriptFinal)
		if len(finals) != 1 || !strings.HasPrefix(finals[0], fmt.Sprintf("pitch %d hz for ", pitch(i))) {
			t.Errorf("session %d: transcripts %q", i, finals)
			continue
		}
		mu.Lock()
		if fmt.Sprint(heard[i]) != fmt.Sprint(finals) {
			t.Errorf("session %d's agent heard %q, want %q", i, heard[i], finals)
		}
		mu.Unlock()
		if j, dup := seen[finals[0]]; dup {
			t.Errorf("sessions %d and %d both produced %q", j, i, finals[0])
		}
		seen[finals[0]] = i
	}
	h, err := b.HealthCheck(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.ActiveSessions != n {
		t.Errorf("health: %d active sessions", h.ActiveSessions)
	}
	t.Logf("health after %d concurrent turns: %+v", n, *h)
	for _, s := range sessions {
		_ = s.Close()
	}
	if got := b.GetActiveSessionCount(); got != 0 {
		t.Errorf("%d active sessions after closing them all", got)
	}
}

// Say speaks without a user turn.
func TestSay(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	s := newTestSession(t, b, &SessionConfig{AgentCallback: echoAgent})
	rec := record(s)
	const greeting = "Hello there, welcome."
	if err := s.Say(context.Background(), greeting); err != nil {
		t.Fatal(err)
	}
	i := rec.waitEvent(t, 0, "speaking", isState(StateSpeaking))
	rec.waitEvent(t, i, "back to listening", isState(StateListening))
	audio := rec.waitAudio(t, len(greeting)*20*16*9/10)
	if hz := toneHz(audio, 16000); hz < 400 || hz > 480 {
		t.Errorf("a %.0f Hz tone, want about 440 Hz", hz)
	}
	if r := texts(rec.snapshot(), EventAgentResponse); len(r) != 0 {
		t.Errorf("Say produced agent responses %q", r)
	}
	wantCode(t, s.Say(context.Background(), "  "), ErrCodeInvalidArgument, "empty")
	wantCode(t, s.Say(context.Background(), "a\x00b"), ErrCodeInvalidArgument, "NUL")
}

// Interrupt stops a reply that is playing; the agent's ctx is cancelled when barge-in cancels
// the reply it is still producing.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	agentDone := make(chan error, 1)
	s := newTestSession(t, b, &SessionConfig{
		StreamingAgentCallback: func(ctx context.Context, transcript string, reply *Reply) error {
			if err := reply.Write("One moment please. "); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				agentDone <- ctx.Err()
				return ctx.Err()
			case <-time.After(patience):
				agentDone <- errors.New("the agent's ctx was never cancelled")
				return nil
			}
		},
	})
	rec := record(s)

	// A long Say, interrupted while it plays.
	long := strings.Repeat("This goes on and on. ", 15) // 6.3 s of audio
	if err := s.Say(context.Background(), long); err != nil {
		t.Fatal(err)
	}
	i := rec.waitEvent(t, 0, "speaking", isState(StateSpeaking))
	if err := s.Interrupt(context.Background()); err != nil {
		t.Fatal(err)
	}
	i = rec.waitEvent(t, i, "interrupted", isKind(EventInterrupted))
	i = rec.waitEvent(t, i, "back to listening", isState(StateListening))
	if got, full := len(rec.samples()), len(long)*20*16; got >= full {
		t.Errorf("got all %d samples of an interrupted reply", got)
	}

	// A user turn whose agent is still writing when the host interrupts.
	if err := pushRealtime(s, utterance(180, 600, 16000), 16000); err != nil {
		t.Fatal(err)
	}
	i = rec.waitEvent(t, i+1, "speaking the first sentence", isState(StateSpeaking))
	if err := s.Interrupt(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.waitEvent(t, i, "interrupted", isKind(EventInterrupted))
	select {
	case err := <-agentDone:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("agent: %v", err)
		}
	case <-time.After(patience):
		t.Fatal("the agent's ctx was not cancelled by Interrupt")
	}
	rec.waitEvent(t, i, "back to listening", isState(StateListening))
	for _, e := range rec.snapshot() {
		if e.Kind == EventError {
			t.Errorf("error event: %v", e.Err)
		}
	}
}

// An agent's error or panic becomes an error event carrying the Go error; the session goes on.
func TestAgentErrors(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	boom := errors.New("boom")
	var calls atomic.Int32
	s := newTestSession(t, b, &SessionConfig{
		AgentCallback: func(ctx context.Context, transcript string) (string, error) {
			if calls.Add(1) == 1 {
				return "", fmt.Errorf("agent failed: %w", boom)
			}
			panic("agent bug")
		},
	})
	rec := record(s)
	if err := pushRealtime(s, append(utterance(220, 600, 16000), utterance(220, 600, 16000)...), 16000); err != nil {
		t.Fatal(err)
	}
	i := rec.waitEvent(t, 0, "the first error", isKind(EventError))
	e := rec.snapshot()[i]
	wantCode(t, e.Err, ErrCodeProvider, "agent")
	if !errors.Is(e.Err, boom) {
		t.Errorf("the error event does not carry the agent's error: %v", e.Err)
	}
	i = rec.waitEvent(t, i+1, "the second error", isKind(EventError))
	e = rec.snapshot()[i]
	wantCode(t, e.Err, ErrCodePanic)
	if e.Err.Err == nil || !strings.Contains(e.Err.Err.Error(), "agent bug") {
		t.Errorf("the panic is not attached: %v", e.Err)
	}
	rec.waitEvent(t, i, "back to listening", isState(StateListening))
}
