package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
)

// readWAV reads a PCM WAV file (16-bit; mono, or several channels that are averaged to mono) and
// returns its samples and sample rate.
func readWAV(path string) ([]int16, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	if len(data) < 12 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return nil, 0, fmt.Errorf("%s: not a RIFF/WAVE file", path)
	}
	var (
		format, channels, bits uint16
		rate                   uint32
		haveFmt                bool
		pcm                    []byte
	)
	off := 12
	for off+8 <= len(data) {
		id := string(data[off : off+4])
		size := int(binary.LittleEndian.Uint32(data[off+4 : off+8]))
		body := off + 8
		end := body + size
		if end > len(data) || size < 0 { // streaming writers leave a placeholder size: take what is there
			end = len(data)
		}
		switch id {
		case "fmt ":
			if end-body < 16 {
				return nil, 0, fmt.Errorf("%s: short fmt chunk", path)
			}
			format = binary.LittleEndian.Uint16(data[body:])
			channels = binary.LittleEndian.Uint16(data[body+2:])
			rate = binary.LittleEndian.Uint32(data[body+4:])
			bits = binary.LittleEndian.Uint16(data[body+14:])
			if format == 0xFFFE && end-body >= 26 { // WAVE_FORMAT_EXTENSIBLE: the sub-format's first 2 bytes
				format = binary.LittleEndian.Uint16(data[body+24:])
			}
			haveFmt = true
		case "data":
			pcm = data[body:end]
		}
		off = body + size + size%2
		if pcm != nil && haveFmt {
			break
		}
	}
	if !haveFmt || pcm == nil {
		return nil, 0, fmt.Errorf("%s: no fmt or data chunk", path)
	}
	if format != 1 || bits != 16 {
		return nil, 0, fmt.Errorf("%s: only 16-bit PCM WAV is supported (format %d, %d bits)", path, format, bits)
	}
	if channels == 0 || rate == 0 {
		return nil, 0, fmt.Errorf("%s: bad fmt chunk (%d channels, %d Hz)", path, channels, rate)
	}
	frames := len(pcm) / (2 * int(channels))
	out := make([]int16, frames)
	for i := 0; i < frames; i++ {
		sum := 0
		for c := 0; c < int(channels); c++ {
			sum += int(int16(binary.LittleEndian.Uint16(pcm[(i*int(channels)+c)*2:])))
		}
		out[i] = int16(sum / int(channels))
	}
	return out, int(rate), nil
}

// writeWAV writes mono 16-bit PCM.
func writeWAV(path string, samples []int16, rate int) error {
	if rate <= 0 {
		return errors.New("bad sample rate")
	}
	buf := make([]byte, 44+2*len(samples))
	copy(buf[0:], "RIFF")
	binary.LittleEndian.PutUint32(buf[4:], uint32(36+2*len(samples)))
	copy(buf[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(buf[16:], 16)
	binary.LittleEndian.PutUint16(buf[20:], 1)
	binary.LittleEndian.PutUint16(buf[22:], 1)
	binary.LittleEndian.PutUint32(buf[24:], uint32(rate))
	binary.LittleEndian.PutUint32(buf[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(buf[32:], 2)
	binary.LittleEndian.PutUint16(buf[34:], 16)
	copy(buf[36:], "data")
	binary.LittleEndian.PutUint32(buf[40:], uint32(2*len(samples)))
	for i, s := range samples {
		binary.LittleEndian.PutUint16(buf[44+2*i:], uint16(s))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// resample converts mono PCM from rate `from` to rate `to` with a windowed-sinc (Blackman)
// interpolator, 16 zero crossings each side; the cutoff follows the lower of the two Nyquists.
// The kernel is tabulated at 1/512 of an input sample and linearly interpolated.
func resample(in []int16, from, to int) []int16 {
	if from == to || len(in) == 0 {
		out := make([]int16, len(in))
		copy(out, in)
		return out
	}
	const zeros = 16
	const res = 512
	ratio := float64(to) / float64(from)
	cutoff := 1.0 // relative to the input's Nyquist
	if ratio < 1 {
		cutoff = ratio
	}
	cutoff *= 0.97 // a little guard band
	half := float64(zeros) / cutoff
	table := make([]float64, int(half*res)+2)
	for i := range table {
		x := float64(i) / res
		if x > half {
			break
		}
		sinc := 1.0
		if x != 0 {
			a := math.Pi * x * cutoff
			sinc = math.Sin(a) / a
		}
		w := 0.42 + 0.5*math.Cos(math.Pi*x/half) + 0.08*math.Cos(2*math.Pi*x/half)
		table[i] = sinc * w * cutoff
	}
	kernel := func(x float64) float64 {
		x = math.Abs(x) * res
		i := int(x)
		if i+1 >= len(table) {
			return 0
		}
		f := x - float64(i)
		return table[i]*(1-f) + table[i+1]*f
	}
	n := int(math.Floor(float64(len(in)) * ratio))
	out := make([]int16, n)
	for j := 0; j < n; j++ {
		t := float64(j) / ratio // position in input samples
		lo := int(math.Ceil(t - half))
		hi := int(math.Floor(t + half))
		if lo < 0 {
			lo = 0
		}
		if hi > len(in)-1 {
			hi = len(in) - 1
		}
		var acc float64
		for k := lo; k <= hi; k++ {
			acc += float64(in[k]) * kernel(float64(k)-t)
		}
		out[j] = clip16(acc)
	}
	return out
}

func clip16(v float64) int16 {
	if v > 32767 {
		return 32767
	}
	if v < -32768 {
		return -32768
	}
	return int16(math.Round(v))
}

// rmsDBFS of a block of samples (full scale sine = -3 dBFS; digital silence = -120).
func rmsDBFS(s []int16) float64 {
	if len(s) == 0 {
		return -120
	}
	var sum float64
	for _, v := range s {
		f := float64(v) / 32768
		sum += f * f
	}
	rms := math.Sqrt(sum / float64(len(s)))
	if rms < 1e-6 {
		return -120
	}
	return 20 * math.Log10(rms)
}
