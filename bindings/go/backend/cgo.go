package backend

// The C side of the binding: small static helpers that build C structs (so that no Go pointer is
// ever stored in C memory) and adapt the exported Go trampolines (callbacks.go) to the exact
// function pointer types of VbCallbacks.

/*
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include "voicebackend.h"

// Exported from callbacks.go (cgo writes them without const).
extern enum VbStatus vbgoOnTranscript(void *user_data, VbSession *session, char *transcript, VbReply *reply);
extern void vbgoOnEvent(void *user_data, VbEvent *event);

static enum VbStatus vbgo_on_transcript(void *user_data, VbSession *session, const char *transcript,
                                   VbReply *reply) {
	return vbgoOnTranscript(user_data, session, (char *)transcript, reply);
}

static void vbgo_on_event(void *user_data, const VbEvent *event) {
	vbgoOnEvent(user_data, (VbEvent *)event);
}

// user_data is a runtime/cgo.Handle (an integer), never a Go pointer.
static enum VbStatus vbgo_session_create(VbBackend *backend, const char *config_json, uintptr_t handle,
                                    int with_agent, VbSession **out_session) {
	VbCallbacks callbacks;
	callbacks.user_data = (void *)handle;
	callbacks.on_transcript = with_agent ? vbgo_on_transcript : NULL;
	callbacks.on_event = vbgo_on_event;
	return vb_session_create(backend, config_json, &callbacks, out_session);
}

// vb_session_resume with the binding's callbacks, as vbgo_session_create.
static enum VbStatus vbgo_session_resume(VbBackend *backend, const char *session_id, uintptr_t handle,
                                    int with_agent, VbSession **out_session) {
	VbCallbacks callbacks;
	callbacks.user_data = (void *)handle;
	callbacks.on_transcript = with_agent ? vbgo_on_transcript : NULL;
	callbacks.on_event = vbgo_on_event;
	return vb_session_resume(backend, session_id, &callbacks, out_session);
}

// For the tests of ProcessAudio's waiting: a processor that holds the realtime thread while
// vbgo_stall is set, so that the input ring stays full.
static volatile int vbgo_stall;

static void vbgo_stall_process(void *user_data, int16_t *pcm, size_t samples, uint32_t sample_rate) {
	(void)user_data; (void)pcm; (void)samples; (void)sample_rate;
	while (__atomic_load_n(&vbgo_stall, __ATOMIC_ACQUIRE)) {
		struct timespec pause = {0, 1000000};
		nanosleep(&pause, NULL);
	}
}

static enum VbStatus vbgo_add_stall_processor(VbBackend *backend) {
	VbProcessor processor = {NULL, "vbgo-stall", 0, vbgo_stall_process};
	return vb_backend_add_processor(backend, &processor);
}

static void vbgo_set_stall(int on) {
	__atomic_store_n(&vbgo_stall, on, __ATOMIC_RELEASE);
}

// The calling OS thread. A goroutine running a cgo callback is locked to the engine thread that
// made the call, so this tells whether a goroutine is inside one of our agent callbacks.
static uintptr_t vbgo_thread_id(void) {
	return (uintptr_t)pthread_self();
}

// For BenchmarkProcessAudioC: the C call in a C loop, without a cgo transition per call.
static enum VbStatus vbgo_process_audio_loop(VbSession *session, const int16_t *pcm, size_t samples,
                                        size_t iterations) {
	enum VbStatus status = VB_OK;
	for (size_t i = 0; i < iterations; i++) {
		status = vb_session_process_audio(session, pcm, samples, NULL);
		if (status != VB_OK) return status;
	}
	return status;
}
*/
import "C"

import (
	"encoding/json"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// ABIVersion is the C ABI version this binding implements: VB_ABI_VERSION of the header it is
// compiled against (a mismatch does not compile). Registry.Create refuses a library with
// another version.
const ABIVersion = 1

// Compile-time check that ABIVersion == VB_ABI_VERSION (a negative array length otherwise).
var (
	_ [ABIVersion - C.VB_ABI_VERSION]struct{}
	_ [C.VB_ABI_VERSION - ABIVersion]struct{}
)

// LibraryABIVersion returns the C ABI version of the linked library (vb_abi_version).
func LibraryABIVersion() int { return int(C.vb_abi_version()) }

// Version returns the engine's crate version, e.g. "0.1.0" (vb_version).
func Version() string { return C.GoString(C.vb_version()) }

// lastError turns a failed status into a BackendError, reading vb_last_error_message. It must
// run on the OS thread that made the failed call: callers hold runtime.LockOSThread around both.
func lastError(op string, status C.enum_VbStatus) error {
	if status == C.VB_OK {
		return nil
	}
	return newError(op, ErrorCode(status), C.GoString(C.vb_last_error_message()))
}

// call runs one fallible C call and reads its error message on the same OS thread.
func call(op string, f func() C.enum_VbStatus) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return lastError(op, f())
}

// registryList returns the backend provider names (vb_registry_list).
func registryList() ([]string, error) {
	const op = "Registry.ListProviders"
	buf := make([]byte, 256)
	for {
		var needed C.size_t
		err := call(op, func() C.enum_VbStatus {
			return C.vb_registry_list((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &needed)
		})
		if err == nil {
			var names []string
			if jerr := json.Unmarshal([]byte(C.GoString((*C.char)(unsafe.Pointer(&buf[0])))), &names); jerr != nil {
				return nil, &BackendError{Op: op, Code: ErrCodeInternal, Message: "vb_registry_list: " + jerr.Error()}
			}
			return names, nil
		}
		if int(needed) <= len(buf) {
			return nil, err
		}
		buf = make([]byte, int(needed))
	}
}

// createSession calls vb_session_create with the binding's trampolines; user_data is h.
func createSession(b *C.VbBackend, config *C.char, h cgo.Handle, withAgent bool, out **C.VbSession) C.enum_VbStatus {
	agent := C.int(0)
	if withAgent {
		agent = 1
	}
	return C.vbgo_session_create(b, config, C.uintptr_t(h), agent, out)
}

// resumeSession calls vb_session_resume with the binding's trampolines; user_data is h.
func resumeSession(b *C.VbBackend, id *C.char, h cgo.Handle, withAgent bool, out **C.VbSession) C.enum_VbStatus {
	agent := C.int(0)
	if withAgent {
		agent = 1
	}
	return C.vbgo_session_resume(b, id, C.uintptr_t(h), agent, out)
}

// addStallProcessor adds a processor that holds every session's realtime thread while
// setStall(true) is in force (before Start). Not for use outside tests.
func addStallProcessor(b *Backend) error {
	return call("addStallProcessor", func() C.enum_VbStatus { return C.vbgo_add_stall_processor(b.c) })
}

// setStall holds (true) or releases (false) the realtime threads of addStallProcessor's
// sessions. Not for use outside tests.
func setStall(on bool) {
	v := C.int(0)
	if on {
		v = 1
	}
	C.vbgo_set_stall(v)
}

// threadID identifies the calling OS thread (pthread_self).
func threadID() uintptr { return uintptr(C.vbgo_thread_id()) }

// sessionID returns the id of a live session (vb_session_id).
func sessionID(s *C.VbSession) (string, error) {
	buf := make([]byte, 64)
	for {
		var needed C.size_t
		err := call("Session.GetID", func() C.enum_VbStatus {
			return C.vb_session_id(s, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &needed)
		})
		if err == nil {
			return C.GoString((*C.char)(unsafe.Pointer(&buf[0]))), nil
		}
		if int(needed) <= len(buf) {
			return "", err
		}
		buf = make([]byte, int(needed))
	}
}

// cString converts s for C, refusing an embedded NUL (C would cut the string there).
func cString(op, what, s string) (*C.char, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return nil, &BackendError{Op: op, Code: ErrCodeInvalidArgument, Message: what + " contains a NUL byte"}
		}
	}
	return C.CString(s), nil
}

func freeCString(p *C.char) { C.free(unsafe.Pointer(p)) }

// processAudioC calls vb_session_process_audio directly, with nothing around it: the baseline of
// BenchmarkProcessAudioC (one cgo transition per call). Not for use outside benchmarks.
func processAudioC(s *Session, pcm []int16) ErrorCode {
	return ErrorCode(C.vb_session_process_audio(s.c, pcmPtr(pcm), C.size_t(len(pcm)), nil))
}

// processAudioCLoop calls vb_session_process_audio iterations times from a C loop: the cost of
// the C call alone, without the cgo transition. Not for use outside benchmarks.
func processAudioCLoop(s *Session, pcm []int16, iterations int) ErrorCode {
	return ErrorCode(C.vbgo_process_audio_loop(s.c, pcmPtr(pcm), C.size_t(len(pcm)), C.size_t(iterations)))
}

// pcmPtr is the C view of pcm's samples; NULL when empty.
func pcmPtr(pcm []int16) *C.int16_t {
	if len(pcm) == 0 {
		return nil
	}
	return (*C.int16_t)(unsafe.Pointer(&pcm[0]))
}
