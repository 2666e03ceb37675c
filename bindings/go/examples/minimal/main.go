package main

import (
	"cmp"
	"context"
	"io"
	"log"
	"os"
	"time"

	"github.com/voicebackend/voicebackend/bindings/go/backend"
)

func main() { // 16 kHz mono PCM16LE on stdin at real-time pace; events on stderr
	ctx, stt, tts := context.Background(), cmp.Or(os.Getenv("VB_STT"), "whisper"), cmp.Or(os.Getenv("VB_TTS"), "espeak")
	b := must(backend.GetRegistry().Create(ctx, "local", &backend.Config{STTProvider: stt, TTSProvider: tts}))
	must(b, b.Start(ctx))
	s := must(b.CreateSession(ctx, &backend.SessionConfig{ // 16 kHz in and out
		AgentCallback: func(_ context.Context, text string) (string, error) { return "You said: " + text, nil }}))
	must(s, s.Start(ctx))
	go func() { // a microphone: 20 ms every 20 ms; 3 s after the input (the last reply), close
		frame, tick := make([]byte, 640), time.NewTicker(20*time.Millisecond)
		for _, err := io.ReadFull(os.Stdin, frame); err == nil; _, err = io.ReadFull(os.Stdin, frame) {
			_ = s.ProcessAudio(ctx, frame)
			<-tick.C
		}
		time.AfterFunc(3*time.Second, func() { _ = b.Close() }) // closes the session too
	}()
	for e := range s.Events() { // until Close; s.ReceiveAudio() carries the agent's voice (PCM16LE)
		log.Print(e)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
