package backend

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// chatServer answers every Chat Completions request with "Welcome." streamed as the API
// streams it (server-sent events ending in [DONE]) and keeps each request's JSON body. It
// checks only what the session sends (the real server tests are in the engine's
// tests/llm_agent.rs and TestToolCalledByBuiltInAgent).
func chatServer(t *testing.T) (string, func() []map[string]any) {
	t.Helper()
	var mu sync.Mutex
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil || r.URL.Path != "/v1/chat/completions" {
			http.Error(w, "want a JSON chat completion request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		bodies = append(bodies, body)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Welcome."},"finish_reason":null}]}`+"\n\n")
		_, _ = io.WriteString(w, `data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n")
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []map[string]any {
		mu.Lock()
		defer mu.Unlock()
		return append([]map[string]any(nil), bodies...)
	}
}

// A session's Agent settings override the backend's key by key: the request of its turn
// carries the session's model and system prompt, and the backend's temperature.
func TestSessionAgentOverridesTheBackendsSettings(t *testing.T) {
	url, requests := chatServer(t)
	b := newTestBackend(t, func(c *Config) {
		c.Agent = map[string]any{"provider": "openai", "base_url": url, "model": "front-desk",
			"system_prompt": "You answer the phone.", "temperature": 0.25}
		c.Extra = map[string]any{"persistence": map[string]any{"path": ""}}
	})
	s := newTestSession(t, b, &SessionConfig{Agent: map[string]any{
		"model": "concierge", "system_prompt": "You are a hotel's concierge."}})
	rec := record(s)
	if err := pushRealtime(s, utterance(150, 800, 16000), 16000); err != nil {
		t.Fatal(err)
	}
	i := rec.waitEvent(t, 0, "the agent's answer", isKind(EventAgentResponse))
	if got := strings.Join(texts(rec.snapshot()[i:i+1], EventAgentResponse), ""); got != "Welcome." {
		t.Errorf("answer %q, want the server's %q", got, "Welcome.")
	}
	bodies := requests()
	if len(bodies) != 1 {
		t.Fatalf("%d requests, want 1", len(bodies))
	}
	body := bodies[0]
	if body["model"] != "concierge" || body["temperature"] != 0.25 {
		t.Errorf("model %v, temperature %v: want the session's model and the backend's temperature", body["model"], body["temperature"])
	}
	messages, _ := body["messages"].([]any)
	first, _ := messages[0].(map[string]any)
	if first["role"] != "system" || first["content"] != "You are a hotel's concierge." {
		t.Errorf("first message %v, want the session's system prompt", first)
	}

	// Another session without an override gets the backend's settings.
	other := newTestSession(t, b, &SessionConfig{})
	rec = record(other)
	if err := pushRealtime(other, utterance(150, 800, 16000), 16000); err != nil {
		t.Fatal(err)
	}
	rec.waitEvent(t, 0, "the second session's answer", isKind(EventAgentResponse))
	if bodies = requests(); len(bodies) != 2 || bodies[1]["model"] != "front-desk" {
		t.Errorf("second session's request: %v, want model front-desk", bodies[len(bodies)-1])
	}
}

// Bad overrides are refused when the session is created, naming the key.
func TestSessionAgentOverrideErrors(t *testing.T) {
	b := newTestBackend(t, func(c *Config) {
		c.Agent = map[string]any{"provider": "openai", "base_url": "http://127.0.0.1:9", "model": "m"}
		c.Extra = map[string]any{"persistence": map[string]any{"path": ""}}
	})
	for _, tc := range []struct {
		agent map[string]any
		says  string
	}{
		{map[string]any{"api_key": "sk-secret"}, "agent.api_key"},
		{map[string]any{"temperature": 7}, "agent.temperature"},
		{map[string]any{"shoe_size": 42}, "unknown field `shoe_size`"},
		{map[string]any{"model": func() {}}, "agent"}, // not JSON: the binding refuses it
	} {
		s, err := b.CreateSession(context.Background(), &SessionConfig{Agent: tc.agent})
		if err == nil {
			_ = s.Close()
			t.Errorf("%v: accepted", tc.agent)
			continue
		}
		var be *BackendError
		if !errors.As(err, &be) || be.Code != ErrCodeInvalidConfig || !strings.Contains(be.Message, tc.says) {
			t.Errorf("%v: %v, want ErrCodeInvalidConfig naming %s", tc.agent, err, tc.says)
		}
	}
}
