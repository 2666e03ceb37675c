package main

import (
	"time"

	"github.com/pion/webrtc/v4/pkg/media"
	"gopkg.in/hraban/opus.v2"
)

// newOpusEncoder: 48 kHz mono, VoIP mode, constant frame size of 20 ms (chosen by the caller).
func newOpusEncoder(bitrate, complexity int) (*opus.Encoder, error) {
	enc, err := opus.NewEncoder(rate48k, 1, opus.AppVoIP)
	if err != nil {
		return nil, err
	}
	if err := enc.SetBitrate(bitrate); err != nil {
		return nil, err
	}
	if err := enc.SetComplexity(complexity); err != nil {
		return nil, err
	}
	return enc, nil
}

func mediaSample(data []byte, dur time.Duration, prevDropped int) media.Sample {
	if prevDropped > 65535 {
		prevDropped = 65535
	}
	return media.Sample{Data: append([]byte(nil), data...), Duration: dur, PrevDroppedPackets: uint16(prevDropped)}
}
