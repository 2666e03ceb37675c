package backend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// patience is the longest any test waits for something: a guard against hangs, never a timing
// assertion.
const patience = 30 * time.Second

func TestMain(m *testing.M) {
	b, err := GetRegistry().Create(context.Background(), "local", testConfig())
	if err != nil {
		fmt.Fprintf(os.Stderr, "the tests need libvoicebackend built with the test providers "+
			"(cd ../../.. && cargo build --features test-providers --lib): %v\n", err)
		os.Exit(2)
	}
	_ = b.Close()
	os.Exit(m.Run())
}

// testConfig is a backend on the engine's test providers: test-pitch-stt transcribes
// "pitch <hz> hz for <ms> ms", test-tone-tts speaks a 440 Hz tone, 20 ms per character.
func testConfig() *Config {
	return &Config{
		Provider:     "local",
		PipelineType: PipelineTypeSTTTTS,
		STTProvider:  "test-pitch-stt",
		TTSProvider:  "test-tone-tts",
	}
}

// newTestBackend creates and starts a backend on the test providers; edit may change the
// config first. It is closed when the test ends.
func newTestBackend(t testing.TB, edit func(*Config)) *Backend {
	t.Helper()
	cfg := testConfig()
	if edit != nil {
		edit(cfg)
	}
	b, err := GetRegistry().Create(context.Background(), "local", cfg)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return b
}

// newTestSession creates and starts a session; it is closed when the test ends.
func newTestSession(t testing.TB, b *Backend, cfg *SessionConfig) *Session {
	t.Helper()
	s, err := b.CreateSession(context.Background(), cfg)
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Session.Start: %v", err)
	}
	return s
}

func echoAgent(_ context.Context, transcript string) (string, error) {
	return "you said " + transcript, nil
}

// speech is a voiced buzz that webrtc-vad classifies as speech: fundamental f0 plus 10
// harmonics with syllable-like 4 Hz amplitude modulation, amplitude 7000 (the port of
// tests/common/mod.rs `speech`).
func speech(f0 float64, ms, rate int) []int16 {
	n := rate * ms / 1000
	out := make([]int16, n)
	for i := range out {
		t := float64(i) / float64(rate)
		var harmonics float64
		for h := 1; h <= 10; h++ {
			harmonics += math.Sin(t*f0*float64(h)*2*math.Pi) / float64(h)
		}
		syllables := 0.75 + 0.25*math.Sin(t*4*2*math.Pi)
		out[i] = int16(harmonics * syllables * 7000)
	}
	return out
}

func silence(ms, rate int) []int16 { return make([]int16, rate*ms/1000) }

// utterance is one user turn: speech, then enough silence (800 ms) to end it.
func utterance(f0 float64, speechMs, rate int) []int16 {
	return append(speech(f0, speechMs, rate), silence(800, rate)...)
}

func pcmBytes(pcm []int16) []byte {
	out := make([]byte, 2*len(pcm))
	for i, v := range pcm {
		out[2*i] = byte(v)
		out[2*i+1] = byte(uint16(v) >> 8)
	}
	return out
}

func pcmSamples(b []byte) []int16 {
	out := make([]int16, len(b)/2)
	for i := range out {
		out[i] = int16(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
	}
	return out
}

// pushRealtime feeds pcm in 20 ms frames at real-time pace (one frame per 20 ms). Safe to call
// from any goroutine: it returns the first error instead of failing the test. Like a live host
// it goes on after ErrCodeBufferFull (the engine stalled for longer than its input ring: on a
// heavily loaded machine); the loss is counted in health.
func pushRealtime(s *Session, pcm []int16, rate int) error {
	frame := rate / 50
	start := time.Now()
	for i := 0; i*frame < len(pcm); i++ {
		if wait := time.Until(start.Add(time.Duration(i) * 20 * time.Millisecond)); wait > 0 {
			time.Sleep(wait)
		}
		end := min((i+1)*frame, len(pcm))
		if err := s.ProcessAudioInt16(context.Background(), pcm[i*frame:end]); err != nil && !bufferFull(err) {
			return fmt.Errorf("frame %d: %w", i, err)
		}
	}
	return nil
}

func bufferFull(err error) bool {
	var be *BackendError
	return errors.As(err, &be) && be.Code == ErrCodeBufferFull
}

// pushRealtimeBytes is pushRealtime through the []byte (PCM16LE) call.
func pushRealtimeBytes(s *Session, pcm []byte, rate int) error {
	frame := 2 * rate / 50
	start := time.Now()
	for i := 0; i*frame < len(pcm); i++ {
		if wait := time.Until(start.Add(time.Duration(i) * 20 * time.Millisecond)); wait > 0 {
			time.Sleep(wait)
		}
		end := min((i+1)*frame, len(pcm))
		if err := s.ProcessAudio(context.Background(), pcm[i*frame:end]); err != nil && !bufferFull(err) {
			return fmt.Errorf("frame %d: %w", i, err)
		}
	}
	return nil
}

// recorder collects a session's events and received audio in the background.
type recorder struct {
	mu       sync.Mutex
	events   []Event
	audio    []byte
	changed  chan struct{}
	evDone   chan struct{}
	audioEnd chan struct{}
}

func record(s *Session) *recorder {
	r := &recorder{changed: make(chan struct{}, 1), evDone: make(chan struct{}), audioEnd: make(chan struct{})}
	go func() {
		defer close(r.evDone)
		for e := range s.Events() {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
			r.poke()
		}
	}()
	go func() {
		defer close(r.audioEnd)
		for chunk := range s.ReceiveAudio() {
			r.mu.Lock()
			r.audio = append(r.audio, chunk...)
			r.mu.Unlock()
			r.poke()
		}
	}()
	return r
}

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

func (r *recorder) samples() []int16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return pcmSamples(r.audio)
}

// waitEvent returns the index of the first event at or after from that matches, waiting for it
// up to patience.
func (r *recorder) waitEvent(t testing.TB, from int, what string, match func(Event) bool) int {
	t.Helper()
	return r.waitEventWithin(t, patience, from, what, match)
}

// waitEventWithin is waitEvent with a patience of its own (a real LLM on a loaded machine).
func (r *recorder) waitEventWithin(t testing.TB, patience time.Duration, from int, what string, match func(Event) bool) int {
	t.Helper()
	i, err := r.awaitEventWithin(patience, from, match)
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return i
}

// awaitEvent is waitEvent for goroutines other than the test's.
func (r *recorder) awaitEvent(from int, match func(Event) bool) (int, error) {
	return r.awaitEventWithin(patience, from, match)
}

func (r *recorder) awaitEventWithin(patience time.Duration, from int, match func(Event) bool) (int, error) {
	deadline := time.After(patience)
	for {
		events := r.snapshot()
		for i := from; i < len(events); i++ {
			if match(events[i]) {
				return i, nil
			}
		}
		select {
		case <-r.changed:
		case <-r.evDone:
			if len(r.snapshot()) == len(events) {
				return -1, fmt.Errorf("the events channel closed; events: %v", events)
			}
		case <-deadline:
			return -1, fmt.Errorf("timed out after %v; events: %v", patience, events)
		}
	}
}

// waitAudio waits until at least n samples were received.
func (r *recorder) waitAudio(t testing.TB, n int) []int16 {
	t.Helper()
	deadline := time.After(patience)
	for {
		if got := r.samples(); len(got) >= n {
			return got
		}
		select {
		case <-r.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %d samples of audio, got %d", n, len(r.samples()))
		}
	}
}

func isKind(k EventKind) func(Event) bool { return func(e Event) bool { return e.Kind == k } }

func isState(s SessionState) func(Event) bool {
	return func(e Event) bool { return e.Kind == EventStateChanged && e.State == s }
}

func texts(events []Event, k EventKind) []string {
	var out []string
	for _, e := range events {
		if e.Kind == k {
			out = append(out, e.Text)
		}
	}
	return out
}

// toneHz estimates the frequency of a pure tone from its zero crossings.
func toneHz(pcm []int16, rate int) float64 {
	crossings := 0
	for i := 1; i < len(pcm); i++ {
		if (pcm[i-1] < 0) != (pcm[i] < 0) {
			crossings++
		}
	}
	return float64(crossings) / 2 / (float64(len(pcm)) / float64(rate))
}

// wantCode fails unless err is a *BackendError with code and a message containing every one of
// contains; it returns the error.
func wantCode(t testing.TB, err error, code ErrorCode, contains ...string) *BackendError {
	t.Helper()
	var be *BackendError
	if !errors.As(err, &be) {
		t.Fatalf("want a *BackendError with %v, got %v (%T)", code, err, err)
	}
	if be.Code != code {
		t.Fatalf("want %v, got %v: %v", code, be.Code, err)
	}
	for _, c := range contains {
		if !strings.Contains(be.Message, c) {
			t.Fatalf("want a message containing %q, got %q", c, be.Message)
		}
	}
	return be
}
