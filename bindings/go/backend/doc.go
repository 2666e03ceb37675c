// Package backend is the Go binding of voicebackend, a realtime voice-agent engine written in
// Rust with a C ABI (include/voicebackend.h). Its API follows the Beluga AI voice backends a Go
// user may know:
//
//	b, err := backend.GetRegistry().Create(ctx, "local", &backend.Config{
//		STTProvider: "whisper", TTSProvider: "espeak"})
//	err = b.Start(ctx)
//	s, err := b.CreateSession(ctx, &backend.SessionConfig{InputSampleRate: 48000,
//		AgentCallback: func(ctx context.Context, transcript string) (string, error) {
//			return "You said: " + transcript, nil
//		}})
//	err = s.Start(ctx)
//	err = s.TryProcessAudio(ctx, pcm16le)  // every 20 ms, from the microphone (never blocks)
//	err = s.ProcessAudio(ctx, file16le)    // a burst of any length: waits for room until ctx is done
//	for chunk := range s.ReceiveAudio() { … } // the agent's voice, PCM16LE
//	for ev := range s.Events() { … }        // transcripts, replies, metrics, errors
//
// # Threads and callbacks
//
// The engine runs a realtime thread per session, an I/O runtime and agent worker threads. The
// agent callback runs on an agent worker thread (it may block; its ctx is cancelled on barge-in,
// Interrupt, Stop and Close). Events are pushed by the engine's event thread into the Events
// channel without ever blocking that thread: when the channel is full, events are dropped and
// counted (Session.DroppedEvents); size it with SessionConfig.EventBuffer. The C side only ever
// holds runtime/cgo.Handle values, never Go pointers. vb_last_error_message is per OS thread,
// so every fallible C call and the read of its message run under runtime.LockOSThread.
//
// # Lifetimes
//
// Every Backend and Session must be closed (Close is idempotent; Backend.Close closes the
// sessions left open). Stop ends a session or a backend gracefully and closes the session's
// channels; Close also frees the engine objects. An agent callback may Stop or Close its own
// session (the binding recognizes the callback's OS thread and does not wait for itself).
// There are no finalizers: a handle keeps its session reachable until Close.
//
// # LiveKit
//
// On the livekit backend, sessions with Transport "webrtc" join a Room. With a "worker" section
// in its ProviderConfig the backend registers as a LiveKit agent worker, and every job the
// server dispatches arrives at Config.OnSession (see OnSessionFunc). Backend.Rooms is the
// server's room service: rooms, participants and agent dispatches.
//
// # Recovered sessions
//
// Sessions of a process that died are listed by Backend.RecoveredSessions when the next backend
// on the same session store starts; Backend.ResumeSession goes on with one (Session.History
// holds its earlier turns), Backend.DiscardRecovered forgets one.
//
// # Errors
//
// Every failure is a *BackendError with a Code (one per engine status) and a Message naming the
// field or value at fault; use errors.As. Context errors are returned unchanged, except by
// ProcessAudio, whose *PartialAudioError says how much it queued and unwraps to ctx.Err(). An
// agent fails a turn with its own code and message through Reply.Fail.
//
// # Linking
//
// By default the package links ../../../target/debug/libvoicebackend.so of this repository with
// an rpath (build it with `cargo build --lib`, plus `--features test-providers` for the tests).
// Build with -tags vbpkgconfig to link an installed library found by pkg-config instead.
package backend
