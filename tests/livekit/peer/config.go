package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/livekit/protocol/auth"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

type speakItem struct {
	Path     string  `json:"file"`
	AtMs     float64 `json:"at_ms"`
	explicit bool
}

type textItem struct {
	Topic string
	Text  string
	AtMs  float64
}

type attrItem struct {
	Key, Value string
	AtMs       float64
	AtJoin     bool
}

type config struct {
	URL, Room, Identity, Name string
	APIKey, APISecret, Token  string
	Dispatch                  multi

	Speak          []speakItem
	SpeakAtMs      float64
	WaitSubscriber bool
	Silence        bool
	Loss           float64
	LossSeed       int64
	OpusBitrate    int
	OpusComplexity int

	Record, RecordDir, Report string
	DurationMs                float64
	UntilKey, UntilValue      string
	UntilIdentity             string
	LingerMs                  float64
	EnergyDBFS                float64

	SendText   []textItem
	TextAttrs  map[string]string
	SendData   []textItem
	Attrs      []attrItem
	TextTopics []string

	ConnectTimeout time.Duration
	Quiet          bool
	SDKVerbosity   int
}

const usage = `lk-peer: an independent LiveKit participant for integration tests (LiveKit Go SDK v2.19.0).

It joins a room, optionally speaks WAV files as an Opus microphone track in real time, records
every remote audio track it hears (48 kHz mono WAV, timeline preserved), logs text streams,
data packets and participant attribute changes, then leaves and writes a JSON report.
All times are milliseconds since the peer started joining (the "session clock").

Offsets given with @MS (speech, texts, data, attributes) count from the "action clock": the
moment the microphone track is ready (or the join, when nothing is spoken); with
--wait-subscriber, the moment someone first subscribes to our microphone track.

Exit status: 0 ok; 1 failure (bad arguments, cannot connect, token refused, file errors...);
2 disconnected by the server (or the connection lost for 10 s); 3 the --until-attribute condition was not met in --duration-ms.
The report is written in every case where the join was attempted.

  lk-peer analyze --ref SPOKEN.wav --rec RECORDED.wav [--from-ms A --to-ms B] [--min-correlation C]
finds SPOKEN in RECORDED (FFT cross-correlation at 48 kHz) and prints {lag_ms, correlation, ...}.

Options:
`

func parseConfig(args []string) (*config, error) {
	c := &config{TextAttrs: map[string]string{}}
	fs := flag.NewFlagSet("lk-peer", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		fs.PrintDefaults()
	}
	var speak, sendText, textAttr, sendData, attrs, topics multi
	var until string
	var durationMs, connectTimeoutMs int
	fs.StringVar(&c.URL, "url", "ws://127.0.0.1:7880", "LiveKit server URL")
	fs.StringVar(&c.Room, "room", "", "room name (required)")
	fs.StringVar(&c.Identity, "identity", "", "participant identity (default user-<random>)")
	fs.StringVar(&c.Name, "name", "", "participant display name")
	fs.StringVar(&c.APIKey, "api-key", envOr("LIVEKIT_API_KEY", "devkey"), "API key to mint a token with (env LIVEKIT_API_KEY)")
	fs.StringVar(&c.APISecret, "api-secret", envOr("LIVEKIT_API_SECRET", "secret"), "API secret to mint a token with (env LIVEKIT_API_SECRET)")
	fs.StringVar(&c.Token, "token", "", "use this access token instead of minting one")
	fs.Var(&c.Dispatch, "dispatch-agent", "NAME: put an agent dispatch for NAME in the minted token (repeatable)")
	fs.Var(&speak, "speak", "FILE.wav[@MS]: speak a 16-bit PCM WAV (any rate, resampled to 48 kHz) at MS on the action clock (repeatable; overlaps are mixed)")
	fs.Float64Var(&c.SpeakAtMs, "speak-at-ms", 0, "offset for --speak files given without @MS")
	fs.BoolVar(&c.WaitSubscriber, "wait-subscriber", false, "start the action clock when someone subscribes to our microphone track")
	fs.BoolVar(&c.Silence, "silence", true, "send Opus-encoded silence when not speaking (an open microphone); false leaves gaps (like DTX)")
	fs.Float64Var(&c.Loss, "loss", 0, "drop this fraction (0..1) of outgoing RTP packets, seeded random; a dropped packet's retransmissions are dropped too")
	fs.Int64Var(&c.LossSeed, "loss-seed", 1, "seed for --loss")
	fs.IntVar(&c.OpusBitrate, "opus-bitrate", 32000, "Opus bitrate, bit/s")
	fs.IntVar(&c.OpusComplexity, "opus-complexity", 5, "Opus encoder complexity 0..10")
	fs.StringVar(&c.Record, "record", "", "write everything heard (all remote audio tracks mixed) to this 48 kHz mono 16-bit WAV, session clock from 0")
	fs.StringVar(&c.RecordDir, "record-dir", "", "also write one WAV per remote track into this directory (IDENTITY-TRACKSID.wav)")
	fs.StringVar(&c.Report, "report", "", "write the JSON report here")
	fs.IntVar(&durationMs, "duration-ms", 30000, "leave after this long (ms after the join started); with --until-attribute, the timeout")
	fs.StringVar(&until, "until-attribute", "", "KEY=VALUE: leave once a remote participant's attribute KEY changes to VALUE after all speech, texts and data were sent")
	fs.StringVar(&c.UntilIdentity, "until-identity", "", "only this participant's attribute change counts for --until-attribute")
	fs.Float64Var(&c.LingerMs, "linger-ms", 500, "stay this long after the --until-attribute condition (catches trailing audio)")
	fs.Float64Var(&c.EnergyDBFS, "energy-threshold-dbfs", -45, "a 20 ms frame with RMS at or above this counts as audible")
	fs.Var(&sendText, "send-text", "TOPIC:TEXT[@MS]: send a text stream (repeatable); on lk.transcription the lk.segment_id / lk.transcribed_track_id / lk.transcription_final attributes are filled in unless given")
	fs.Var(&textAttr, "text-attr", "KEY=VALUE: attribute for every --send-text stream (repeatable)")
	fs.Var(&sendData, "send-data", "TOPIC:PAYLOAD[@MS]: publish a reliable data packet (repeatable)")
	fs.Var(&attrs, "attr", "KEY=VALUE[@MS]: set own participant attribute; without @MS it is in the token (set at join) (repeatable)")
	fs.Var(&topics, "text-topic", "also receive text streams on this topic (lk.transcription and lk.chat always are) (repeatable)")
	fs.IntVar(&connectTimeoutMs, "connect-timeout-ms", 10000, "give up joining after this long")
	fs.BoolVar(&c.Quiet, "quiet", false, "do not log events to stderr")
	fs.IntVar(&c.SDKVerbosity, "sdk-verbosity", -1, "LiveKit SDK log verbosity: -1 none, 0 info/warnings/errors, 1+ debug")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.Room == "" {
		return nil, errors.New("--room is required")
	}
	if c.Identity == "" && c.Token != "" {
		// the token names the identity (read without verifying: the server verifies)
		if v, err := auth.ParseAPIToken(c.Token); err == nil {
			c.Identity = v.Identity()
		}
	}
	if c.Identity == "" {
		c.Identity = fmt.Sprintf("user-%06d", rand.Intn(1000000))
	}
	if c.Token == "" && (c.APIKey == "" || c.APISecret == "") {
		return nil, errors.New("need --token, or --api-key and --api-secret")
	}
	if c.Loss < 0 || c.Loss > 1 {
		return nil, errors.New("--loss must be between 0 and 1")
	}
	c.DurationMs = float64(durationMs)
	c.ConnectTimeout = time.Duration(connectTimeoutMs) * time.Millisecond
	for _, s := range speak {
		path, at, ok := splitAt(s)
		item := speakItem{Path: path, AtMs: c.SpeakAtMs}
		if ok {
			item.AtMs, item.explicit = at, true
		}
		c.Speak = append(c.Speak, item)
	}
	for _, s := range sendText {
		it, err := parseTopicItem(s, "--send-text")
		if err != nil {
			return nil, err
		}
		c.SendText = append(c.SendText, it)
	}
	for _, s := range sendData {
		it, err := parseTopicItem(s, "--send-data")
		if err != nil {
			return nil, err
		}
		c.SendData = append(c.SendData, it)
	}
	for _, s := range textAttr {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--text-attr %q: want KEY=VALUE", s)
		}
		c.TextAttrs[k] = v
	}
	for _, s := range attrs {
		body, at, timed := splitAt(s)
		k, v, ok := strings.Cut(body, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--attr %q: want KEY=VALUE[@MS]", s)
		}
		c.Attrs = append(c.Attrs, attrItem{Key: k, Value: v, AtMs: at, AtJoin: !timed})
	}
	if until != "" {
		k, v, ok := strings.Cut(until, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--until-attribute %q: want KEY=VALUE", until)
		}
		c.UntilKey, c.UntilValue = k, v
	}
	c.TextTopics = []string{"lk.transcription", "lk.chat"}
	for _, t := range topics {
		if !contains(c.TextTopics, t) {
			c.TextTopics = append(c.TextTopics, t)
		}
	}
	for _, it := range c.SendText {
		if !contains(c.TextTopics, it.Topic) {
			c.TextTopics = append(c.TextTopics, it.Topic)
		}
	}
	return c, nil
}

// splitAt splits "X@123" into ("X", 123, true); anything else is returned whole.
func splitAt(s string) (string, float64, bool) {
	i := strings.LastIndex(s, "@")
	if i < 0 {
		return s, 0, false
	}
	v, err := strconv.ParseFloat(s[i+1:], 64)
	if err != nil || v < 0 {
		return s, 0, false
	}
	return s[:i], v, true
}

func parseTopicItem(s, flagName string) (textItem, error) {
	body, at, _ := splitAt(s)
	topic, text, ok := strings.Cut(body, ":")
	if !ok || topic == "" {
		return textItem{}, fmt.Errorf("%s %q: want TOPIC:TEXT[@MS]", flagName, s)
	}
	return textItem{Topic: topic, Text: text, AtMs: at}, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
