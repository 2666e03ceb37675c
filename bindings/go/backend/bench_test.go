package backend

import (
	"context"
	"testing"
	"time"
)

// The benchmarks push 20 ms frames of 48 kHz silence as fast as they can. The input ring is
// set to 10 s, and every benchBatch frames the timer stops until the realtime thread has
// processed everything, so that no call in the timed part meets a full ring.
const benchBatch = 250 // 5 s of audio

func benchSession(b *testing.B) (*Backend, *Session) {
	b.Helper()
	be := newTestBackend(b, func(c *Config) {
		c.Audio = &AudioConfig{InputBuffer: 10 * time.Second, RealtimePriority: Bool(false)}
	})
	s := newTestSession(b, be, &SessionConfig{InputSampleRate: 48000, AgentCallback: echoAgent})
	return be, s
}

// waitProcessed waits until the engine has processed frames frames (one internal 20 ms frame
// per pushed 20 ms frame; the resampler may hold one back).
func waitProcessed(b *testing.B, be *Backend, frames int) {
	deadline := time.Now().Add(patience)
	for {
		h, err := be.HealthCheck(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if h.FramesProcessed+1 >= uint64(frames) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the engine processed %d of %d frames", h.FramesProcessed, frames)
		}
		time.Sleep(time.Millisecond)
	}
}

// runPush times push, which sends frames of the given size (0: empty calls, no waits needed).
func runPush(b *testing.B, samples int, push func(*Session) ErrorCode) {
	be, s := benchSession(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if samples > 0 && i > 0 && i%benchBatch == 0 {
			b.StopTimer()
			waitProcessed(b, be, i)
			b.StartTimer()
		}
		if code := push(s); code != 0 {
			b.Fatalf("frame %d: %v", i, code)
		}
	}
}

func codeOf(err error) ErrorCode {
	if err == nil {
		return 0
	}
	if be, ok := err.(*BackendError); ok {
		return be.Code
	}
	return ErrCodeInternal
}

// BenchmarkProcessAudio: the binding's realtime calls (TryProcessAudio*), one 20 ms frame at
// 48 kHz (960 samples). The *_0samples variants push nothing: the engine's call is then nearly
// free, so they show the binding's own overhead (compare with BenchmarkProcessAudioC/*_0samples).
// int16_waiting is ProcessAudioInt16, which asks for the ring's room in the same cgo call.
func BenchmarkProcessAudio(b *testing.B) {
	ctx := context.Background()
	frame := make([]int16, 960)
	raw := make([]byte, 2*960)
	b.Run("int16", func(b *testing.B) {
		runPush(b, 960, func(s *Session) ErrorCode { return codeOf(s.TryProcessAudioInt16(ctx, frame)) })
	})
	b.Run("bytes", func(b *testing.B) {
		runPush(b, 960, func(s *Session) ErrorCode { return codeOf(s.TryProcessAudio(ctx, raw)) })
	})
	b.Run("int16_0samples", func(b *testing.B) {
		runPush(b, 0, func(s *Session) ErrorCode { return codeOf(s.TryProcessAudioInt16(ctx, frame[:0])) })
	})
	b.Run("bytes_0samples", func(b *testing.B) {
		runPush(b, 0, func(s *Session) ErrorCode { return codeOf(s.TryProcessAudio(ctx, raw[:0])) })
	})
	b.Run("int16_waiting", func(b *testing.B) {
		runPush(b, 960, func(s *Session) ErrorCode { return codeOf(s.ProcessAudioInt16(ctx, frame)) })
	})
}

// BenchmarkProcessAudioC: the baselines. cgo_call is vb_session_process_audio called from Go
// with nothing around it (one cgo transition per call); c_loop calls it from a C loop (the C
// call alone).
func BenchmarkProcessAudioC(b *testing.B) {
	frame := make([]int16, 960)
	for _, samples := range []int{960, 0} {
		suffix := ""
		if samples == 0 {
			suffix = "_0samples"
		}
		pcm := frame[:samples]
		b.Run("cgo_call"+suffix, func(b *testing.B) {
			runPush(b, samples, func(s *Session) ErrorCode { return processAudioC(s, pcm) })
		})
		b.Run("c_loop"+suffix, func(b *testing.B) {
			be, s := benchSession(b)
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(benchBatch, b.N-done)
				if code := processAudioCLoop(s, pcm, n); code != 0 {
					b.Fatalf("frame %d: %v", done, code)
				}
				done += n
				if samples > 0 {
					b.StopTimer()
					waitProcessed(b, be, done)
					b.StartTimer()
				}
			}
		})
	}
}
