package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// PipelineType selects what every session of a backend runs.
type PipelineType string

const (
	// PipelineTypeSTTTTS is speech to text, the host's agent callback, text to speech (default).
	PipelineTypeSTTTTS PipelineType = "stt_tts"
	// PipelineTypeS2S is one speech-to-speech model that answers by itself.
	PipelineTypeS2S PipelineType = "s2s"
)

// Config configures a backend (Registry.Create). It is marshalled to the engine's JSON
// configuration (C_API.md); zero values mean "engine default" and are left out. Durations are
// sent in whole milliseconds (a duration that is not a whole number of milliseconds, or is
// negative, is an ErrCodeInvalidConfig error). The engine checks ranges and names the field
// that is out of range, e.g. "turn.silence_ms: 10 is below the minimum 50".
type Config struct {
	// Provider is the backend provider, e.g. "local". May be left empty: the name given to
	// Registry.Create is used.
	Provider string
	// ProviderConfig holds the backend provider's own settings ("local" takes none).
	ProviderConfig map[string]any
	// PipelineType is PipelineTypeSTTTTS (default) or PipelineTypeS2S.
	PipelineType PipelineType
	// STTProvider and TTSProvider are required by PipelineTypeSTTTTS.
	STTProvider string
	STTConfig   map[string]any
	TTSProvider string
	TTSConfig   map[string]any
	// S2SProvider is required by PipelineTypeS2S.
	S2SProvider string
	S2SConfig   map[string]any
	// LatencyTarget is the voice-to-voice target (engine default 500 ms; 100 ms – 5 s).
	LatencyTarget time.Duration
	// MaxConcurrentSessions limits open sessions (engine default 100); beyond it CreateSession
	// fails with ErrCodeSessionLimit.
	MaxConcurrentSessions int
	// Optional engine sections; nil means all defaults.
	Audio         *AudioConfig
	VAD           *VADConfig
	Turn          *TurnConfig
	Interruptions *InterruptionConfig
	// AuthHook, when set, authenticates and authorizes every new session that carries an
	// AuthToken (see AuthHook); it replaces the engine's built-in JWT hook.
	AuthHook AuthHook
	// RateLimiter, when set, admits new sessions by rate (see RateLimiter); it replaces the
	// engine's built-in token buckets.
	RateLimiter RateLimiter
	// OnSession, when set, takes the sessions that arrive by themselves: on the livekit
	// backend in worker mode (ProviderConfig "worker": {"agent_name", "max_jobs",
	// "load_threshold"}), one per job the LiveKit server dispatches (vb_backend_set_incoming).
	// See OnSessionFunc.
	OnSession OnSessionFunc
	// Agent is the engine's "agent" section: the built-in LLM agent that answers the sessions
	// created without an agent callback, e.g. {"provider": "openai", "base_url":
	// "http://127.0.0.1:8080", "model": "smollm2", "temperature": 0.3, "tool_choice": "auto"}
	// (keys: the engine's README, "The built-in agent"). nil: no built-in agent.
	Agent map[string]any
	// Tools are offered to the built-in agent's model (see Tool); installed before the backend
	// starts. The agent section's "tools" may name a subset.
	Tools []Tool
	// Extra is merged into the JSON last (one level deep for objects), for engine keys this
	// struct does not name yet, or to send a value whose Go zero value would be left out (e.g.
	// Extra: map[string]any{"turn": map[string]any{"min_speech_ms": 0}}). Unknown keys are an
	// ErrCodeInvalidConfig error from the engine.
	Extra map[string]any
}

// AudioConfig is the engine's "audio" section: its internal format and ring sizes.
type AudioConfig struct {
	SampleRate       int           // internal rate: 8000 or 16000 (default 16000)
	Frame            time.Duration // 10, 20 (default) or 30 ms
	InputBuffer      time.Duration // input ring (default 500 ms); more at once gives ErrCodeBufferFull
	OutputBuffer     time.Duration // ring that ReceiveAudio drains (default 200 ms)
	ReplyBuffer      time.Duration // reply audio between TTS and playout (default 2 s)
	RealtimePriority *bool         // SCHED_FIFO for the realtime threads (default true)
	// RealtimeThreads is audio.realtime_threads: 0 (default) gives every session its own
	// realtime thread; 1-64 runs all sessions' realtime loops on a pool of that many threads
	// (fewer wake-ups for many sessions, up to half a frame more input latency).
	RealtimeThreads int
}

// VADConfig is the engine's "vad" section (webrtc-vad with hysteresis).
type VADConfig struct {
	Mode  *int          // aggressiveness 0–3 (default 2)
	Start time.Duration // voiced audio before "speech" (default 40 ms)
	Stop  time.Duration // unvoiced audio before "silence" (default 100 ms)
}

// TurnConfig is the engine's "turn" section, counted in audio time.
type TurnConfig struct {
	Silence   time.Duration // silence that ends a turn (default 500 ms; 50 ms – 10 s)
	MinSpeech time.Duration // speech before a turn starts (default 150 ms)
	MaxTurn   time.Duration // a turn is cut here (default 30 s)
}

// InterruptionConfig is the engine's "interruptions" section (barge-in).
type InterruptionConfig struct {
	Enabled   *bool         // barge-in on (default true)
	MinSpeech time.Duration // speech needed to interrupt (default 200 ms)
}

// Bool returns a pointer to b, for the optional *bool fields.
func Bool(b bool) *bool { return &b }

// Int returns a pointer to i, for the optional *int fields.
func Int(i int) *int { return &i }

// AgentCallback answers one finished user turn with the whole reply. It runs on an engine agent
// worker thread (never the realtime thread) and may block; ctx is cancelled when the user
// barges in, when Interrupt is called, and when the session stops. An error becomes an
// EventError (ErrCodeProvider) and the session keeps listening.
type AgentCallback func(ctx context.Context, transcript string) (string, error)

// StreamingAgentCallback is AgentCallback with a streaming reply: write text with reply.Write
// as it is produced (TTS speaks complete sentences at once). Returning ends the reply.
type StreamingAgentCallback func(ctx context.Context, transcript string, reply *Reply) error

// SessionConfig configures one session (Backend.CreateSession). Zero values mean "engine
// default" and are left out of the JSON.
type SessionConfig struct {
	UserID string
	// Transport: "host" (default): audio through ProcessAudio / ReceiveAudio; "webrtc" on the
	// livekit backend: the agent joins Room and the room carries the audio (ReceiveAudio gives
	// a copy of what the agent says; ProcessAudio is refused).
	Transport string
	// ConnectionURL, when set, replaces the backend's server URL (livekit: provider_config.url).
	ConnectionURL string
	// ConnectionToken is a LiveKit access token to join Room with, instead of one the backend
	// signs from its api_key and api_secret (e.g. a token a job dispatch or another service
	// handed out).
	ConnectionToken string
	// Room is the LiveKit room a "webrtc" session joins; the agent listens to the participant
	// whose identity is UserID, or else to the first one that publishes a microphone.
	Room string
	// ConversationID names the conversation the session carries on across processes: with the
	// backend's persistence.shared_dir (Config.Extra), the session starts with the history that
	// another process's session under the same id kept there (a LiveKit job's session gets
	// "livekit:<room sid>" by itself).
	ConversationID string
	// AuthToken is checked by the backend's auth hook (Config.AuthHook or the built-in JWT
	// hook); the session's user id becomes the token's user.
	AuthToken string
	// AdmissionWait lets CreateSession wait up to this long (at most 60 s) for the rate
	// limiter instead of failing at once with ErrCodeRateLimited.
	AdmissionWait time.Duration
	// InputSampleRate and OutputSampleRate: 8000, 16000 (default), 24000, 32000, 44100, 48000.
	InputSampleRate  int
	OutputSampleRate int
	Metadata         map[string]any
	// InputCodec and OutputCodec: CodecPCM (default) or CodecOpus, for a host that carries the
	// audio over its own transport as Opus (Transport "host" only). With InputCodec CodecOpus
	// the user's audio comes in as packets through ProcessOpus (ProcessAudio is refused); with
	// OutputCodec CodecOpus the agent's audio is read as 20 ms packets with ReadOpus, and
	// ReceiveAudio carries nothing (its channel closes when the session stops). An Opus side
	// needs a rate Opus runs at: 8000, 16000, 24000 or 48000.
	InputCodec  Codec
	OutputCodec Codec
	// OpusComplexity (0-10; nil: 5) and OpusBitrate (bits per second, 6000-510000; 0: 32000)
	// tune the encoder of OutputCodec CodecOpus.
	OpusComplexity *int
	OpusBitrate    int
	// AgentCallback or StreamingAgentCallback (at most one) answers each user turn. An
	// stt_tts session needs one (ErrCodeInvalidArgument otherwise) unless the backend has a
	// built-in agent (Config.Agent), which answers the sessions without one; an s2s session
	// needs none.
	AgentCallback          AgentCallback
	StreamingAgentCallback StreamingAgentCallback
	// Agent overrides the built-in agent's settings (Config.Agent) for this session, key by
	// key, e.g. {"system_prompt": "You are a hotel's concierge.", "temperature": 0.7}. The
	// agent's "api_key" is refused here (session configurations are persisted): set it in
	// Config.Agent or the provider's environment variable. nil: the backend's settings.
	Agent map[string]any
	// EventBuffer is the capacity of the Events channel (default 256). Events that find it
	// full are dropped and counted (Session.DroppedEvents): the engine's thread never waits.
	EventBuffer int
	// AudioBuffer is the capacity, in chunks of about one frame, of the ReceiveAudio channel
	// (default 64, about 1.3 s). Chunks that find it full are dropped and counted
	// (Session.DroppedAudioChunks).
	AudioBuffer int
}

const (
	defaultEventBuffer = 256
	defaultAudioBuffer = 64
	defaultSampleRate  = 16000
	defaultFrame       = 20 * time.Millisecond
	defaultDrain       = 5 * time.Second
)

// configJSON builds the engine's backend configuration. name is the provider passed to Create.
func (c *Config) configJSON(op, name string) ([]byte, error) {
	provider := name
	if provider == "" {
		provider = c.Provider
	} else if c.Provider != "" && c.Provider != name {
		return nil, invalidConfig(op, "provider: Config.Provider %q differs from the name %q given to Create", c.Provider, name)
	}
	j := jsonObject{op: op, m: map[string]any{"provider": provider}}
	j.object("provider_config", c.ProviderConfig)
	j.str("pipeline_type", string(c.PipelineType))
	j.str("stt_provider", c.STTProvider)
	j.object("stt_config", c.STTConfig)
	j.str("tts_provider", c.TTSProvider)
	j.object("tts_config", c.TTSConfig)
	j.str("s2s_provider", c.S2SProvider)
	j.object("s2s_config", c.S2SConfig)
	j.millis("latency_target_ms", c.LatencyTarget)
	j.count("max_concurrent_sessions", c.MaxConcurrentSessions)
	if a := c.Audio; a != nil {
		s := j.section("audio")
		s.count("audio.sample_rate", a.SampleRate)
		s.millis("audio.frame_ms", a.Frame)
		s.millis("audio.input_buffer_ms", a.InputBuffer)
		s.millis("audio.output_buffer_ms", a.OutputBuffer)
		s.millis("audio.reply_buffer_ms", a.ReplyBuffer)
		s.boolean("audio.realtime_priority", a.RealtimePriority)
		s.count("audio.realtime_threads", a.RealtimeThreads)
		j.end("audio", s)
	}
	if v := c.VAD; v != nil {
		s := j.section("vad")
		if v.Mode != nil {
			s.m["mode"] = *v.Mode
		}
		s.millis("vad.start_ms", v.Start)
		s.millis("vad.stop_ms", v.Stop)
		j.end("vad", s)
	}
	if t := c.Turn; t != nil {
		s := j.section("turn")
		s.millis("turn.silence_ms", t.Silence)
		s.millis("turn.min_speech_ms", t.MinSpeech)
		s.millis("turn.max_turn_ms", t.MaxTurn)
		j.end("turn", s)
	}
	if i := c.Interruptions; i != nil {
		s := j.section("interruptions")
		s.boolean("interruptions.enabled", i.Enabled)
		s.millis("interruptions.min_speech_ms", i.MinSpeech)
		j.end("interruptions", s)
	}
	j.object("agent", c.Agent)
	j.merge(c.Extra)
	return j.marshal()
}

// configJSON builds the engine's session configuration.
func (c *SessionConfig) configJSON(op string) ([]byte, error) {
	if c.AgentCallback != nil && c.StreamingAgentCallback != nil {
		return nil, &BackendError{Op: op, Code: ErrCodeInvalidArgument,
			Message: "set AgentCallback or StreamingAgentCallback, not both"}
	}
	if c.EventBuffer < 0 || c.AudioBuffer < 0 {
		return nil, &BackendError{Op: op, Code: ErrCodeInvalidArgument, Message: "EventBuffer and AudioBuffer must not be negative"}
	}
	j := jsonObject{op: op, m: map[string]any{}}
	j.str("user_id", c.UserID)
	j.str("transport", c.Transport)
	j.str("connection_url", c.ConnectionURL)
	j.str("connection_token", c.ConnectionToken)
	j.str("room", c.Room)
	j.str("conversation_id", c.ConversationID)
	j.str("auth_token", c.AuthToken)
	j.millis("admission_wait_ms", c.AdmissionWait)
	j.count("input_sample_rate", c.InputSampleRate)
	j.count("output_sample_rate", c.OutputSampleRate)
	j.str("input_codec", string(c.InputCodec))
	j.str("output_codec", string(c.OutputCodec))
	if c.OpusComplexity != nil {
		j.m["opus_complexity"] = *c.OpusComplexity
	}
	j.count("opus_bitrate", c.OpusBitrate)
	j.object("metadata", c.Metadata)
	j.object("agent", c.Agent)
	return j.marshal()
}

func invalidConfig(op, format string, args ...any) error {
	return &BackendError{Op: op, Code: ErrCodeInvalidConfig, Message: fmt.Sprintf(format, args...)}
}

// jsonObject collects keys, keeping the first Go-side error (named by its field path).
type jsonObject struct {
	op  string
	m   map[string]any
	err error
}

func (j *jsonObject) fail(err error) {
	if j.err == nil {
		j.err = err
	}
}

func (j *jsonObject) str(key, v string) {
	if v != "" {
		j.m[key] = v
	}
}

func (j *jsonObject) count(field string, v int) {
	switch {
	case v < 0:
		j.fail(invalidConfig(j.op, "%s: %d is negative", field, v))
	case v > 0:
		j.m[lastKey(field)] = v
	}
}

func (j *jsonObject) millis(field string, d time.Duration) {
	switch {
	case d == 0:
	case d < 0:
		j.fail(invalidConfig(j.op, "%s: negative duration %v", field, d))
	case d%time.Millisecond != 0:
		j.fail(invalidConfig(j.op, "%s: %v is not a whole number of milliseconds", field, d))
	default:
		j.m[lastKey(field)] = d.Milliseconds()
	}
}

func (j *jsonObject) boolean(field string, b *bool) {
	if b != nil {
		j.m[lastKey(field)] = *b
	}
}

func (j *jsonObject) object(key string, v map[string]any) {
	if v == nil {
		return
	}
	if _, err := json.Marshal(v); err != nil {
		j.fail(invalidConfig(j.op, "%s: %v", key, err))
		return
	}
	j.m[key] = v
}

func (j *jsonObject) section(string) *jsonObject {
	return &jsonObject{op: j.op, m: map[string]any{}}
}

func (j *jsonObject) end(key string, s *jsonObject) {
	if s.err != nil {
		j.fail(s.err)
	}
	if len(s.m) > 0 {
		j.m[key] = s.m
	}
}

// merge adds extra, merging objects one level deep.
func (j *jsonObject) merge(extra map[string]any) {
	for k, v := range extra {
		if sub, ok := v.(map[string]any); ok {
			if have, ok := j.m[k].(map[string]any); ok {
				merged := make(map[string]any, len(have)+len(sub))
				for hk, hv := range have {
					merged[hk] = hv
				}
				for sk, sv := range sub {
					merged[sk] = sv
				}
				j.m[k] = merged
				continue
			}
		}
		j.m[k] = v
	}
}

func (j *jsonObject) marshal() ([]byte, error) {
	if j.err != nil {
		return nil, j.err
	}
	b, err := json.Marshal(j.m)
	if err != nil {
		return nil, invalidConfig(j.op, "config: %v", err)
	}
	return b, nil
}

// lastKey is the JSON key of a dotted field path ("turn.silence_ms" → "silence_ms").
func lastKey(field string) string {
	for i := len(field) - 1; i >= 0; i-- {
		if field[i] == '.' {
			return field[i+1:]
		}
	}
	return field
}
