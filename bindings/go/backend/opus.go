package backend

// Opus at the host's edge (SessionConfig.InputCodec / OutputCodec CodecOpus): for a host that
// carries the session's audio over its own transport as Opus packets.

/*
#include <stdint.h>
#include "voicebackend.h"

// vb_session_read_opus with the packet's length as the result (a negative status on failure),
// so that no out-parameter memory is needed per call.
static int64_t vbgo_read_opus(VbSession *session, uint8_t *buf, size_t capacity) {
	size_t written = 0;
	enum VbStatus status = vb_session_read_opus(session, buf, capacity, &written);
	return status == VB_OK ? (int64_t)written : -(int64_t)status;
}
*/
import "C"

import (
	"context"
	"runtime"
	"unsafe"
)

// Codec is how a session's audio crosses the host's edge (SessionConfig.InputCodec,
// SessionConfig.OutputCodec).
type Codec string

const (
	// CodecPCM is mono PCM16 at the session's rate: ProcessAudio, ReceiveAudio (the default).
	CodecPCM Codec = "pcm"
	// CodecOpus is Opus packets: ProcessOpus, ReadOpus.
	CodecOpus Codec = "opus"
)

// OpusMaxPacket is a buffer size that always holds a packet of ReadOpus (VB_OPUS_MAX_PACKET).
const OpusMaxPacket = int(C.VB_OPUS_MAX_PACKET)

// ProcessOpus feeds one Opus packet of user audio (any duration Opus allows; 10-60 ms in
// practice) to a session whose InputCodec is CodecOpus (vb_session_process_opus); it is decoded
// at the input sample rate. A nil or empty packet reports a lost one: its audio is concealed
// from what came before. ErrCodeInvalidArgument when the packet does not decode (nothing was
// queued); ErrCodeBufferFull as for ProcessAudio; ErrCodeInvalidState on a CodecPCM session.
// One goroutine at a time (the session's input, shared with ProcessAudio). Allocates nothing.
func (s *Session) ProcessOpus(ctx context.Context, packet []byte) error {
	const op = "Session.ProcessOpus"
	if err := ctxErr(ctx); err != nil {
		return err
	}
	var p *C.uint8_t
	if len(packet) > 0 {
		p = (*C.uint8_t)(unsafe.Pointer(&packet[0]))
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.c == nil {
		return closedSession(op)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return lastError(op, C.vb_session_process_opus(s.c, p, C.size_t(len(packet))))
}

// ReadOpus writes the next Opus packet of the agent's audio (one 20 ms frame at the output
// sample rate) into buf and returns its length; 0 when no whole frame is ready yet. The session
// needs OutputCodec CodecOpus (else ErrCodeInvalidState). Call it every 20 ms, as a transport's
// pacer would: the engine considers a reply finished once the host has read it. When buf is too
// small for the packet the error is ErrCodeInvalidArgument and the packet is kept for the next
// call; OpusMaxPacket bytes always suffice. One goroutine at a time. Allocates nothing.
func (s *Session) ReadOpus(ctx context.Context, buf []byte) (int, error) {
	const op = "Session.ReadOpus"
	if err := ctxErr(ctx); err != nil {
		return 0, err
	}
	var p *C.uint8_t
	if len(buf) > 0 {
		p = (*C.uint8_t)(unsafe.Pointer(&buf[0]))
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.c == nil {
		return 0, closedSession(op)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := int64(C.vbgo_read_opus(s.c, p, C.size_t(len(buf))))
	if n < 0 {
		return 0, lastError(op, C.enum_VbStatus(-n))
	}
	return int(n), nil
}
