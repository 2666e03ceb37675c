package main

import (
	"math/rand"
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// lossFactory builds an RTP interceptor that sits closest to the wire on every outgoing stream
// (the SDK registers custom interceptors before its defaults, so the NACK responder, RTCP reports
// etc. all sit above it). It counts what really leaves and drops a seeded-random fraction of new
// packets. A sequence number that was dropped stays dropped: a retransmission of it (NACK) is
// dropped too, so the loss is loss as the receiving side sees it, independent of NACK.
type lossFactory struct {
	prob float64

	mu      sync.Mutex
	rng     *rand.Rand
	streams map[uint32]*lossStream
	// totals over all outgoing streams
	sent, dropped, retransmitted, retransmitDropped int
}

type lossStream struct {
	started bool
	highest uint16
	state   [65536]uint8 // 0 unseen, 1 sent, 2 dropped
}

func newLossFactory(prob float64, seed int64) *lossFactory {
	return &lossFactory{prob: prob, rng: rand.New(rand.NewSource(seed)), streams: map[uint32]*lossStream{}}
}

func (f *lossFactory) NewInterceptor(_ string) (interceptor.Interceptor, error) {
	return &lossInterceptor{f: f}, nil
}

type lossStats struct {
	Sent              int `json:"rtp_packets_sent"`
	Dropped           int `json:"rtp_packets_dropped"`
	Retransmitted     int `json:"rtp_retransmissions"`
	RetransmitDropped int `json:"rtp_retransmissions_dropped"`
}

func (f *lossFactory) stats() lossStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return lossStats{f.sent, f.dropped, f.retransmitted, f.retransmitDropped}
}

type lossInterceptor struct {
	interceptor.NoOp
	f *lossFactory
}

func (i *lossInterceptor) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	f := i.f
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, attrs interceptor.Attributes) (int, error) {
		f.mu.Lock()
		st := f.streams[h.SSRC]
		if st == nil {
			st = &lossStream{}
			f.streams[h.SSRC] = st
		}
		drop := false
		if !st.started || int16(h.SequenceNumber-st.highest) > 0 {
			// a new packet
			st.started = true
			st.highest = h.SequenceNumber
			if f.prob > 0 && f.rng.Float64() < f.prob {
				drop = true
				st.state[h.SequenceNumber] = 2
				f.dropped++
			} else {
				st.state[h.SequenceNumber] = 1
			}
		} else {
			f.retransmitted++
			if st.state[h.SequenceNumber] == 2 {
				drop = true
				f.retransmitDropped++
			}
		}
		if !drop {
			f.sent++
		}
		f.mu.Unlock()
		if drop {
			return len(payload) + h.MarshalSize(), nil
		}
		return writer.Write(h, payload, attrs)
	})
}
