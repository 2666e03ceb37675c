// Command speechgen writes synthetic user turns as mono PCM16LE to stdout: for each pitch, a
// voiced buzz the engine's VAD accepts as speech (a fundamental plus 10 harmonics with 4 Hz
// syllable-like modulation, as in tests/common/mod.rs) followed by -gap ms of silence. The
// engine's test STT (test-pitch-stt) transcribes each as "pitch <hz> hz for <ms> ms".
//
//	go run ./examples/speechgen -pitch 200,250 | VB_STT=test-pitch-stt VB_TTS=test-tone-tts go run ./examples/minimal
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"log"
	"math"
	"os"
	"strconv"
	"strings"
)

func main() {
	rate := flag.Int("rate", 16000, "sample rate")
	pitches := flag.String("pitch", "200", "comma-separated fundamentals in Hz, one turn each")
	ms := flag.Int("ms", 1000, "speech per turn in ms")
	gap := flag.Int("gap", 2500, "silence after each turn in ms (a turn ends after 500 ms)")
	flag.Parse()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	write := func(v int16) { _ = binary.Write(out, binary.LittleEndian, v) }
	for i := 0; i < *rate/2; i++ { // a lead-in of silence
		write(0)
	}
	for _, p := range strings.Split(*pitches, ",") {
		f0, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			log.Fatalf("pitch %q: %v", p, err)
		}
		n := *rate * *ms / 1000
		for i := 0; i < n; i++ {
			t := float64(i) / float64(*rate)
			var harmonics float64
			for h := 1; h <= 10; h++ {
				harmonics += math.Sin(t*f0*float64(h)*2*math.Pi) / float64(h)
			}
			write(int16(harmonics * (0.75 + 0.25*math.Sin(t*4*2*math.Pi)) * 7000))
		}
		for i := 0; i < *rate**gap/1000; i++ {
			write(0)
		}
	}
}
