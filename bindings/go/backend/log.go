package backend

// The library's log records in a Go program's log/slog (vb_set_log_callback). The static adapter
// that gives the exported trampoline (log_export.go) the exact VbLogCallback type lives here: a
// file with //export may only declare in its preamble.

/*
#include <stdint.h>
#include "voicebackend.h"

extern void vbgoOnLog(void *user_data, int32_t level, char *target, char *message);

static void vbgo_on_log(void *user_data, int32_t level, const char *target, const char *message) {
	vbgoOnLog(user_data, level, (char *)target, (char *)message);
}

static enum VbStatus vbgo_set_log_callback(int enabled, int32_t max_level) {
	return vb_set_log_callback(enabled ? vbgo_on_log : NULL, NULL, max_level);
}
*/
import "C"

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
)

// LevelTrace is the slog level of the library's most detailed records (VB_LOG_TRACE), below
// slog.LevelDebug.
const LevelTrace = slog.LevelDebug - 4

// The logger records go to; nil: none.
var logger atomic.Pointer[slog.Logger]

// Serializes SetLogger: the logger and the library's level change together.
var loggerMu sync.Mutex

// SetLogger sends the library's log records to logger (nil stops them), at the levels its handler
// is enabled for: LevelTrace, slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError.
// Each record's message is the library's text (prefixed by its spans, e.g.
// "session{session.id=sess-…}: session started"), with the attribute "target" (the library
// module it comes from, e.g. "voicebackend::provider::ws_link").
//
// The environment variable VB_LOG (else RUST_LOG; e.g. "voicebackend=debug,warn") filters
// further; without it the library's own records pass, and other libraries' warnings and errors.
// Transcripts appear only when the backend's privacy settings allow (privacy.log_transcripts);
// keys and tokens never.
//
// Records are handed to logger on one library thread, in order, never on the realtime thread; a
// handler that does not keep up loses records (4096 may wait) rather than slowing sessions, and
// then gets a warning saying how many. After SetLogger returns, the previous logger gets no more
// records. The first call installs the library's process-wide log subscriber.
func SetLogger(l *slog.Logger) error {
	loggerMu.Lock()
	defer loggerMu.Unlock()
	level := C.int32_t(C.VB_LOG_OFF)
	if l != nil {
		ctx := context.Background()
		for _, candidate := range []struct {
			slog slog.Level
			vb   C.int32_t
		}{
			{LevelTrace, C.VB_LOG_TRACE},
			{slog.LevelDebug, C.VB_LOG_DEBUG},
			{slog.LevelInfo, C.VB_LOG_INFO},
			{slog.LevelWarn, C.VB_LOG_WARN},
			{slog.LevelError, C.VB_LOG_ERROR},
		} {
			if l.Enabled(ctx, candidate.slog) {
				level = candidate.vb
				break
			}
		}
	}
	if level != C.VB_LOG_OFF {
		logger.Store(l)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	enabled := C.int(0)
	if level != C.VB_LOG_OFF {
		enabled = 1
	}
	if status := C.vbgo_set_log_callback(enabled, level); status != C.VB_OK {
		return lastError("SetLogger", status)
	}
	if level == C.VB_LOG_OFF {
		logger.Store(nil)
	}
	return nil
}

// slogLevel is the slog level of a VbLogLevel.
func slogLevel(level int32) slog.Level {
	switch level {
	case C.VB_LOG_ERROR:
		return slog.LevelError
	case C.VB_LOG_WARN:
		return slog.LevelWarn
	case C.VB_LOG_INFO:
		return slog.LevelInfo
	case C.VB_LOG_DEBUG:
		return slog.LevelDebug
	default:
		return LevelTrace
	}
}
