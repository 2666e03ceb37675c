package backend

/*
#include <stdlib.h>
#include "voicebackend.h"
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Session is one conversation (a VbSession). Its methods are safe for concurrent use, but audio
// is a single stream: ProcessAudio calls from several goroutines at once are refused by the
// engine with ErrCodeInvalidState (one producer at a time).
type Session struct {
	b         *Backend
	id        string
	agent     AgentCallback
	streaming StreamingAgentCallback
	handle    cgo.Handle

	// life guards c: C calls hold it for reading, Close holds it for writing to free.
	life sync.RWMutex
	c    *C.VbSession
	// accepted is C memory for vb_session_process_audio's out-parameter (no Go pointer, no
	// allocation per call).
	accepted *C.size_t

	state atomic.Int32

	// ctx is the parent of every agent call's context; cancelled by Stop, Close, Backend.Stop.
	ctx    context.Context
	cancel context.CancelFunc

	events        chan Event
	evMu          sync.RWMutex // held for reading while the event thread sends
	evClosed      bool
	droppedEvents atomic.Uint64

	audio        chan []byte
	droppedAudio atomic.Uint64
	outRate      int
	frame        time.Duration
	opusOut      bool // OutputCodec CodecOpus: the host reads packets (ReadOpus), no audio reader

	mu            sync.Mutex // Go-side lifecycle
	finished      bool
	readerStarted bool
	done          chan struct{} // closed by finish: the audio reader exits
	readerDone    chan struct{}

	scratchMu sync.Mutex
	scratch   []int16 // for ProcessAudio on odd-aligned input or big-endian hosts

	agentErrMu sync.Mutex
	agentErr   error // the last error an agent callback returned, for its error event

	// agentThreads holds the OS threads running this session's agent callback right now.
	agentMu      sync.Mutex
	agentIdle    *sync.Cond // signalled when an agent call returns
	agentThreads map[uintptr]int
	// engineStopMu serializes vb_session_stop from outside agent callbacks: a second caller
	// returns only once the first one's stop (which waits for agent calls) is complete.
	engineStopMu sync.Mutex

	finishOnce sync.Once
	closing    atomic.Bool

	// incoming: the session arrived by itself (Config.OnSession); the binding closes it once it
	// has stopped. arriving (guarded by life): OnSession runs, c is still the engine's.
	incoming bool
	arriving bool
}

func newSession(ctx context.Context, b *Backend, cfg *SessionConfig) *Session {
	s := &Session{
		b:          b,
		agent:      cfg.AgentCallback,
		streaming:  cfg.StreamingAgentCallback,
		events:     make(chan Event, pick(cfg.EventBuffer, defaultEventBuffer)),
		audio:      make(chan []byte, pick(cfg.AudioBuffer, defaultAudioBuffer)),
		outRate:    pick(cfg.OutputSampleRate, defaultSampleRate),
		opusOut:    cfg.OutputCodec == CodecOpus,
		frame:      defaultFrame,
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),

		agentThreads: map[uintptr]int{},
	}
	s.agentIdle = sync.NewCond(&s.agentMu)
	if a := b.cfg.Audio; a != nil && a.Frame > 0 {
		s.frame = a.Frame
	}
	// Agent calls keep ctx's values but not its cancellation: CreateSession's ctx usually ends
	// long before the conversation does.
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	return s
}

// attach takes ownership of a newly created engine session.
func (s *Session) attach(c *C.VbSession, h cgo.Handle) {
	s.c, s.handle = c, h
	s.accepted = (*C.size_t)(C.malloc(C.size_t(unsafe.Sizeof(C.size_t(0)))))
}

func pick(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func closedSession(op string) error {
	return &BackendError{Op: op, Code: ErrCodeInvalidState, Message: "the session is closed"}
}

// GetID returns the session id (unique within the process).
func (s *Session) GetID() string { return s.id }

// GetState returns the session state as of the last event delivered (StateStopped after Stop).
func (s *Session) GetState() SessionState { return SessionState(s.state.Load()) }

// Events returns the session's events, in order. The channel is buffered (SessionConfig.
// EventBuffer); when it is full new events are dropped and counted (DroppedEvents) rather than
// blocking the engine. It is closed once the session has stopped and its last event was
// delivered.
func (s *Session) Events() <-chan Event { return s.events }

// ReceiveAudio returns the agent's audio as PCM16LE mono chunks at the output sample rate. A
// goroutine reads it from the engine at real-time pace (about one frame per frame period, as an
// audio device would) from Start until the session stops, then closes the channel. Chunks that
// find the channel full are dropped and counted (DroppedAudioChunks). A session whose audio
// nobody plays still needs this reader: the engine considers a reply finished once the host
// has read it.
func (s *Session) ReceiveAudio() <-chan []byte { return s.audio }

// DroppedEvents is the number of events dropped because the Events channel was full.
func (s *Session) DroppedEvents() uint64 { return s.droppedEvents.Load() }

// DroppedAudioChunks is the number of audio chunks dropped because the ReceiveAudio channel
// was full.
func (s *Session) DroppedAudioChunks() uint64 { return s.droppedAudio.Load() }

// Start starts the session (vb_session_start) and its audio reader (none with OutputCodec
// CodecOpus: the host reads packets with ReadOpus). ErrCodeInvalidState when already started or
// stopped.
func (s *Session) Start(ctx context.Context) error {
	err := s.control(ctx, "Session.Start", func(c *C.VbSession) C.enum_VbStatus { return C.vb_session_start(c) })
	if err != nil {
		return err
	}
	s.mu.Lock()
	if !s.finished && !s.readerStarted && !s.opusOut {
		s.readerStarted = true
		go s.readLoop()
	}
	s.mu.Unlock()
	return nil
}

// Stop stops the session (vb_session_stop): an agent callback in flight sees its ctx cancelled
// and is waited for; the last events are delivered, then the Events and ReceiveAudio channels
// close. Idempotent. A stopped session cannot be started again; Close it to free it.
//
// Stop may be called from the session's own agent callback (the engine does not wait for the
// call that stops it).
func (s *Session) Stop(ctx context.Context) error {
	const op = "Session.Stop"
	s.cancelAgents()
	s.life.RLock()
	if s.c == nil {
		s.life.RUnlock()
		return nil // closed, hence stopped
	}
	err := s.engineStop(op)
	s.life.RUnlock()
	s.finish()
	return err
}

// engineStop calls vb_session_stop (s.life held for reading). From outside an agent callback
// of this session it returns only once no agent call of the session runs any more.
func (s *Session) engineStop(op string) error {
	if s.inOwnAgent() {
		return call(op, func() C.enum_VbStatus { return C.vb_session_stop(s.c) })
	}
	s.engineStopMu.Lock()
	defer s.engineStopMu.Unlock()
	err := call(op, func() C.enum_VbStatus { return C.vb_session_stop(s.c) })
	s.waitAgentsIdle()
	return err
}

// inOwnAgent reports whether the caller is this session's agent callback (or runs on its
// thread, which a cgo callback keeps locked).
func (s *Session) inOwnAgent() bool {
	tid := threadID()
	s.agentMu.Lock()
	defer s.agentMu.Unlock()
	return s.agentThreads[tid] > 0
}

func (s *Session) agentEnter() uintptr {
	tid := threadID()
	s.agentMu.Lock()
	s.agentThreads[tid]++
	s.agentMu.Unlock()
	return tid
}

func (s *Session) agentLeave(tid uintptr) {
	s.agentMu.Lock()
	if s.agentThreads[tid]--; s.agentThreads[tid] <= 0 {
		delete(s.agentThreads, tid)
	}
	s.agentIdle.Broadcast()
	s.agentMu.Unlock()
}

// waitAgentsIdle waits until no agent callback of the session runs. After the engine stopped
// the session none can start, so this ends once the ones in flight (ctx cancelled) return.
func (s *Session) waitAgentsIdle() {
	s.agentMu.Lock()
	for len(s.agentThreads) > 0 {
		s.agentIdle.Wait()
	}
	s.agentMu.Unlock()
}

// Close stops the session if needed and frees it (vb_session_free). Idempotent; always returns
// nil. Called from the session's own agent callback, it stops the session at once and frees it
// as soon as the callback has returned. A Close that finds another one in progress returns at
// once (so that a host closing a session while its agent hangs up cannot deadlock).
func (s *Session) Close() error {
	if !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	func() {
		s.cancelAgents()
		if s.inOwnAgent() {
			s.life.RLock()
			_ = s.engineStop("Session.Close")
			s.life.RUnlock()
			s.finish()
			s.b.forget(s)
			go func() {
				s.waitAgentsIdle()
				s.b.stopping.RLock()
				s.free()
				s.b.stopping.RUnlock()
			}()
			return
		}
		s.b.stopping.RLock()
		s.life.RLock()
		if s.c != nil {
			_ = s.engineStop("Session.Close")
		}
		s.life.RUnlock()
		s.finish()
		s.free()
		s.b.stopping.RUnlock()
		s.b.forget(s)
	}()
	return nil
}

func (s *Session) cancelAgents() { s.cancel() }

// free releases the engine session, the C memory and the handle. No callback can run after
// vb_session_free returns, so the handle can go.
func (s *Session) free() {
	s.cancel()
	s.life.Lock()
	if s.c != nil {
		if !s.arriving { // an arriving session is the engine's to free until OnSession took it
			C.vb_session_free(s.c)
		}
		s.c = nil
		s.releaseC()
	}
	s.life.Unlock()
	s.finish()
	s.handle.Delete()
}

// releaseC frees the binding's C memory of the session (s.life held for writing).
func (s *Session) releaseC() {
	C.free(unsafe.Pointer(s.accepted))
	s.accepted = nil
}

// finish ends the Go side once the engine session has stopped: the audio reader exits, the
// channels close, the state reads stopped.
func (s *Session) finish() {
	s.finishOnce.Do(func() {
		s.mu.Lock()
		s.finished = true
		started := s.readerStarted
		s.mu.Unlock()
		close(s.done)
		if started {
			<-s.readerDone // the reader closes s.audio
		} else {
			close(s.audio)
		}
		s.evMu.Lock()
		s.evClosed = true
		close(s.events)
		s.state.Store(int32(StateStopped))
		s.evMu.Unlock()
	})
}

// Say speaks text without a user turn, e.g. a greeting, after any reply in progress
// (vb_session_say). ErrCodeInvalidState before Start or after Stop.
func (s *Session) Say(ctx context.Context, text string) error {
	const op = "Session.Say"
	if err := ctxErr(ctx); err != nil {
		return err
	}
	cs, err := cString(op, "text", text)
	if err != nil {
		return err
	}
	defer freeCString(cs)
	return s.control(ctx, op, func(c *C.VbSession) C.enum_VbStatus { return C.vb_session_say(c, cs) })
}

// Interrupt is host-side barge-in (vb_session_interrupt): playback stops now, the reply in
// progress is cancelled (its agent callback's ctx too) and queued replies are dropped.
func (s *Session) Interrupt(ctx context.Context) error {
	return s.control(ctx, "Session.Interrupt", func(c *C.VbSession) C.enum_VbStatus { return C.vb_session_interrupt(c) })
}

// control runs one control call on the live handle: the ctx is checked first, the handle is
// held against Close for the duration, and a failure becomes a *BackendError for op.
func (s *Session) control(ctx context.Context, op string, f func(*C.VbSession) C.enum_VbStatus) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.c == nil {
		return closedSession(op)
	}
	return call(op, func() C.enum_VbStatus { return f(s.c) })
}

// deliver converts an engine event and hands it to the Events channel without blocking. It
// runs on the session's event thread.
func (s *Session) deliver(ev *C.VbEvent) {
	e := Event{
		Kind:           EventKind(ev.kind),
		Timestamp:      micros(uint64(ev.timestamp_us)),
		State:          SessionState(ev.state),
		DroppedSamples: uint64(ev.dropped_samples),
		Metrics: TurnMetrics{
			STTFinal:         micros(uint64(ev.metrics.stt_final_us)),
			AgentFirstText:   micros(uint64(ev.metrics.agent_first_text_us)),
			TTSFirstAudio:    micros(uint64(ev.metrics.tts_first_audio_us)),
			FirstOutputAudio: micros(uint64(ev.metrics.first_output_audio_us)),
		},
	}
	if ev.text != nil {
		e.Text = C.GoString(ev.text)
	}
	if e.Kind == EventError {
		e.Err = newError("Session.Events", ErrorCode(ev.error), e.Text)
		if strings.HasPrefix(e.Text, "agent: on_transcript returned") {
			e.Err.Err = s.takeAgentErr()
		}
	}
	s.evMu.RLock()
	defer s.evMu.RUnlock()
	if s.evClosed {
		return
	}
	s.state.Store(int32(e.State))
	select {
	case s.events <- e:
	default:
		s.droppedEvents.Add(1)
	}
	if s.incoming && e.Kind == EventStateChanged && e.State == StateStopped {
		// Its job ended: nobody else may know that it is over. Not on this (the event) thread,
		// which the engine's stop waits for.
		go s.Close()
	}
}

func (s *Session) setAgentErr(err error) {
	s.agentErrMu.Lock()
	s.agentErr = err
	s.agentErrMu.Unlock()
}

func (s *Session) takeAgentErr() error {
	s.agentErrMu.Lock()
	defer s.agentErrMu.Unlock()
	err := s.agentErr
	s.agentErr = nil
	return err
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()
