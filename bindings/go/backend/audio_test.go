package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// ProcessAudio takes a burst longer than the input ring (500 ms) whole, waiting for room as
// the engine drains it; TryProcessAudio, which never waits, takes what fits and drops the rest.
func TestProcessAudioTakesABurstLongerThanTheInputRing(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	s := newTestSession(t, b, &SessionConfig{AgentCallback: echoAgent})
	rec := record(s)
	ctx := context.Background()

	// 1.8 s at once, through both calls: the whole utterance reaches STT.
	if err := s.ProcessAudioInt16(ctx, utterance(150, 1000, 16000)); err != nil {
		t.Fatalf("ProcessAudioInt16 of 1.8 s at once: %v", err)
	}
	i := rec.waitEvent(t, 0, "the first transcript", isKind(EventTranscriptFinal))
	var hz, ms int
	final := rec.snapshot()[i].Text
	if _, err := fmt.Sscanf(final, "pitch %d hz for %d ms", &hz, &ms); err != nil || hz != 150 || ms < 900 {
		t.Fatalf("transcript %q: not the whole second of speech", final)
	}
	if err := s.ProcessAudio(ctx, pcmBytes(utterance(220, 1000, 16000))); err != nil {
		t.Fatalf("ProcessAudio of 1.8 s at once: %v", err)
	}
	i = rec.waitEvent(t, i+1, "the second transcript", isKind(EventTranscriptFinal))
	if final := rec.snapshot()[i].Text; !strings.HasPrefix(final, "pitch 220 hz for ") {
		t.Fatalf("second transcript %q", final)
	}
	for _, e := range rec.snapshot() {
		if e.Kind == EventAudioDropped || e.Kind == EventError {
			t.Fatalf("nothing may be lost: %v", e)
		}
	}

	// The same second through TryProcessAudioInt16: the ring's 500 ms are taken, the rest is
	// dropped and reported.
	err := s.TryProcessAudioInt16(ctx, silence(1000, 16000))
	wantCode(t, err, ErrCodeBufferFull, "of 16000 samples taken")
	rec.waitEvent(t, i, "the dropped audio", isKind(EventAudioDropped))
}

// While the input ring stays full, ProcessAudio waits until its ctx is done, then says how much
// it queued; the rest can be pushed later and nothing is lost. TryProcessAudio does not wait.
func TestProcessAudioWaitsForRoomUntilCtxIsDone(t *testing.T) {
	// Not parallel: the stalling processor holds the realtime threads of the whole process.
	cfg := testConfig()
	cfg.Audio = &AudioConfig{RealtimePriority: Bool(false)}
	b, err := GetRegistry().Create(context.Background(), "local", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := addStallProcessor(b); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := newTestSession(t, b, &SessionConfig{AgentCallback: echoAgent})
	setStall(true)
	t.Cleanup(func() { setStall(false) }) // before the session closes: its thread must go on

	pcm := silence(2000, 16000) // 32000 samples; the ring holds 8000
	ctx, cancel := context.WithCancel(context.Background())
	var cancelled time.Time
	time.AfterFunc(200*time.Millisecond, func() { cancelled = time.Now(); cancel() })
	err = s.ProcessAudioInt16(ctx, pcm)
	returned := time.Now()

	var partial *PartialAudioError
	if !errors.As(err, &partial) || !errors.Is(err, context.Canceled) {
		t.Fatalf("want a *PartialAudioError wrapping context.Canceled, got %v (%T)", err, err)
	}
	if late := returned.Sub(cancelled); late > 500*time.Millisecond {
		t.Errorf("returned %v after the cancel", late)
	}
	if partial.Total != len(pcm) || partial.Queued <= 0 || partial.Queued >= partial.Total {
		t.Fatalf("queued %d of %d", partial.Queued, partial.Total)
	}
	if want := " of 32000 samples queued: context canceled"; !strings.Contains(err.Error(), want) {
		t.Errorf("%q does not say %q", err, want)
	}
	t.Logf("%v", err)
	// A realtime caller is never held: the ring is full, TryProcessAudio drops at once.
	start := time.Now()
	wantCode(t, s.TryProcessAudioInt16(context.Background(), pcm[:320]), ErrCodeBufferFull, "0 of 320 samples taken")
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("TryProcessAudioInt16 took %v", d)
	}
	// A ctx already done queues nothing.
	done, stop := context.WithCancel(context.Background())
	stop()
	var none *PartialAudioError
	if err := s.ProcessAudioInt16(done, pcm); !errors.As(err, &none) || none.Queued != 0 {
		t.Fatalf("with a ctx already done: %v", err)
	}

	// Released, the rest goes in.
	setStall(false)
	if err := s.ProcessAudioInt16(context.Background(), pcm[partial.Queued:]); err != nil {
		t.Fatalf("the rest: %v", err)
	}
}
