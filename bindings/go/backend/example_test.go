package backend_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/voicebackend/voicebackend/bindings/go/backend"
)

func ExampleRegistry_ListProviders() {
	fmt.Println(backend.GetRegistry().ListProviders())
	// Output: [livekit local pipecat]
}

func ExampleBackendError() {
	_, err := backend.GetRegistry().Create(context.Background(), "local", &backend.Config{
		STTProvider: "test-pitch-stt", TTSProvider: "test-tone-tts",
		Turn: &backend.TurnConfig{Silence: 10 * time.Millisecond}})
	var be *backend.BackendError
	if errors.As(err, &be) {
		fmt.Println(be.Code, "-", be.Message)
	}
	// Output: VB_ERR_INVALID_CONFIG - turn.silence_ms: 10 is below the minimum 50
}
