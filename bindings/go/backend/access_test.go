package backend

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

var errUnknownToken = errors.New("unknown token")

type ctxKey struct{}

// recordingHook accepts "token-for-<user>", refuses to authorize "eve", and records calls.
type recordingHook struct {
	mu    sync.Mutex
	calls []string
}

func (h *recordingHook) record(s string) {
	h.mu.Lock()
	h.calls = append(h.calls, s)
	h.mu.Unlock()
}

func (h *recordingHook) Authenticate(ctx context.Context, token string, metadata map[string]any) (*AuthResult, error) {
	h.record("authenticate ctx=" + toString(ctx.Value(ctxKey{})) + " app=" + toString(metadata["app"]))
	switch {
	case token == "offline":
		return nil, &BackendError{Code: ErrCodeConnectionFailed, Message: "auth server down"}
	case token == "panic":
		panic("hook bug")
	case token == "undecided":
		return &AuthResult{UserID: "dave", Authorized: false}, nil
	case strings.HasPrefix(token, "token-for-"):
		return &AuthResult{UserID: strings.TrimPrefix(token, "token-for-"), Authorized: true}, nil
	}
	return nil, errUnknownToken
}

func (h *recordingHook) Authorize(ctx context.Context, userID, operation string) (bool, error) {
	h.record("authorize " + userID + " " + operation)
	return userID != "eve", nil
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

func TestAuthHook(t *testing.T) {
	hook := &recordingHook{}
	b := newTestBackend(t, func(c *Config) {
		c.AuthHook = hook
		c.Extra = map[string]any{"auth": map[string]any{"required": true}}
	})
	ctx := context.WithValue(context.Background(), ctxKey{}, "request-42")
	create := func(cfg SessionConfig) (*Session, error) {
		cfg.AgentCallback = echoAgent
		return b.CreateSession(ctx, &cfg)
	}

	wantCode(t, func() error { _, err := create(SessionConfig{}); return err }(), ErrCodeUnauthorized)
	_, err := create(SessionConfig{AuthToken: "forged-token-value"})
	be := wantCode(t, err, ErrCodeUnauthorized)
	if !errors.Is(err, errUnknownToken) || strings.Contains(be.Message, "forged-token-value") {
		t.Errorf("want the hook's error as Err and no token in the message: %v", err)
	}
	_, err = create(SessionConfig{AuthToken: "token-for-eve"})
	wantCode(t, err, ErrCodeUnauthorized)
	_, err = create(SessionConfig{AuthToken: "undecided"})
	wantCode(t, err, ErrCodeUnauthorized)
	_, err = create(SessionConfig{UserID: "bob", AuthToken: "token-for-carol"})
	wantCode(t, err, ErrCodeUnauthorized, "'bob'", "'carol'")
	_, err = create(SessionConfig{AuthToken: "offline"})
	if wantCode(t, err, ErrCodeConnectionFailed); !IsRetryable(err) {
		t.Errorf("a connection failure of the hook is retryable: %v", err)
	}
	_, err = create(SessionConfig{AuthToken: "panic"})
	if be := wantCode(t, err, ErrCodePanic); be.Err == nil || !strings.Contains(be.Err.Error(), "hook bug") {
		t.Errorf("want the panic as Err: %v", err)
	}
	if n := b.GetActiveSessionCount(); n != 0 {
		t.Fatalf("refused sessions were counted: %d", n)
	}

	hook.mu.Lock()
	hook.calls = nil
	hook.mu.Unlock()
	s, err := create(SessionConfig{AuthToken: "token-for-carol", Metadata: map[string]any{"app": "kiosk"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []string{"authenticate ctx=request-42 app=kiosk", "authorize carol session.create"}
	if strings.Join(hook.calls, "|") != strings.Join(want, "|") {
		t.Errorf("hook calls %q, want %q", hook.calls, want)
	}
	if n := b.GetActiveSessionCount(); n != 1 {
		t.Errorf("active sessions %d, want 1", n)
	}
}

// quota admits everyone but "blocked"; Wait waits for its ctx for "slow" and records deadlines.
type quota struct {
	mu    sync.Mutex
	keys  []string
	waits []time.Duration
}

func (q *quota) Allow(ctx context.Context, key string) (bool, error) {
	q.mu.Lock()
	q.keys = append(q.keys, key)
	q.mu.Unlock()
	return key != "blocked", nil
}

func (q *quota) Wait(ctx context.Context, key string) error {
	if deadline, ok := ctx.Deadline(); ok {
		q.mu.Lock()
		q.waits = append(q.waits, time.Until(deadline))
		q.mu.Unlock()
	}
	if key == "slow" {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func TestRateLimiter(t *testing.T) {
	q := &quota{}
	b := newTestBackend(t, func(c *Config) {
		c.RateLimiter = q
		// The built-in buckets would refuse alice's second session.
		c.Extra = map[string]any{"rate_limit": map[string]any{"per_user_sessions_per_minute": 1}}
	})
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		s, err := b.CreateSession(ctx, &SessionConfig{UserID: "alice", AgentCallback: echoAgent})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
	}
	_, err := b.CreateSession(ctx, &SessionConfig{UserID: "blocked", AgentCallback: echoAgent})
	if wantCode(t, err, ErrCodeRateLimited, "'blocked'"); !IsRetryable(err) {
		t.Errorf("a rate limit refusal is retryable: %v", err)
	}
	if got := strings.Join(q.keys, ","); got != "alice,alice,blocked" {
		t.Errorf("Allow saw keys %q", got)
	}

	// With AdmissionWait, Wait is asked instead, with a deadline that far away.
	s, err := b.CreateSession(ctx, &SessionConfig{UserID: "alice", AdmissionWait: 2 * time.Second, AgentCallback: echoAgent})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = b.CreateSession(ctx, &SessionConfig{UserID: "slow", AdmissionWait: 20 * time.Millisecond, AgentCallback: echoAgent})
	if wantCode(t, err, ErrCodeRateLimited); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want the Wait's error as Err: %v", err)
	}
	if len(q.waits) != 2 || q.waits[0] <= time.Second || q.waits[0] > 2*time.Second {
		t.Errorf("Wait deadlines %v, want the first within 2 s", q.waits)
	}
	if len(q.keys) != 3 {
		t.Errorf("Allow was asked although the session waits: %q", q.keys)
	}
	if n := b.GetActiveSessionCount(); n != 3 {
		t.Errorf("active sessions %d, want 3", n)
	}
}

// hs256 signs claims as a LiveKit access token (HS256 JWT).
func hs256(t *testing.T, claims map[string]any, secret string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

func TestBuiltInJWTAndRateLimit(t *testing.T) {
	const secret = "go-test-secret-6d0f2a"
	b := newTestBackend(t, func(c *Config) {
		c.Extra = map[string]any{
			"auth":       map[string]any{"jwt_hs256_secret": secret, "required": true},
			"rate_limit": map[string]any{"per_user_sessions_per_minute": 1},
		}
	})
	now := time.Now().Unix()
	claims := map[string]any{"iss": "APIgo", "sub": "alice", "nbf": now, "exp": now + 600,
		"video": map[string]any{"roomJoin": true, "room": "support"}}
	ctx := context.Background()
	s, err := b.CreateSession(ctx, &SessionConfig{AuthToken: hs256(t, claims, secret), AgentCallback: echoAgent})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	forged := hs256(t, claims, "another-secret")
	_, err = b.CreateSession(ctx, &SessionConfig{AuthToken: forged, AgentCallback: echoAgent})
	wantCode(t, err, ErrCodeUnauthorized, "bad signature")
	if strings.Contains(err.Error(), forged) || strings.Contains(err.Error(), secret) {
		t.Errorf("the token or the secret leaked: %v", err)
	}
	_, err = b.CreateSession(ctx, &SessionConfig{AuthToken: hs256(t, claims, secret), AgentCallback: echoAgent})
	wantCode(t, err, ErrCodeRateLimited, "rate_limit.per_user_sessions_per_minute")
}
