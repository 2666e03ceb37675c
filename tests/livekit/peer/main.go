// lk-peer: an independent LiveKit participant for the voice engine's LiveKit integration tests.
// See `lk-peer -h` and README.md. Build with ./build.sh (it applies the SDK patch).
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/go-logr/stdr"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	protoLogger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// --- report ---------------------------------------------------------------------------------

type report struct {
	Identity           string             `json:"identity"`
	ParticipantSID     string             `json:"participant_sid"`
	Room               string             `json:"room"`
	RoomSID            string             `json:"room_sid"`
	URL                string             `json:"url"`
	JoinStartedUnixMs  int64              `json:"join_started_unix_ms"`
	JoinedMs           float64            `json:"joined_ms"`
	ActionClockMs      *float64           `json:"action_clock_start_ms"`
	LeftMs             float64            `json:"left_ms"`
	PublishedTracks    []publishedTrack   `json:"published_tracks"`
	Utterances         []utterance        `json:"utterances"`
	SpeechDoneMs       *float64           `json:"speech_done_ms"`
	Sent               sentStats          `json:"sent"`
	SubscribedTracks   []remoteTrack      `json:"subscribed_tracks"`
	PacketsReceived    int                `json:"packets_received"`
	FirstRemoteAudioMs *float64           `json:"first_remote_audio_ms"`
	FirstAudibleMs     *float64           `json:"first_audible_ms"`
	Audible            []audibleSpan      `json:"audible"`
	TextStreams        []*textStream      `json:"text_streams"`
	TextsSent          []sentText         `json:"texts_sent"`
	AttributeChanges   []attributeChange  `json:"attribute_changes"`
	DataPackets        []dataPacket       `json:"data_packets"`
	Transcriptions     []transcription    `json:"transcriptions"`
	Participants       []participantEvent `json:"participants"`
	ActiveSpeakers     []speakersEvent    `json:"active_speakers"`
	Until              *untilResult       `json:"until,omitempty"`
	Record             string             `json:"record,omitempty"`
	Errors             []errorEvent       `json:"errors"`
	ExitCode           int                `json:"exit_code"`
}

type publishedTrack struct {
	SID             string   `json:"sid"`
	Name            string   `json:"name"`
	Codec           string   `json:"codec"`
	PublishedMs     float64  `json:"published_ms"`
	FirstSubscribed *float64 `json:"first_subscribed_ms"`
}

type utterance struct {
	File        string  `json:"file"`
	AtMs        float64 `json:"at_ms"`
	StartMs     float64 `json:"start_ms"`
	EndMs       float64 `json:"end_ms"`
	AudioMs     float64 `json:"audio_ms"`
	SourceRate  int     `json:"source_rate"`
	FramesSent  int     `json:"frames"`
	samples     []int16 // at 48 kHz
	startSample int64
}

type sentStats struct {
	Frames        int     `json:"frames_encoded"`
	SkippedFrames int     `json:"frames_not_sent"`
	Loss          float64 `json:"loss"`
	LossSeed      int64   `json:"loss_seed"`
	lossStats
}

type textStream struct {
	StreamID   string            `json:"stream_id"`
	Topic      string            `json:"topic"`
	Sender     string            `json:"sender"`
	HeaderMs   float64           `json:"header_ms"`
	DoneMs     *float64          `json:"done_ms"`
	Attributes map[string]string `json:"attributes"`
	Text       string            `json:"text"`
	Chunks     []textChunk       `json:"chunks"`
}

type textChunk struct {
	Ms   float64 `json:"ms"`
	Text string  `json:"text"`
}

type sentText struct {
	Ms         float64           `json:"ms"`
	Topic      string            `json:"topic"`
	StreamID   string            `json:"stream_id"`
	Text       string            `json:"text"`
	Attributes map[string]string `json:"attributes"`
}

type attributeChange struct {
	Ms       float64 `json:"ms"`
	Identity string  `json:"identity"`
	Key      string  `json:"key"`
	Value    string  `json:"value"`
	Local    bool    `json:"local,omitempty"`
	Initial  bool    `json:"initial,omitempty"` // present when the participant was first seen
}

type dataPacket struct {
	Ms     float64 `json:"ms"`
	Sender string  `json:"sender"`
	Kind   string  `json:"kind"`
	Topic  string  `json:"topic,omitempty"`
	Text   string  `json:"text,omitempty"`
	Base64 string  `json:"payload_base64,omitempty"`
	Size   int     `json:"size"`
	Detail string  `json:"detail,omitempty"`
}

type transcription struct {
	Ms       float64 `json:"ms"`
	Identity string  `json:"identity"`
	TrackSID string  `json:"track_sid"`
	ID       string  `json:"segment_id"`
	Text     string  `json:"text"`
	Final    bool    `json:"final"`
}

type participantEvent struct {
	Ms         float64           `json:"ms"`
	Event      string            `json:"event"` // present | joined | left
	Identity   string            `json:"identity"`
	SID        string            `json:"sid"`
	Kind       string            `json:"kind"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

type speakersEvent struct {
	Ms       float64  `json:"ms"`
	Speakers []string `json:"speakers"`
}

type untilResult struct {
	Key         string   `json:"key"`
	Value       string   `json:"value"`
	Identity    string   `json:"identity,omitempty"`
	Satisfied   bool     `json:"satisfied"`
	SatisfiedMs *float64 `json:"satisfied_ms"`
}

type errorEvent struct {
	Ms      float64 `json:"ms"`
	Message string  `json:"message"`
}

// --- session --------------------------------------------------------------------------------

type session struct {
	cfg   *config
	start time.Time

	mu        sync.Mutex
	rep       report
	leaving   bool
	actionsAt time.Time // action clock; zero until started
	pub       *publishedTrack

	recv *receiver
	loss *lossFactory

	clockStarted   chan struct{}
	clockOnce      sync.Once
	actionsDone    chan struct{} // closed when all speech, texts, data and timed attributes were sent
	speechDoneC    chan struct{}
	speechDoneOnce sync.Once
	utts           []utterance // the speaker goroutine's; read after it stopped
	untilMet       chan struct{}
	untilOnce      sync.Once
	fatal          chan error
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/100) / 10 }

func (s *session) sinceStart() time.Duration { return time.Since(s.start) }
func (s *session) nowMs() float64            { return ms(s.sinceStart()) }
func fptr(v float64) *float64                { return &v }

func (s *session) logf(kind, format string, a ...any) {
	if s.cfg.Quiet {
		return
	}
	fmt.Fprintf(os.Stderr, "lk-peer %s %+9.1fms %-10s %s\n", s.cfg.Identity, s.nowMs(), kind, fmt.Sprintf(format, a...))
}

var jwtRe = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)

func (s *session) addError(format string, a ...any) {
	msg := jwtRe.ReplaceAllString(fmt.Sprintf(format, a...), "<token>")
	s.mu.Lock()
	s.rep.Errors = append(s.rep.Errors, errorEvent{Ms: s.nowMs(), Message: msg})
	s.mu.Unlock()
	s.logf("error", "%s", msg)
}

func (s *session) noteFirstAudio(t float64) {
	s.mu.Lock()
	if s.rep.FirstRemoteAudioMs == nil || t < *s.rep.FirstRemoteAudioMs {
		s.rep.FirstRemoteAudioMs = fptr(t)
	}
	s.mu.Unlock()
}

func (s *session) startActionClock(why string) {
	s.clockOnce.Do(func() {
		s.mu.Lock()
		s.actionsAt = time.Now()
		s.rep.ActionClockMs = fptr(s.nowMs())
		s.mu.Unlock()
		s.logf("clock", "action clock started (%s)", why)
		close(s.clockStarted)
	})
}

func (s *session) run(ctx context.Context) int {
	cfg := s.cfg
	s.rep = report{
		Identity: cfg.Identity, Room: cfg.Room, URL: cfg.URL,
		JoinStartedUnixMs: s.start.UnixMilli(),
		PublishedTracks:   []publishedTrack{}, Utterances: []utterance{}, SubscribedTracks: []remoteTrack{},
		Audible: []audibleSpan{}, TextStreams: []*textStream{}, TextsSent: []sentText{},
		AttributeChanges: []attributeChange{}, DataPackets: []dataPacket{}, Transcriptions: []transcription{},
		Participants: []participantEvent{}, ActiveSpeakers: []speakersEvent{}, Errors: []errorEvent{},
		Sent: sentStats{Loss: cfg.Loss, LossSeed: cfg.LossSeed},
	}
	if cfg.UntilKey != "" {
		s.rep.Until = &untilResult{Key: cfg.UntilKey, Value: cfg.UntilValue, Identity: cfg.UntilIdentity}
	}

	// Load and resample the speech first: a bad file fails before joining.
	var utts []utterance
	for _, sp := range cfg.Speak {
		pcm, rate, err := readWAV(sp.Path)
		if err != nil {
			s.addError("--speak: %v", err)
			return s.finishEarly(1)
		}
		u := utterance{File: sp.Path, AtMs: sp.AtMs, SourceRate: rate, samples: resample(pcm, rate, rate48k)}
		u.startSample = int64(math.Round(sp.AtMs * rate48k / 1000))
		u.AudioMs = float64(len(u.samples)) * 1000 / rate48k
		utts = append(utts, u)
	}

	token := cfg.Token
	if token == "" {
		var err error
		token, err = s.mintToken()
		if err != nil {
			s.addError("minting token: %v", err)
			return s.finishEarly(1)
		}
	}

	// The session clock starts here, at the join (files were loaded and resampled before).
	s.mu.Lock()
	s.start = time.Now()
	s.rep.JoinStartedUnixMs = s.start.UnixMilli()
	s.mu.Unlock()

	room := lksdk.NewRoom(s.callbacks())
	for _, topic := range cfg.TextTopics {
		topic := topic
		if err := room.RegisterTextStreamHandler(topic, func(r *lksdk.TextStreamReader, sender string) { s.onTextStream(r, sender) }); err != nil {
			s.addError("registering text stream handler for %s: %v", topic, err)
		}
	}

	s.loss = newLossFactory(cfg.Loss, cfg.LossSeed)
	s.logf("join", "joining %s room %s as %s", cfg.URL, cfg.Room, cfg.Identity)
	joinCtx, cancelJoin := context.WithTimeout(ctx, cfg.ConnectTimeout)
	err := room.JoinWithContextAndToken(joinCtx, cfg.URL, token,
		lksdk.WithAutoSubscribe(true),
		lksdk.WithConnectTimeout(cfg.ConnectTimeout),
		lksdk.WithInterceptors([]interceptor.Factory{s.loss}),
		lksdk.WithIncludeDefaultInterceptors(true),
		lksdk.WithDisableTURN(),
		lksdk.WithDisableRegionDiscovery(),
	)
	cancelJoin()
	if err != nil {
		s.addError("cannot join %s room %s as %s: %v", cfg.URL, cfg.Room, cfg.Identity, explainJoinError(err))
		return s.finishEarly(1)
	}
	s.mu.Lock()
	s.rep.JoinedMs = s.nowMs()
	s.rep.ParticipantSID = room.LocalParticipant.SID()
	s.rep.RoomSID = room.SID()
	s.mu.Unlock()
	s.logf("join", "joined room %s (%s) as %s (%s)", room.Name(), room.SID(), room.LocalParticipant.Identity(), room.LocalParticipant.SID())
	if id := room.LocalParticipant.Identity(); id != cfg.Identity {
		s.addError("joined as %q, not as --identity %q (the token decides)", id, cfg.Identity)
	}
	for _, rp := range room.GetRemoteParticipants() {
		s.participantSeen(rp, "present")
	}

	// Publish the microphone, if anything is to be spoken.
	var track *lksdk.LocalTrack
	bound := make(chan struct{})
	if len(utts) > 0 {
		track, err = lksdk.NewLocalTrack(webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: rate48k, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
		})
		if err != nil {
			s.addError("creating the microphone track: %v", err)
			return s.leave(room, 1)
		}
		var bindOnce sync.Once
		track.OnBind(func() { bindOnce.Do(func() { close(bound) }) })
		pub, err := room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{
			Name: "microphone", Source: livekit.TrackSource_MICROPHONE, DisableDTX: true,
		})
		if err != nil {
			s.addError("publishing the microphone track: %v", err)
			return s.leave(room, 1)
		}
		s.mu.Lock()
		s.rep.PublishedTracks = append(s.rep.PublishedTracks, publishedTrack{SID: pub.SID(), Name: pub.Name(), Codec: webrtc.MimeTypeOpus, PublishedMs: s.nowMs()})
		s.pub = &s.rep.PublishedTracks[len(s.rep.PublishedTracks)-1]
		s.mu.Unlock()
		s.logf("publish", "microphone track %s published", pub.SID())
		select {
		case <-bound:
		case <-time.After(cfg.ConnectTimeout):
			s.addError("the microphone track was not bound to the publisher connection within %v", cfg.ConnectTimeout)
			return s.leave(room, 1)
		case <-ctx.Done():
			return s.leave(room, 0)
		}
		s.logf("publish", "microphone track bound")
		if !cfg.WaitSubscriber {
			s.startActionClock("microphone ready")
		}
	} else {
		s.startActionClock("joined")
	}

	stop := make(chan struct{})
	var workers sync.WaitGroup
	s.utts = utts
	if track != nil {
		workers.Add(1)
		go func() { defer workers.Done(); s.speak(track, s.utts, stop) }()
	}
	workers.Add(1)
	go func() { defer workers.Done(); s.runActions(room, stop) }()

	// Wait for the end.
	deadline := time.Until(s.start.Add(time.Duration(cfg.DurationMs) * time.Millisecond))
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	code := 0
	var untilC <-chan struct{}
	if cfg.UntilKey != "" {
		untilC = s.untilMet
	}
	select {
	case <-timer.C:
		if cfg.UntilKey != "" {
			s.addError("--until-attribute %s=%s not met within --duration-ms %v", cfg.UntilKey, cfg.UntilValue, cfg.DurationMs)
			code = 3
		} else {
			s.logf("end", "duration reached")
		}
	case <-untilC:
		s.logf("end", "condition %s=%s met; lingering %v ms", cfg.UntilKey, cfg.UntilValue, cfg.LingerMs)
		select {
		case <-time.After(time.Duration(cfg.LingerMs) * time.Millisecond):
		case err := <-s.fatal:
			s.addError("%v", err)
			code = 2
		case <-ctx.Done():
		}
	case err := <-s.fatal:
		s.addError("%v", err)
		code = 2
	case <-ctx.Done():
		s.logf("end", "interrupted")
	}
	close(stop)
	workers.Wait()
	return s.leave(room, code)
}

func explainJoinError(err error) error {
	msg := err.Error()
	var ne net.Error
	switch {
	case strings.Contains(msg, "401") || strings.Contains(strings.ToLower(msg), "unauthorized") || strings.Contains(strings.ToLower(msg), "invalid token"):
		return fmt.Errorf("token refused by the server (%w)", err)
	case strings.Contains(msg, "connection refused"):
		return fmt.Errorf("nothing listens there (%w)", err)
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("timed out (%w)", err)
	}
	return err
}

func (s *session) mintToken() (string, error) {
	cfg := s.cfg
	yes := true
	at := auth.NewAccessToken(cfg.APIKey, cfg.APISecret).
		SetIdentity(cfg.Identity).
		SetValidFor(time.Hour + time.Duration(cfg.DurationMs)*time.Millisecond).
		SetVideoGrant(&auth.VideoGrant{
			RoomJoin: true, Room: cfg.Room,
			CanPublish: &yes, CanSubscribe: &yes, CanPublishData: &yes, CanUpdateOwnMetadata: &yes,
		})
	if cfg.Name != "" {
		at.SetName(cfg.Name)
	}
	joinAttrs := map[string]string{}
	for _, a := range cfg.Attrs {
		if a.AtJoin {
			joinAttrs[a.Key] = a.Value
		}
	}
	if len(joinAttrs) > 0 {
		at.SetAttributes(joinAttrs)
	}
	if len(cfg.Dispatch) > 0 {
		var ds []*livekit.RoomAgentDispatch
		for _, name := range cfg.Dispatch {
			ds = append(ds, &livekit.RoomAgentDispatch{AgentName: name})
		}
		at.SetAgents(ds...)
	}
	return at.ToJWT()
}

// --- callbacks ------------------------------------------------------------------------------

func kindName(k lksdk.ParticipantKind) string {
	return strings.ToLower(strings.TrimPrefix(livekit.ParticipantInfo_Kind(k).String(), "ParticipantInfo_"))
}

func (s *session) participantSeen(p *lksdk.RemoteParticipant, event string) {
	attrs := copyMap(p.Attributes())
	now := s.nowMs()
	s.mu.Lock()
	s.rep.Participants = append(s.rep.Participants, participantEvent{Ms: now, Event: event, Identity: p.Identity(), SID: p.SID(), Kind: kindName(p.Kind()), Attributes: attrs})
	s.mu.Unlock()
	s.logf("participant", "%s %s (%s, kind %s) attributes %s", event, p.Identity(), p.SID(), kindName(p.Kind()), fmtMap(attrs))
	keys := sortedKeys(attrs)
	for _, k := range keys {
		s.attributeChanged(p.Identity(), k, attrs[k], false, true)
	}
}

func (s *session) attributeChanged(identity, key, value string, local, initial bool) {
	now := s.nowMs()
	s.mu.Lock()
	s.rep.AttributeChanges = append(s.rep.AttributeChanges, attributeChange{Ms: now, Identity: identity, Key: key, Value: value, Local: local, Initial: initial})
	s.mu.Unlock()
	if !initial {
		s.logf("attribute", "%s %s=%q%s", identity, key, value, map[bool]string{true: " (own)", false: ""}[local])
	}
	cfg := s.cfg
	if cfg.UntilKey == "" || local || key != cfg.UntilKey || value != cfg.UntilValue {
		return
	}
	if cfg.UntilIdentity != "" && identity != cfg.UntilIdentity {
		return
	}
	select {
	case <-s.actionsDone:
	default:
		s.logf("until", "%s %s=%s seen before all speech was sent: not counted", identity, key, value)
		return
	}
	s.untilOnce.Do(func() {
		s.mu.Lock()
		s.rep.Until.Satisfied = true
		s.rep.Until.SatisfiedMs = fptr(now)
		s.mu.Unlock()
		close(s.untilMet)
	})
}

func (s *session) callbacks() *lksdk.RoomCallback {
	cb := lksdk.NewRoomCallback()
	cb.OnParticipantConnected = func(rp *lksdk.RemoteParticipant) { s.participantSeen(rp, "joined") }
	cb.OnParticipantDisconnected = func(rp *lksdk.RemoteParticipant) {
		s.mu.Lock()
		s.rep.Participants = append(s.rep.Participants, participantEvent{Ms: s.nowMs(), Event: "left", Identity: rp.Identity(), SID: rp.SID(), Kind: kindName(rp.Kind())})
		s.mu.Unlock()
		s.logf("participant", "left %s", rp.Identity())
	}
	cb.OnAttributesChanged = func(changed map[string]string, p lksdk.Participant) {
		local := p.Identity() == s.cfg.Identity
		for _, k := range sortedKeys(changed) {
			s.attributeChanged(p.Identity(), k, changed[k], local, false)
		}
	}
	cb.OnTrackPublished = func(pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		s.logf("track", "%s published %s track %s (%s, %s)", rp.Identity(), pub.Kind(), pub.SID(), pub.Name(), pub.MimeType())
	}
	cb.OnTrackUnpublished = func(pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		s.logf("track", "%s unpublished track %s", rp.Identity(), pub.SID())
	}
	cb.OnTrackSubscribed = func(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		s.logf("track", "subscribed to %s track %s of %s (%s)", track.Kind(), pub.SID(), rp.Identity(), track.Codec().MimeType)
		if track.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		s.recv.handle(track, &remoteTrack{
			Identity: rp.Identity(), ParticipantSID: rp.SID(), TrackSID: pub.SID(), Name: pub.Name(),
			Source: pub.Source().String(), Codec: track.Codec().MimeType, SubscribedMs: s.nowMs(), Audible: []span{},
		})
	}
	cb.OnTrackUnsubscribed = func(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		s.logf("track", "unsubscribed from track %s of %s", pub.SID(), rp.Identity())
		now := s.nowMs()
		s.recv.mu.Lock()
		for _, rt := range s.recv.tracks {
			if rt.TrackSID == pub.SID() && rt.UnsubscribedMs == 0 {
				rt.UnsubscribedMs = now
			}
		}
		s.recv.mu.Unlock()
	}
	cb.OnTrackSubscriptionFailed = func(sid string, rp *lksdk.RemoteParticipant) {
		s.addError("subscription to track %s of %s failed", sid, rp.Identity())
	}
	cb.OnTrackMuted = func(pub lksdk.TrackPublication, p lksdk.Participant) {
		s.logf("track", "%s muted %s", p.Identity(), pub.SID())
	}
	cb.OnTrackUnmuted = func(pub lksdk.TrackPublication, p lksdk.Participant) {
		s.logf("track", "%s unmuted %s", p.Identity(), pub.SID())
	}
	cb.OnLocalTrackSubscribed = func(pub *lksdk.LocalTrackPublication, lp *lksdk.LocalParticipant) {
		now := s.nowMs()
		s.mu.Lock()
		if s.pub != nil && s.pub.FirstSubscribed == nil {
			s.pub.FirstSubscribed = fptr(now)
		}
		s.mu.Unlock()
		s.logf("track", "our track %s was subscribed", pub.SID())
		if s.cfg.WaitSubscriber {
			s.startActionClock("microphone subscribed")
		}
	}
	cb.OnDataPacket = func(data lksdk.DataPacket, params lksdk.DataReceiveParams) { s.onData(data, params) }
	cb.OnTranscriptionReceived = func(segs []*lksdk.TranscriptionSegment, p lksdk.Participant, pub lksdk.TrackPublication) {
		now := s.nowMs()
		trackSID := ""
		if pub != nil {
			trackSID = pub.SID()
		}
		for _, seg := range segs {
			s.mu.Lock()
			s.rep.Transcriptions = append(s.rep.Transcriptions, transcription{Ms: now, Identity: identityOf(p), TrackSID: trackSID, ID: seg.ID, Text: seg.Text, Final: seg.Final})
			s.mu.Unlock()
			s.logf("transcript", "(legacy packet) %s final=%v %q", identityOf(p), seg.Final, seg.Text)
		}
	}
	cb.OnActiveSpeakersChanged = func(ps []lksdk.Participant) {
		var ids []string
		for _, p := range ps {
			ids = append(ids, p.Identity())
		}
		s.mu.Lock()
		s.rep.ActiveSpeakers = append(s.rep.ActiveSpeakers, speakersEvent{Ms: s.nowMs(), Speakers: append([]string{}, ids...)})
		s.mu.Unlock()
		s.logf("speakers", "%v", ids)
	}
	cb.OnDisconnectedWithReason = func(reason lksdk.DisconnectionReason) {
		s.mu.Lock()
		leaving := s.leaving
		s.mu.Unlock()
		if leaving {
			return
		}
		select {
		case s.fatal <- fmt.Errorf("disconnected by the server: %s", reason):
		default:
		}
	}
	var reconnMu sync.Mutex
	reconnGen := 0
	cb.OnReconnecting = func() {
		s.addError("connection to the server lost: reconnecting")
		reconnMu.Lock()
		reconnGen++
		gen := reconnGen
		reconnMu.Unlock()
		time.AfterFunc(reconnectGiveUp, func() {
			reconnMu.Lock()
			still := gen == reconnGen
			reconnMu.Unlock()
			if still {
				select {
				case s.fatal <- fmt.Errorf("connection to the server lost and not restored within %v", reconnectGiveUp):
				default:
				}
			}
		})
	}
	cb.OnReconnected = func() {
		reconnMu.Lock()
		reconnGen++
		reconnMu.Unlock()
		s.logf("signal", "reconnected")
	}
	return cb
}

// reconnectGiveUp: how long a lost server connection may stay lost before the session fails.
const reconnectGiveUp = 10 * time.Second

func identityOf(p lksdk.Participant) string {
	if p == nil {
		return ""
	}
	return p.Identity()
}

func (s *session) onData(data lksdk.DataPacket, params lksdk.DataReceiveParams) {
	d := dataPacket{Ms: s.nowMs(), Sender: params.SenderIdentity}
	var payload []byte
	switch v := data.(type) {
	case *lksdk.UserDataPacket:
		d.Kind, d.Topic, payload = "user", v.Topic, v.Payload
	case *livekit.SipDTMF:
		d.Kind, d.Detail = "sip_dtmf", fmt.Sprintf("code %d digit %q", v.Code, v.Digit)
	case *livekit.ChatMessage:
		d.Kind, payload = "chat", []byte(v.Message)
	default:
		d.Kind = fmt.Sprintf("%T", data)
		if p := data.ToProto(); p != nil {
			d.Detail = p.String()
		}
	}
	d.Size = len(payload)
	if utf8.Valid(payload) {
		d.Text = string(payload)
	} else {
		d.Base64 = base64.StdEncoding.EncodeToString(payload)
	}
	s.mu.Lock()
	s.rep.DataPackets = append(s.rep.DataPackets, d)
	s.mu.Unlock()
	s.logf("data", "%s from %s topic %q %d bytes %q%s", d.Kind, d.Sender, d.Topic, d.Size, truncate(d.Text, 200), d.Detail)
}

func (s *session) onTextStream(r *lksdk.TextStreamReader, sender string) {
	ts := &textStream{StreamID: r.Info.Id, Topic: r.Info.Topic, Sender: sender, HeaderMs: s.nowMs(), Chunks: []textChunk{}}
	s.mu.Lock()
	s.rep.TextStreams = append(s.rep.TextStreams, ts)
	s.mu.Unlock()
	s.logf("text", "stream %s on %s from %s opened", ts.StreamID, ts.Topic, sender)
	buf := make([]byte, 16384)
	var all []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			all = append(all, buf[:n]...)
			s.mu.Lock()
			ts.Chunks = append(ts.Chunks, textChunk{Ms: s.nowMs(), Text: string(buf[:n])})
			ts.Text = string(all)
			s.mu.Unlock()
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.addError("reading text stream %s: %v", ts.StreamID, err)
			}
			break
		}
	}
	// The trailer's attributes are merged into Info.Attributes before the reader is closed.
	attrs := copyMap(r.Info.Attributes)
	now := s.nowMs()
	s.mu.Lock()
	ts.Attributes = attrs
	ts.Text = string(all)
	ts.DoneMs = fptr(now)
	s.mu.Unlock()
	s.logf("text", "stream %s on %s from %s: %q attributes %s", ts.StreamID, ts.Topic, sender, truncate(ts.Text, 300), fmtMap(attrs))
}

// --- sending --------------------------------------------------------------------------------

// speak sends 20 ms Opus frames in real time from now until stop: the scheduled utterances
// (mixed where they overlap) on the action clock, silence (or nothing, --silence=false) otherwise.
func (s *session) speak(track *lksdk.LocalTrack, utts []utterance, stop <-chan struct{}) {
	enc, err := newOpusEncoder(s.cfg.OpusBitrate, s.cfg.OpusComplexity)
	if err != nil {
		s.addError("opus encoder: %v", err)
		return
	}
	var speechEnd int64
	for i := range utts {
		if e := utts[i].startSample + int64(len(utts[i].samples)); e > speechEnd {
			speechEnd = e
		}
	}
	frame := make([]int16, samplesPer20)
	out := make([]byte, 4000)
	const frameDur = 20 * time.Millisecond
	next := time.Now()
	var clockTick int64 = -1 // frame index of the action clock's start
	skipped := 0
	done := false
	for k := int64(0); ; k++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-stop:
				return
			case <-time.After(d):
			}
		} else {
			select {
			case <-stop:
				return
			default:
			}
		}
		next = next.Add(frameDur)
		if clockTick < 0 {
			select {
			case <-s.clockStarted:
				clockTick = k
			default:
			}
		}
		for i := range frame {
			frame[i] = 0
		}
		active := false
		if clockTick >= 0 {
			pos := (k - clockTick) * samplesPer20
			var acc [samplesPer20]int32
			for i := range utts {
				u := &utts[i]
				a, b := pos-u.startSample, pos-u.startSample+samplesPer20
				if b <= 0 || a >= int64(len(u.samples)) {
					continue
				}
				active = true
				if u.FramesSent == 0 {
					u.StartMs = s.nowMs()
					s.logf("speak", "%s started (scheduled @%v ms)", filepath.Base(u.File), u.AtMs)
				}
				u.FramesSent++
				for j := int64(0); j < samplesPer20; j++ {
					if idx := a + j; idx >= 0 && idx < int64(len(u.samples)) {
						acc[j] += int32(u.samples[idx])
					}
				}
				if b >= int64(len(u.samples)) {
					u.EndMs = s.nowMs() + 20
					s.logf("speak", "%s finished", filepath.Base(u.File))
				}
			}
			for j := range frame {
				frame[j] = clip16(float64(acc[j]))
			}
			if !done && pos+samplesPer20 >= speechEnd {
				done = true
				s.mu.Lock()
				s.rep.SpeechDoneMs = fptr(s.nowMs() + 20)
				s.mu.Unlock()
				s.speechDone()
			}
		}
		if !active && !s.cfg.Silence {
			skipped++
			continue
		}
		n, err := enc.Encode(frame, out)
		if err != nil {
			s.addError("opus encode: %v", err)
			continue
		}
		level := audioLevel(frame)
		if err := track.WriteSample(mediaSample(out[:n], frameDur, skipped), &lksdk.SampleWriteOptions{AudioLevel: &level}); err != nil {
			s.addError("writing sample: %v", err)
		}
		s.mu.Lock()
		s.rep.Sent.Frames++
		s.rep.Sent.SkippedFrames += skipped
		s.mu.Unlock()
		skipped = 0
	}
}

func (s *session) speechDone() { s.speechDoneOnce.Do(func() { close(s.speechDoneC) }) }

// audioLevel in -dBov (0 loudest .. 127 silence), as the ssrc-audio-level extension wants.
func audioLevel(frame []int16) uint8 {
	db := rmsDBFS(frame)
	if db < -127 {
		db = -127
	}
	if db > 0 {
		db = 0
	}
	return uint8(-db)
}

// runActions sends the timed texts, data packets and attributes on the action clock and closes
// actionsDone once they and the speech are all sent.
func (s *session) runActions(room *lksdk.Room, stop <-chan struct{}) {
	cfg := s.cfg
	type action struct {
		at  float64
		run func()
	}
	var acts []action
	for _, t := range cfg.SendText {
		t := t
		acts = append(acts, action{t.AtMs, func() { s.sendText(room, t) }})
	}
	for _, d := range cfg.SendData {
		d := d
		acts = append(acts, action{d.AtMs, func() {
			err := room.LocalParticipant.PublishDataPacket(&lksdk.UserDataPacket{Payload: []byte(d.Text), Topic: d.Topic}, lksdk.WithDataPublishReliable(true))
			if err != nil {
				s.addError("publishing data on %s: %v", d.Topic, err)
				return
			}
			s.logf("send", "data on %s: %q", d.Topic, truncate(d.Text, 200))
		}})
	}
	for _, a := range cfg.Attrs {
		if a.AtJoin {
			continue
		}
		a := a
		acts = append(acts, action{a.AtMs, func() {
			room.LocalParticipant.SetAttributes(map[string]string{a.Key: a.Value})
			s.logf("send", "own attribute %s=%q", a.Key, a.Value)
		}})
	}
	sort.SliceStable(acts, func(i, j int) bool { return acts[i].at < acts[j].at })

	select {
	case <-s.clockStarted:
	case <-stop:
		return
	}
	s.mu.Lock()
	clock := s.actionsAt
	s.mu.Unlock()
	for _, a := range acts {
		select {
		case <-time.After(time.Until(clock.Add(time.Duration(a.at * float64(time.Millisecond))))):
			a.run()
		case <-stop:
			return
		}
	}
	if len(cfg.Speak) > 0 {
		select {
		case <-s.speechDoneC:
		case <-stop:
			return
		}
	}
	s.logf("clock", "all speech, texts, data and attributes sent")
	close(s.actionsDone)
}

func (s *session) sendText(room *lksdk.Room, t textItem) {
	attrs := copyMap(s.cfg.TextAttrs)
	if t.Topic == "lk.transcription" {
		if _, ok := attrs["lk.segment_id"]; !ok {
			attrs["lk.segment_id"] = fmt.Sprintf("SG_%s_%d", s.cfg.Identity, time.Now().UnixNano()%1e9)
		}
		if _, ok := attrs["lk.transcribed_track_id"]; !ok {
			s.mu.Lock()
			if s.pub != nil {
				attrs["lk.transcribed_track_id"] = s.pub.SID
			}
			s.mu.Unlock()
		}
		if _, ok := attrs["lk.transcription_final"]; !ok {
			attrs["lk.transcription_final"] = "true"
		}
	}
	info := room.LocalParticipant.SendText(t.Text, lksdk.StreamTextOptions{Topic: t.Topic, Attributes: attrs})
	id := ""
	if info != nil {
		id = info.Id
	}
	s.mu.Lock()
	s.rep.TextsSent = append(s.rep.TextsSent, sentText{Ms: s.nowMs(), Topic: t.Topic, StreamID: id, Text: t.Text, Attributes: attrs})
	s.mu.Unlock()
	s.logf("send", "text stream %s on %s: %q attributes %s", id, t.Topic, truncate(t.Text, 200), fmtMap(attrs))
}

// --- leaving and the report -----------------------------------------------------------------

func (s *session) leave(room *lksdk.Room, code int) int {
	s.mu.Lock()
	s.leaving = true
	s.mu.Unlock()
	room.Disconnect()
	s.mu.Lock()
	s.rep.LeftMs = s.nowMs()
	s.mu.Unlock()
	s.logf("leave", "left the room")
	// The track readers end when their peer connection closes.
	waited := make(chan struct{})
	go func() { s.recv.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(3 * time.Second):
		s.addError("track readers did not stop within 3 s of leaving")
	}
	return s.writeOutputs(code)
}

func (s *session) finishEarly(code int) int {
	s.mu.Lock()
	s.rep.LeftMs = s.nowMs()
	s.mu.Unlock()
	return s.writeOutputs(code)
}

func (s *session) writeOutputs(code int) int {
	cfg := s.cfg
	total := int64(s.sinceStart().Seconds() * rate48k)
	mix, audible := s.recv.finish(total, cfg.EnergyDBFS)
	if cfg.Record != "" {
		if err := writeWAV(cfg.Record, mix, rate48k); err != nil {
			s.addError("writing %s: %v", cfg.Record, err)
			code = max(code, 1)
		}
	}
	if cfg.RecordDir != "" {
		if err := os.MkdirAll(cfg.RecordDir, 0o755); err != nil {
			s.addError("creating %s: %v", cfg.RecordDir, err)
			code = max(code, 1)
		}
		for name, pcm := range s.recv.trackPCM() {
			if err := writeWAV(filepath.Join(cfg.RecordDir, name+".wav"), pcm, rate48k); err != nil {
				s.addError("writing track WAV: %v", err)
				code = max(code, 1)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.SubscribedTracks = s.recv.snapshot()
	s.rep.PacketsReceived = 0
	for _, t := range s.rep.SubscribedTracks {
		s.rep.PacketsReceived += t.Packets
	}
	sort.Slice(audible, func(i, j int) bool { return audible[i].StartMs < audible[j].StartMs })
	s.rep.Audible = audible
	if len(audible) > 0 {
		s.rep.FirstAudibleMs = fptr(audible[0].StartMs)
	}
	if s.loss != nil {
		s.rep.Sent.lossStats = s.loss.stats()
	}
	s.rep.Utterances = append([]utterance{}, s.utts...)
	s.rep.Record = cfg.Record
	s.rep.ExitCode = code
	if cfg.Report != "" {
		b, err := json.MarshalIndent(&s.rep, "", "  ")
		if err == nil {
			err = os.WriteFile(cfg.Report+".tmp", append(b, '\n'), 0o644)
		}
		if err == nil {
			err = os.Rename(cfg.Report+".tmp", cfg.Report)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "lk-peer: error: writing report %s: %v\n", cfg.Report, err)
			if code == 0 {
				code = 1
			}
			s.rep.ExitCode = code
		}
	}
	if !cfg.Quiet {
		joined := "not joined"
		if s.rep.ParticipantSID != "" {
			joined = fmt.Sprintf("joined in %.0f ms", s.rep.JoinedMs)
		}
		fmt.Fprintf(os.Stderr, "lk-peer %s summary: %s, sent %d frames (%d RTP packets, %d dropped), received %d packets on %d tracks, first audio %s, %d audible spans, %d text streams, %d attribute changes, %d data packets, %d errors\n",
			cfg.Identity, joined, s.rep.Sent.Frames, s.rep.Sent.Sent, s.rep.Sent.Dropped, s.rep.PacketsReceived, len(s.rep.SubscribedTracks),
			fmtOptMs(s.rep.FirstRemoteAudioMs), len(s.rep.Audible), len(s.rep.TextStreams), len(s.rep.AttributeChanges), len(s.rep.DataPackets), len(s.rep.Errors))
	}
	if code != 0 {
		msg := "failed"
		if len(s.rep.Errors) > 0 {
			msg = s.rep.Errors[len(s.rep.Errors)-1].Message
		}
		fmt.Fprintf(os.Stderr, "lk-peer: error: %s\n", msg)
	}
	return code
}

// --- helpers --------------------------------------------------------------------------------

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func fmtMap(m map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, m[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func fmtOptMs(v *float64) string {
	if v == nil {
		return "never"
	}
	return fmt.Sprintf("%.0f ms", *v)
}

// loopbackSettings lets pion gather 127.0.0.1 host candidates (it skips loopback by default) and
// nothing else: IPv4 UDP on loopback only, no mDNS. The server (node_ip 127.0.0.1) only offers
// loopback candidates, so this is what makes ICE succeed on a loopback-only machine.
func loopbackSettings(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// the server's first check may arrive before its trickled candidate: accept at once
	se.SetPrflxAcceptanceMinWait(0)
	se.SetHostAcceptanceMinWait(0)
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "analyze" {
		return analyzeMain(args[1:])
	}
	cfg, err := parseConfig(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "lk-peer: error: %v (see lk-peer -h)\n", err)
		return 1
	}
	if os.Getenv("LK_PEER_ALL_INTERFACES") == "" {
		lksdk.ConfigureSettingEngine = loopbackSettings
	}
	if cfg.SDKVerbosity >= 0 {
		stdr.SetVerbosity(cfg.SDKVerbosity)
		lksdk.SetLogger(protoLogger.LogRLogger(stdr.New(log.New(os.Stderr, "lk-sdk ", log.LstdFlags|log.Lmicroseconds))))
	} else {
		lksdk.SetLogger(protoLogger.LogRLogger(stdr.New(log.New(io.Discard, "", 0))))
	}
	s := &session{
		cfg: cfg, start: time.Now(),
		clockStarted: make(chan struct{}), actionsDone: make(chan struct{}), untilMet: make(chan struct{}),
		speechDoneC: make(chan struct{}),
		fatal:       make(chan error, 1),
	}
	s.recv = newReceiver(s, time.Duration(cfg.DurationMs)*time.Millisecond+10*time.Second)
	signal.Ignore(syscall.SIGPIPE) // a closed stderr pipe must not kill us before the report is written
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	return s.run(ctx)
}
