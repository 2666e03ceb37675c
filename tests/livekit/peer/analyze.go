package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/cmplx"
	"os"
)

// `lk-peer analyze --ref source.wav --rec recording.wav`: where in the recording the source is
// and how well it matches. Both are brought to 48 kHz mono; the best lag is found by FFT
// cross-correlation (optionally only within --from-ms..--to-ms of the recording), then the
// normalised correlation of the source against that stretch of the recording is printed as JSON:
// {"lag_ms":..., "correlation":..., "ref_rms_dbfs":..., "rec_rms_dbfs":...}.
func analyzeMain(args []string) int {
	fs := flag.NewFlagSet("lk-peer analyze", flag.ContinueOnError)
	ref := fs.String("ref", "", "the source WAV (what was spoken)")
	rec := fs.String("rec", "", "the recording WAV")
	fromMs := fs.Float64("from-ms", 0, "search lags from here (ms into the recording)")
	toMs := fs.Float64("to-ms", -1, "search lags up to here (default: whole recording)")
	minCorr := fs.Float64("min-correlation", -1, "exit 4 if the correlation is below this")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if *ref == "" || *rec == "" {
		fmt.Fprintln(os.Stderr, "lk-peer analyze: error: --ref and --rec are required")
		return 1
	}
	a, ra, err := readWAV(*ref)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lk-peer analyze: error: %v\n", err)
		return 1
	}
	b, rb, err := readWAV(*rec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lk-peer analyze: error: %v\n", err)
		return 1
	}
	x := resample(a, ra, rate48k)
	y := resample(b, rb, rate48k)
	res := correlate(x, y, *fromMs, *toMs)
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if *minCorr >= 0 && res.Correlation < *minCorr {
		fmt.Fprintf(os.Stderr, "lk-peer analyze: correlation %.3f below %.3f\n", res.Correlation, *minCorr)
		return 4
	}
	return 0
}

type corrResult struct {
	LagMs       float64 `json:"lag_ms"`
	Correlation float64 `json:"correlation"`
	RefRMSDBFS  float64 `json:"ref_rms_dbfs"`
	RecRMSDBFS  float64 `json:"rec_rms_dbfs_at_lag"`
	RefMs       float64 `json:"ref_ms"`
	RecMs       float64 `json:"rec_ms"`
}

func correlate(x, y []int16, fromMs, toMs float64) corrResult {
	res := corrResult{RefMs: float64(len(x)) * 1000 / rate48k, RecMs: float64(len(y)) * 1000 / rate48k, RefRMSDBFS: round1(rmsDBFS(x))}
	if len(x) == 0 || len(y) == 0 {
		return res
	}
	n := 1
	for n < len(x)+len(y) {
		n <<= 1
	}
	fx := make([]complex128, n)
	fy := make([]complex128, n)
	for i, v := range x {
		fx[i] = complex(float64(v), 0)
	}
	for i, v := range y {
		fy[i] = complex(float64(v), 0)
	}
	fft(fx, false)
	fft(fy, false)
	for i := range fy {
		fy[i] *= cmplx.Conj(fx[i])
	}
	fft(fy, true) // fy[lag] = sum_t y[t+lag] x[t]
	lo := int(fromMs * rate48k / 1000)
	hi := len(y) - 1
	if toMs >= 0 {
		hi = int(toMs * rate48k / 1000)
	}
	if lo < 0 {
		lo = 0
	}
	if hi > len(y)-1 {
		hi = len(y) - 1
	}
	if len(y) >= len(x) && hi > len(y)-len(x) {
		hi = len(y) - len(x) // the whole source must fit in the recording
	}
	// prefix sums of y² for the normalisation at each lag
	pre := make([]float64, len(y)+1)
	for i, v := range y {
		pre[i+1] = pre[i] + float64(v)*float64(v)
	}
	var ex float64
	for _, v := range x {
		ex += float64(v) * float64(v)
	}
	best, bestLag := math.Inf(-1), 0
	for lag := lo; lag <= hi; lag++ {
		end := lag + len(x)
		if end > len(y) {
			end = len(y)
		}
		ey := pre[end] - pre[lag]
		if ey <= 0 || ex <= 0 {
			continue
		}
		c := real(fy[lag]) / math.Sqrt(ex*ey)
		if c > best {
			best, bestLag = c, lag
		}
	}
	if math.IsInf(best, -1) {
		return res
	}
	end := bestLag + len(x)
	if end > len(y) {
		end = len(y)
	}
	res.LagMs = round1(float64(bestLag) * 1000 / rate48k)
	res.Correlation = math.Round(best*1000) / 1000
	res.RecRMSDBFS = round1(rmsDBFS(y[bestLag:end]))
	return res
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// fft: in-place iterative radix-2; len(a) must be a power of two. inverse scales by 1/n.
func fft(a []complex128, inverse bool) {
	n := len(a)
	for i, j := 1, 0; i < n; i++ {
		bit := n >> 1
		for ; j&bit != 0; bit >>= 1 {
			j ^= bit
		}
		j ^= bit
		if i < j {
			a[i], a[j] = a[j], a[i]
		}
	}
	tw := make([]complex128, n/2)
	for k := range tw {
		ang := -2 * math.Pi * float64(k) / float64(n)
		if inverse {
			ang = -ang
		}
		tw[k] = cmplx.Rect(1, ang)
	}
	for size := 2; size <= n; size <<= 1 {
		step := n / size
		for start := 0; start < n; start += size {
			for k := 0; k < size/2; k++ {
				u := a[start+k]
				v := a[start+k+size/2] * tw[k*step]
				a[start+k] = u + v
				a[start+k+size/2] = u - v
			}
		}
	}
	if inverse {
		for i := range a {
			a[i] /= complex(float64(n), 0)
		}
	}
}
