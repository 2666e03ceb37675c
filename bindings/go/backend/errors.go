package backend

import (
	"errors"
	"fmt"
	"strings"
)

// ErrorCode says what kind of failure a BackendError is. The values are the engine's VbStatus
// codes (C_API.md), one constant per status.
type ErrorCode int

// One code per VbStatus (VB_OK, 0, is never an error).
const (
	ErrCodeInvalidArgument  ErrorCode = 1  // NULL pointer, bad length, invalid UTF-8, NUL in a string
	ErrCodeInvalidConfig    ErrorCode = 2  // configuration malformed or out of range; Message names the field
	ErrCodeProviderNotFound ErrorCode = 3  // no backend/STT/TTS/S2S provider (or transport) under that name
	ErrCodeInvalidState     ErrorCode = 4  // e.g. audio before Start, Start after Stop, use after Close
	ErrCodeSessionLimit     ErrorCode = 5  // MaxConcurrentSessions reached
	ErrCodeRateLimited      ErrorCode = 6  // a rate limiter refused the call
	ErrCodeUnauthorized     ErrorCode = 7  // the auth hook refused the session
	ErrCodeConnectionFailed ErrorCode = 8  // a provider or transport could not connect
	ErrCodeTimeout          ErrorCode = 9  // an operation ran out of time
	ErrCodeProvider         ErrorCode = 10 // a provider (or the agent callback) answered with an error
	ErrCodeBufferFull       ErrorCode = 11 // input ring full: fewer samples were taken than given
	ErrCodeNotFound         ErrorCode = 12 // no object with that id
	ErrCodePanic            ErrorCode = 13 // a panic was caught at the boundary
	ErrCodeInternal         ErrorCode = 14 // a bug or unexpected failure inside the engine
)

var codeNames = [...]string{
	0:                       "VB_OK",
	ErrCodeInvalidArgument:  "VB_ERR_INVALID_ARGUMENT",
	ErrCodeInvalidConfig:    "VB_ERR_INVALID_CONFIG",
	ErrCodeProviderNotFound: "VB_ERR_PROVIDER_NOT_FOUND",
	ErrCodeInvalidState:     "VB_ERR_INVALID_STATE",
	ErrCodeSessionLimit:     "VB_ERR_SESSION_LIMIT",
	ErrCodeRateLimited:      "VB_ERR_RATE_LIMITED",
	ErrCodeUnauthorized:     "VB_ERR_UNAUTHORIZED",
	ErrCodeConnectionFailed: "VB_ERR_CONNECTION_FAILED",
	ErrCodeTimeout:          "VB_ERR_TIMEOUT",
	ErrCodeProvider:         "VB_ERR_PROVIDER",
	ErrCodeBufferFull:       "VB_ERR_BUFFER_FULL",
	ErrCodeNotFound:         "VB_ERR_NOT_FOUND",
	ErrCodePanic:            "VB_ERR_PANIC",
	ErrCodeInternal:         "VB_ERR_INTERNAL",
}

// String returns the engine's name of the code, e.g. "VB_ERR_INVALID_CONFIG".
func (c ErrorCode) String() string {
	if c >= 0 && int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("VB_STATUS_%d", int(c))
}

// BackendError is the error type of every call of this package that reaches the engine (and of
// the checks the binding makes itself before it does). Use errors.As to get at it:
//
//	var be *backend.BackendError
//	if errors.As(err, &be) && be.Code == backend.ErrCodeSessionLimit { … }
//
// Context errors (a cancelled or expired ctx passed to a call) are returned as they are, so
// errors.Is(err, context.Canceled) works.
type BackendError struct {
	// Op is the call that failed, e.g. "Registry.Create" or "Session.ProcessAudio".
	Op string
	// Code is the engine's status.
	Code ErrorCode
	// Message says what was wrong, with the offending field or value (from
	// vb_last_error_message, or the text of an error event).
	Message string
	// Err is the underlying Go error, when there is one (for example the error an agent
	// callback returned, attached to the error event it caused). May be nil.
	Err error
}

// Error implements error: "voicebackend: <Op>: <CODE>: <Message>[: <Err>]".
func (e *BackendError) Error() string {
	var b strings.Builder
	b.WriteString("voicebackend: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString(e.Code.String())
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns Err.
func (e *BackendError) Unwrap() error { return e.Err }

// IsRetryable reports whether err is a BackendError that may succeed when tried again later:
// rate limited, connection failed, timeout, or buffer full (the input ring had no room: push
// later, at real-time pace; the samples not taken are already counted as lost).
func IsRetryable(err error) bool {
	var be *BackendError
	if !errors.As(err, &be) {
		return false
	}
	switch be.Code {
	case ErrCodeRateLimited, ErrCodeConnectionFailed, ErrCodeTimeout, ErrCodeBufferFull:
		return true
	}
	return false
}

// newError builds a BackendError from an engine status and message. The engine prefixes its
// messages with the status name ("VB_ERR_INVALID_CONFIG: turn.silence_ms: …"); that prefix is
// dropped since Code carries it.
func newError(op string, code ErrorCode, message string) *BackendError {
	message = strings.TrimPrefix(message, code.String()+": ")
	return &BackendError{Op: op, Code: code, Message: message}
}
