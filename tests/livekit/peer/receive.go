package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"gopkg.in/hraban/opus.v2"
)

var debugRTP = os.Getenv("LK_PEER_DEBUG_RTP") != ""

const (
	rate48k      = 48000
	samplesPer20 = 960
	maxFrame     = 5760 // 120 ms at 48 kHz
)

// remoteTrack is one subscribed remote audio track: its counters and its decoded audio laid on
// the session timeline (sample 0 = session start, 48 kHz mono).
type remoteTrack struct {
	Identity       string  `json:"participant_identity"`
	ParticipantSID string  `json:"participant_sid"`
	TrackSID       string  `json:"track_sid"`
	Name           string  `json:"name"`
	Source         string  `json:"source"`
	Codec          string  `json:"codec"`
	SubscribedMs   float64 `json:"subscribed_ms"`
	FirstPacketMs  float64 `json:"first_packet_ms"`
	LastPacketMs   float64 `json:"last_packet_ms"`
	Packets        int     `json:"packets"`         // media packets (with payload)
	PaddingPackets int     `json:"padding_packets"` // payload-less packets (the SFU's padding/probes), not in packets
	Bytes          int     `json:"bytes"`
	Lost           int     `json:"lost"`       // sequence numbers never received (gaps)
	Late           int     `json:"late"`       // arrived after their slot was concealed / duplicates
	PLCFrames      int     `json:"plc_frames"` // frames concealed by the decoder
	Reanchors      int     `json:"reanchors"`  // timeline re-synchronisations (sender paused / jumped)
	DecodeErrors   int     `json:"decode_errors"`
	UnsubscribedMs float64 `json:"unsubscribed_ms,omitempty"`
	Audible        []span  `json:"audible"`

	pcm []int16 // timeline; grows as audio arrives (guarded by receiver.mu)
}

// decodeState is the reader goroutine's own state for one track.
type decodeState struct {
	started bool
	lastSeq uint16
	// timeline anchor: RTP timestamp anchorTS is at sample anchorPos
	anchorTS  uint32
	anchorPos int64
	lastTS    uint32
	lastDur   int
}

type span struct {
	StartMs  float64 `json:"start_ms"`
	EndMs    float64 `json:"end_ms"`
	PeakDBFS float64 `json:"peak_dbfs"`
}

type receiver struct {
	s         *session
	mu        sync.Mutex
	tracks    []*remoteTrack
	maxSample int64 // cap on the timeline length
	wg        sync.WaitGroup
}

func newReceiver(s *session, maxDuration time.Duration) *receiver {
	return &receiver{s: s, maxSample: int64(maxDuration.Seconds()*rate48k) + rate48k}
}

// handle reads one subscribed track until it ends.
func (r *receiver) handle(track *webrtc.TrackRemote, rt *remoteTrack) {
	r.mu.Lock()
	r.tracks = append(r.tracks, rt)
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.read(track, rt)
	}()
}

func (r *receiver) read(track *webrtc.TrackRemote, rt *remoteTrack) {
	isOpus := strings.EqualFold(track.Codec().MimeType, webrtc.MimeTypeOpus)
	var dec *opus.Decoder
	if isOpus {
		var err error
		dec, err = opus.NewDecoder(rate48k, 1)
		if err != nil {
			r.s.addError("opus decoder for track %s: %v", rt.TrackSID, err)
			isOpus = false
		}
	} else {
		r.s.addError("track %s from %s has codec %s: counting packets only, not decoding", rt.TrackSID, rt.Identity, track.Codec().MimeType)
	}
	pcm := make([]int16, maxFrame)
	st := &decodeState{}
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "closed") {
				r.s.addError("reading track %s: %v", rt.TrackSID, err)
			}
			return
		}
		now := r.s.sinceStart()
		if debugRTP {
			fmt.Fprintf(os.Stderr, "rtp %s %.1fms seq %d ts %d pt %d len %d marker %v\n", rt.TrackSID, ms(now), pkt.SequenceNumber, pkt.Timestamp, pkt.PayloadType, len(pkt.Payload), pkt.Marker)
		}
		nowMs := ms(now)
		arrivalPos := int64(now.Seconds() * rate48k)

		if len(pkt.Payload) == 0 {
			// padding only (the SFU probes bandwidth with these): no audio, no timeline anchor;
			// it still takes a sequence number
			r.mu.Lock()
			rt.PaddingPackets++
			if d := int16(pkt.SequenceNumber - st.lastSeq); st.started && d > 0 {
				rt.Lost += int(d) - 1
				st.lastSeq = pkt.SequenceNumber
			}
			r.mu.Unlock()
			continue
		}
		r.mu.Lock()
		rt.Packets++
		rt.Bytes += len(pkt.Payload)
		rt.LastPacketMs = nowMs
		first := rt.Packets == 1
		if first {
			rt.FirstPacketMs = nowMs
		}
		r.mu.Unlock()
		if first {
			r.s.logf("audio", "first packet from %s track %s (%s, pt %d)", rt.Identity, rt.TrackSID, track.Codec().MimeType, pkt.PayloadType)
			r.s.noteFirstAudio(nowMs)
		}
		if !isOpus {
			continue
		}

		if !st.started {
			st.started = true
			st.lastSeq = pkt.SequenceNumber
			st.anchorTS = pkt.Timestamp
			st.anchorPos = arrivalPos
		} else {
			delta := int16(pkt.SequenceNumber - st.lastSeq)
			if delta <= 0 {
				r.mu.Lock()
				rt.Late++
				r.mu.Unlock()
				continue
			}
			if gap := int(delta) - 1; gap > 0 {
				r.mu.Lock()
				rt.Lost += gap
				r.mu.Unlock()
				// conceal up to 100 ms; longer holes stay silent
				dur := st.lastDur
				if dur <= 0 {
					dur = samplesPer20
				}
				for k := 0; k < gap && k*dur < rate48k/10; k++ {
					plc := pcm[:dur]
					if err := dec.DecodePLC(plc); err == nil {
						pos := st.anchorPos + int64(int32(st.lastTS+uint32((k+1)*dur)-st.anchorTS))
						r.place(rt, pos, plc)
						r.mu.Lock()
						rt.PLCFrames++
						r.mu.Unlock()
					}
				}
			}
			st.lastSeq = pkt.SequenceNumber
		}
		// where this packet belongs: by RTP timestamp from the anchor, unless that disagrees with
		// the arrival time by more than 300 ms (sender paused, timestamps jumped): then re-anchor.
		pos := st.anchorPos + int64(int32(pkt.Timestamp-st.anchorTS))
		if d := pos - arrivalPos; d > rate48k*3/10 || d < -rate48k*3/10 {
			st.anchorTS = pkt.Timestamp
			st.anchorPos = arrivalPos
			pos = arrivalPos
			r.mu.Lock()
			rt.Reanchors++
			r.mu.Unlock()
		}
		st.lastTS = pkt.Timestamp
		if len(pkt.Payload) == 0 {
			continue
		}
		n, err := dec.Decode(pkt.Payload, pcm)
		if err != nil {
			r.mu.Lock()
			rt.DecodeErrors++
			r.mu.Unlock()
			continue
		}
		st.lastDur = n
		r.place(rt, pos, pcm[:n])
	}
}

// place writes decoded samples at timeline position pos (overwriting: a track has one voice).
func (r *receiver) place(rt *remoteTrack, pos int64, s []int16) {
	if pos < 0 {
		if -pos >= int64(len(s)) {
			return
		}
		s = s[-pos:]
		pos = 0
	}
	end := pos + int64(len(s))
	if end > r.maxSample {
		if pos >= r.maxSample {
			return
		}
		s = s[:r.maxSample-pos]
		end = r.maxSample
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if int64(len(rt.pcm)) < end {
		if int64(cap(rt.pcm)) >= end {
			rt.pcm = rt.pcm[:end]
		} else {
			grown := make([]int16, end, end+int64(rate48k)*5)
			copy(grown, rt.pcm)
			rt.pcm = grown
		}
	}
	copy(rt.pcm[pos:end], s)
}

// finish computes the audible spans and returns the mix of all tracks (length totalSamples).
func (r *receiver) finish(totalSamples int64, thresholdDBFS float64) ([]int16, []audibleSpan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if totalSamples > r.maxSample {
		totalSamples = r.maxSample
	}
	mix := make([]int32, totalSamples)
	var all []audibleSpan
	for _, rt := range r.tracks {
		for i, v := range rt.pcm {
			if int64(i) >= totalSamples {
				break
			}
			mix[i] += int32(v)
		}
		rt.Audible = detectAudible(rt.pcm, thresholdDBFS)
		for _, sp := range rt.Audible {
			all = append(all, audibleSpan{Identity: rt.Identity, TrackSID: rt.TrackSID, span: sp})
		}
	}
	out := make([]int16, totalSamples)
	for i, v := range mix {
		if v > 32767 {
			v = 32767
		} else if v < -32768 {
			v = -32768
		}
		out[i] = int16(v)
	}
	return out, all
}

type audibleSpan struct {
	Identity string `json:"participant_identity"`
	TrackSID string `json:"track_sid"`
	span
}

// detectAudible: 20 ms frames whose RMS is above the threshold are audible; audible frames less
// than 300 ms apart are merged into one span.
func detectAudible(pcm []int16, thresholdDBFS float64) []span {
	var out []span
	const hangFrames = 15
	inSpan := false
	var cur span
	silentRun := 0
	for f := 0; f*samplesPer20 < len(pcm); f++ {
		end := (f + 1) * samplesPer20
		if end > len(pcm) {
			end = len(pcm)
		}
		db := rmsDBFS(pcm[f*samplesPer20 : end])
		t0 := float64(f) * 20
		if db >= thresholdDBFS {
			if !inSpan {
				inSpan = true
				cur = span{StartMs: t0, PeakDBFS: db}
			}
			cur.EndMs = t0 + 20
			if db > cur.PeakDBFS {
				cur.PeakDBFS = db
			}
			silentRun = 0
		} else if inSpan {
			silentRun++
			if silentRun > hangFrames {
				out = append(out, cur)
				inSpan = false
			}
		}
	}
	if inSpan {
		out = append(out, cur)
	}
	for i := range out {
		out[i].PeakDBFS = math.Round(out[i].PeakDBFS*10) / 10
	}
	return out
}

func (r *receiver) snapshot() []remoteTrack {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]remoteTrack, 0, len(r.tracks))
	for _, rt := range r.tracks {
		c := *rt
		c.pcm = nil
		if c.Audible == nil {
			c.Audible = []span{}
		}
		out = append(out, c)
	}
	return out
}

func (r *receiver) trackPCM() map[string][]int16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string][]int16{}
	for _, rt := range r.tracks {
		m[fmt.Sprintf("%s-%s", rt.Identity, rt.TrackSID)] = rt.pcm
	}
	return m
}
