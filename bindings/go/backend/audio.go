package backend

// A session's audio: ProcessAudio (waits for room in the input ring), TryProcessAudio (never
// blocks: for realtime callers), and the reader behind ReceiveAudio.

/*
#include <stdlib.h>
#include "voicebackend.h"

// vb_session_process_audio with no more than the input ring takes now
// (vb_session_writable_samples), so that nothing is dropped; *accepted gets the count. With no
// room it pushes nothing, which still reports a session that takes no audio (not started,
// stopped, a network transport, another producer inside the call).
static enum VbStatus vbgo_push_available(VbSession *session, const int16_t *pcm, size_t samples,
                                         size_t *accepted) {
	size_t room = 0;
	enum VbStatus status = vb_session_writable_samples(session, &room);
	if (status != VB_OK) return status;
	if (room < samples) samples = room;
	return vb_session_process_audio(session, samples > 0 ? pcm : NULL, samples, accepted);
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"time"
	"unsafe"
)

// PartialAudioError is the error of ProcessAudio when its ctx ended before all of the audio
// was queued. The first Queued samples are with the engine; the rest (from sample Queued on)
// was never given to it: push it again, or drop it. Counts are in samples (2 bytes each for
// ProcessAudio's PCM16LE). It unwraps to ctx's error, so errors.Is(err, context.Canceled) and
// errors.Is(err, context.DeadlineExceeded) work.
type PartialAudioError struct {
	Op     string // "Session.ProcessAudio" or "Session.ProcessAudioInt16"
	Queued int    // samples the engine took
	Total  int    // samples given
	Err    error  // ctx.Err()
}

// Error implements error: "voicebackend: <Op>: <Queued> of <Total> samples queued: <Err>".
func (e *PartialAudioError) Error() string {
	return fmt.Sprintf("voicebackend: %s: %d of %d samples queued: %v", e.Op, e.Queued, e.Total, e.Err)
}

// Unwrap returns Err.
func (e *PartialAudioError) Unwrap() error { return e.Err }

// ProcessAudio feeds PCM16LE mono audio at the input sample rate (vb_session_process_audio),
// all of it: what does not fit in the input ring (Audio.InputBuffer, 500 ms by default) now is
// pushed in pieces as the engine drains the ring, waiting for room until ctx is done. Then it
// returns a *PartialAudioError saying how much was queued (it unwraps to ctx.Err()); nothing
// is lost either way. So a host may push a file or a burst of any length at once. It blocks
// while the ring is full: an audio callback that must not block uses TryProcessAudio. Other
// failures (ErrCodeInvalidState before Start, after Stop, on a network transport) return at
// once, naming how much was queued before. One producer at a time.
func (s *Session) ProcessAudio(ctx context.Context, pcm []byte) error {
	return s.withSamples("Session.ProcessAudio", pcm, func(op string, samples []int16) error {
		return s.pushAll(ctx, op, samples)
	})
}

// ProcessAudioInt16 feeds mono samples at the input sample rate, waiting for room until ctx is
// done; see ProcessAudio.
func (s *Session) ProcessAudioInt16(ctx context.Context, pcm []int16) error {
	return s.pushAll(ctx, "Session.ProcessAudioInt16", pcm)
}

// TryProcessAudio feeds PCM16LE mono audio at the input sample rate and never blocks: the
// realtime variant of ProcessAudio, for audio callbacks that push at real-time pace (it makes no
// allocation for aligned input). ErrCodeBufferFull when the input ring had no room for all of
// it: its message says how many samples were taken, and the rest is dropped, counted in health
// and reported as EventAudioDropped. Aligned input on little-endian hosts is passed without a
// copy.
func (s *Session) TryProcessAudio(ctx context.Context, pcm []byte) error {
	return s.withSamples("Session.TryProcessAudio", pcm, func(op string, samples []int16) error {
		return s.tryPush(ctx, op, samples)
	})
}

// TryProcessAudioInt16 feeds mono samples at the input sample rate without blocking; see
// TryProcessAudio.
func (s *Session) TryProcessAudioInt16(ctx context.Context, pcm []int16) error {
	return s.tryPush(ctx, "Session.TryProcessAudioInt16", pcm)
}

// withSamples runs push on pcm (PCM16LE) as samples: aligned input on little-endian hosts
// without a copy, else through the session's scratch buffer.
func (s *Session) withSamples(op string, pcm []byte, push func(string, []int16) error) error {
	if len(pcm)%2 != 0 {
		return &BackendError{Op: op, Code: ErrCodeInvalidArgument, Message: "PCM16LE audio must have an even number of bytes"}
	}
	if len(pcm) == 0 {
		return push(op, nil)
	}
	if littleEndian && uintptr(unsafe.Pointer(&pcm[0]))%2 == 0 {
		return push(op, unsafe.Slice((*int16)(unsafe.Pointer(&pcm[0])), len(pcm)/2))
	}
	s.scratchMu.Lock()
	defer s.scratchMu.Unlock()
	n := len(pcm) / 2
	if cap(s.scratch) < n {
		s.scratch = make([]int16, n)
	}
	buf := s.scratch[:n]
	for i := range buf {
		buf[i] = int16(uint16(pcm[2*i]) | uint16(pcm[2*i+1])<<8)
	}
	return push(op, buf)
}

// tryPush is one vb_session_process_audio call with everything.
func (s *Session) tryPush(ctx context.Context, op string, pcm []int16) error {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	p := pcmPtr(pcm)
	s.life.RLock()
	if s.c == nil {
		s.life.RUnlock()
		return closedSession(op)
	}
	runtime.LockOSThread()
	status := C.vb_session_process_audio(s.c, p, C.size_t(len(pcm)), s.accepted)
	var err error
	if status != C.VB_OK {
		err = s.audioError(op, status, len(pcm))
	}
	runtime.UnlockOSThread()
	s.life.RUnlock()
	return err
}

// pushAll pushes what the input ring takes, then waits for room for the rest, until all of pcm
// is queued or ctx is done.
func (s *Session) pushAll(ctx context.Context, op string, pcm []int16) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return &PartialAudioError{Op: op, Total: len(pcm), Err: err}
	}
	// The realtime thread drains the ring within a frame (half a frame when pooled): look again
	// a few times per frame.
	poll := max(s.frame/4, time.Millisecond)
	var timer *time.Timer
	queued := 0
	for {
		n, err := s.pushAvailable(op, pcm[queued:])
		queued += n
		if err != nil {
			var be *BackendError
			if queued > 0 && errors.As(err, &be) {
				be.Message += " (" + strconv.Itoa(queued) + " of " + strconv.Itoa(len(pcm)) + " samples were queued before)"
			}
			return err
		}
		if queued == len(pcm) {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(poll)
			defer timer.Stop()
		} else {
			timer.Reset(poll) // the timer fired and was drained below
		}
		select {
		case <-ctx.Done():
			return &PartialAudioError{Op: op, Queued: queued, Total: len(pcm), Err: ctx.Err()}
		case <-timer.C:
		}
	}
}

// pushAvailable pushes as much of pcm as the input ring takes now; returns how much.
func (s *Session) pushAvailable(op string, pcm []int16) (int, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.c == nil {
		return 0, closedSession(op)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	*s.accepted = 0
	status := C.vbgo_push_available(s.c, pcmPtr(pcm), C.size_t(len(pcm)), s.accepted)
	n := int(*s.accepted)
	if status != C.VB_OK {
		return n, s.audioError(op, status, len(pcm))
	}
	return n, nil
}

// audioError reads the failure of the last audio call (same OS thread, session locked).
func (s *Session) audioError(op string, status C.enum_VbStatus, given int) error {
	err := lastError(op, status).(*BackendError)
	if status == C.VB_ERR_BUFFER_FULL {
		err.Message += " (" + strconv.Itoa(int(*s.accepted)) + " of " + strconv.Itoa(given) + " samples taken)"
	}
	return err
}

// readLoop drains the engine's output ring at real-time pace into the ReceiveAudio channel.
func (s *Session) readLoop() {
	defer close(s.readerDone)
	defer close(s.audio)
	frame := max(int(int64(s.outRate)*int64(s.frame)/int64(time.Second)), 1)
	buf := make([]int16, 5*frame)
	tick := time.NewTicker(s.frame)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-s.done:
			return
		case now := <-tick.C:
			// Read what played since the previous tick (one frame normally; more after a
			// late tick), as a sound card would.
			due := int(int64(now.Sub(last)) * int64(s.outRate) / int64(time.Second))
			last = now
			due = min(max(due, frame), len(buf))
			n := s.readAudio(buf[:due])
			if n == 0 {
				continue
			}
			chunk := make([]byte, 2*n)
			for i, v := range buf[:n] {
				chunk[2*i] = byte(v)
				chunk[2*i+1] = byte(uint16(v) >> 8)
			}
			select {
			case s.audio <- chunk:
			default:
				s.droppedAudio.Add(1)
			}
		}
	}
}

func (s *Session) readAudio(buf []int16) int {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.c == nil {
		return 0
	}
	var written C.size_t
	if C.vb_session_read_audio(s.c, (*C.int16_t)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &written) != C.VB_OK {
		return 0
	}
	return int(written)
}
