package backend

import (
	"fmt"
	"time"
)

// EventKind says what an Event reports. Values are the engine's VbEventKind.
type EventKind int

const (
	EventStateChanged      EventKind = 0  // State holds the new state
	EventSpeechStarted     EventKind = 1  // a user turn started
	EventSpeechStopped     EventKind = 2  // the user turn ended (silence, or the maximum turn length)
	EventTranscriptPartial EventKind = 3  // Text: an interim transcript
	EventTranscriptFinal   EventKind = 4  // Text: the final transcript of a turn
	EventAgentResponse     EventKind = 5  // Text: the agent's full reply once it ended
	EventInterrupted       EventKind = 6  // playback stopped by barge-in or Interrupt
	EventTurnMetrics       EventKind = 7  // Metrics of the turn that just got its first reply audio
	EventError             EventKind = 8  // Err (and Text): a failure of asynchronous work
	EventAudioDropped      EventKind = 9  // DroppedSamples of audio were lost
	EventDTMF              EventKind = 10 // Text: a key the caller pressed on a phone call
)

var eventKindNames = [...]string{
	"state_changed", "speech_started", "speech_stopped", "transcript_partial",
	"transcript_final", "agent_response", "interrupted", "turn_metrics", "error", "audio_dropped", "dtmf",
}

func (k EventKind) String() string {
	if k >= 0 && int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return fmt.Sprintf("event_kind_%d", int(k))
}

// SessionState is a session's state. Values are the engine's VbSessionState.
type SessionState int

const (
	StateIdle       SessionState = 0 // created, not started
	StateListening  SessionState = 1 // waiting for the user
	StateProcessing SessionState = 2 // a user turn ended; transcript and reply are being produced
	StateSpeaking   SessionState = 3 // reply audio is playing
	StateStopped    SessionState = 4 // stopped
	StateError      SessionState = 5 // failed; see the last EventError
)

var stateNames = [...]string{"idle", "listening", "processing", "speaking", "stopped", "error"}

func (s SessionState) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state_%d", int(s))
}

// TurnMetrics are the latencies of one turn, from the end of the user's speech (VAD). Zero
// when a stage did not happen.
type TurnMetrics struct {
	STTFinal         time.Duration // final transcript available
	AgentFirstText   time.Duration // first reply text from the agent
	TTSFirstAudio    time.Duration // first synthesized audio
	FirstOutputAudio time.Duration // first reply sample readable by the host: voice to voice
}

// Event is one session event (Session.Events).
type Event struct {
	Kind EventKind
	// Timestamp is the engine's monotonic time since the session was created.
	Timestamp time.Duration
	// State is the session state after the event.
	State SessionState
	// Text is the transcript, reply or error text; "" when the kind carries none.
	Text string
	// Err is set for EventError: Code is the engine status, Message the text; for an error the
	// agent callback returned, Err.Err is that error (errors.Is works through it).
	Err *BackendError
	// DroppedSamples is set for EventAudioDropped.
	DroppedSamples uint64
	// Metrics is set for EventTurnMetrics.
	Metrics TurnMetrics
}

func (e Event) String() string {
	switch {
	case e.Kind == EventStateChanged:
		return fmt.Sprintf("%v %v", e.Kind, e.State)
	case e.Err != nil:
		return fmt.Sprintf("%v %v", e.Kind, e.Err)
	case e.Text != "":
		return fmt.Sprintf("%v %q", e.Kind, e.Text)
	case e.Kind == EventAudioDropped:
		return fmt.Sprintf("%v %d samples", e.Kind, e.DroppedSamples)
	case e.Kind == EventTurnMetrics:
		m := e.Metrics
		return fmt.Sprintf("%v voice to voice %v (stt final %v, agent first text %v, tts first audio %v)",
			e.Kind, m.FirstOutputAudio, m.STTFinal, m.AgentFirstText, m.TTSFirstAudio)
	}
	return e.Kind.String()
}

func micros(us uint64) time.Duration { return time.Duration(us) * time.Microsecond }
