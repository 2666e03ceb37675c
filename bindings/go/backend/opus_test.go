package backend

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A host relays one session's Opus output into another's Opus input at real-time pace, losing
// every fifth packet: the speaker's greeting (the test TTS's tone, at 200 Hz here) is read as
// 20 ms packets at 48 kHz (through a buffer too small first: the packet is kept) and heard by
// the listener, at 24 kHz, as a turn at 200 Hz. The calls of the other codec, garbage and bad
// codecs are refused.
func TestOpusRelay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newTestBackend(t, func(c *Config) { c.TTSConfig = map[string]any{"frequency_hz": 200} })
	speaker := newTestSession(t, b, &SessionConfig{
		OutputCodec: CodecOpus, OutputSampleRate: 48000, OpusComplexity: Int(3),
		OpusBitrate: 24000, AgentCallback: echoAgent,
	})
	listener := newTestSession(t, b, &SessionConfig{
		InputCodec: CodecOpus, InputSampleRate: 24000, AgentCallback: echoAgent,
	})
	heard := record(listener)
	const greeting = "Hello over Opus, long enough to be one turn."
	if err := speaker.Say(ctx, greeting); err != nil {
		t.Fatal(err)
	}

	buf := make([]byte, OpusMaxPacket)
	var packets, lost, bytes int
	keptOnce := false
	deadline := time.Now().Add(patience)
	quiet := 0 // consecutive 20 ms ticks without a packet once the greeting flowed
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for quiet < 50 {
		<-tick.C
		if time.Now().After(deadline) {
			t.Fatalf("%d packets read", packets)
		}
		if !keptOnce {
			if _, err := speaker.ReadOpus(ctx, buf[:1]); err != nil {
				wantCode(t, err, ErrCodeInvalidArgument, "kept for the next call")
				keptOnce = true
			}
		}
		n, err := speaker.ReadOpus(ctx, buf)
		if err != nil {
			t.Fatal(err)
		}
		var packet []byte // lost: nil
		switch {
		case n > 0 && packets%5 == 4:
			packets++
			lost++
		case n > 0:
			packets++
			bytes += n
			packet = buf[:n]
		case packets == 0:
			continue
		default:
			quiet++ // after the greeting: the listener's silence, concealed
		}
		if err := listener.ProcessOpus(ctx, packet); err != nil {
			t.Fatal(err)
		}
	}
	// 44 characters x 20 ms of tone: 44 packets (one more for the padded end).
	t.Logf("%d packets read (%d lost on the way), %d bytes each on average", packets, lost,
		bytes/(packets-lost))
	if !keptOnce || packets < 44 || packets > 46 || bytes/(packets-lost) < 20 {
		t.Errorf("kept once %v, %d packets of %d bytes", keptOnce, packets, bytes)
	}
	i := heard.waitEvent(t, 0, "the listener's transcript", isKind(EventTranscriptFinal))
	if got := heard.snapshot()[i].Text; !strings.HasPrefix(got, "pitch 200 hz") {
		t.Errorf("the listener heard %q", got)
	}

	// Garbage is refused and nothing is queued; each side refuses the other codec's call.
	wantCode(t, listener.ProcessOpus(ctx, []byte{0x03, 0x00}), ErrCodeInvalidArgument,
		"nothing was queued")
	wantCode(t, listener.ProcessAudio(ctx, make([]byte, 640)), ErrCodeInvalidState,
		"input_codec is \"opus\"")
	_, err := listener.ReadOpus(ctx, buf)
	wantCode(t, err, ErrCodeInvalidState, "output_codec is \"pcm\"")
	wantCode(t, speaker.ProcessOpus(ctx, nil), ErrCodeInvalidState, "input_codec is \"pcm\"")
	// The Opus speaker's PCM channel carries nothing and closes with the session.
	if err := speaker.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for chunk := range speaker.ReceiveAudio() {
		t.Errorf("a PCM chunk of %d bytes from an Opus output", len(chunk))
	}
	_, err = speaker.ReadOpus(ctx, buf)
	wantCode(t, err, ErrCodeInvalidState, "stopped")

	_, err = b.CreateSession(ctx, &SessionConfig{InputCodec: "mp3", AgentCallback: echoAgent})
	wantCode(t, err, ErrCodeInvalidConfig, "input_codec", "`pcm`", "`opus`")
	_, err = b.CreateSession(ctx, &SessionConfig{OutputCodec: CodecOpus, OutputSampleRate: 44100,
		AgentCallback: echoAgent})
	wantCode(t, err, ErrCodeInvalidConfig, "output_sample_rate: 44100")
}

func TestOpusSessionConfigJSON(t *testing.T) {
	t.Parallel()
	js, err := (&SessionConfig{InputCodec: CodecOpus, OutputCodec: CodecPCM, OpusComplexity: Int(0),
		OpusBitrate: 16000}).configJSON("test")
	want := `{"input_codec":"opus","opus_bitrate":16000,"opus_complexity":0,"output_codec":"pcm"}`
	if err != nil || string(js) != want {
		t.Errorf("session config JSON\n got %s %v\nwant %s", js, err, want)
	}
}
