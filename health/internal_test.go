package health

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// servingLifecycle returns a lifecycle that Run has made ready; the
// cleanup ends Run.
func servingLifecycle(t *testing.T) *core.Lifecycle {
	t.Helper()
	lc, err := core.New(core.WithSignals(), core.WithHold(0), core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- lc.Run(ctx) }()
	<-lc.Reached(core.Serving)
	t.Cleanup(func() {
		cancel()
		if err := <-res; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return lc
}

func get(t *testing.T, h http.Handler, target string) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, target, nil))
	return rec.Code
}

// TestSingleFlight sends 200 concurrent probes while the check blocks
// until all of them are waiting for it: they must share its one call.
func TestSingleFlight(t *testing.T) {
	const n = 200
	var calls atomic.Int32
	release := make(chan struct{})
	h, err := New(servingLifecycle(t), WithLogger(discard),
		WithTimeout(time.Minute), // never reached: the check is released first
		WithReadinessChecks(NamedCheck("db", func(ctx context.Context) error {
			calls.Add(1)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})))
	if err != nil {
		t.Fatal(err)
	}
	var waiting atomic.Int32
	h.onWait = func(string) {
		if waiting.Add(1) == n {
			close(release)
		}
	}
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { codes[i] = get(t, h, "/readyz") })
	}
	wg.Wait()
	if got := calls.Load(); got != 1 {
		t.Errorf("check calls for %d concurrent probes: got %d, want 1", n, got)
	}
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("probe %d: got status %d, want 200", i, c)
		}
	}
	// Without a cache, the next probe runs the check again.
	if code := get(t, h, "/readyz"); code != http.StatusOK {
		t.Errorf("later probe: got status %d, want 200", code)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("check calls after a later probe: got %d, want 2", got)
	}
}

// fakeClock is the cache's clock in tests.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestCacheTTL(t *testing.T) {
	var calls atomic.Int32
	h, err := New(servingLifecycle(t), WithLogger(discard), WithCacheTTL(10*time.Second), WithTimeout(time.Minute),
		WithReadinessChecks(NamedCheck("db", func(context.Context) error {
			if calls.Add(1) == 1 {
				return errors.New("first call fails")
			}
			return nil
		})))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	clock.advance(time.Hour)
	h.now = clock.now
	steps := []struct {
		name      string
		advance   time.Duration
		target    string
		wantCode  int
		wantCalls int32
	}{
		{"first probe runs the check", 0, "/readyz", 503, 1},
		{"failure is cached", 5 * time.Second, "/readyz", 503, 1},
		{"per-check path shares the cache", 0, "/readyz/db", 503, 1},
		{"just before the TTL", 5*time.Second - time.Nanosecond, "/readyz", 503, 1},
		{"at the TTL the check runs again", time.Nanosecond, "/readyz", 200, 2},
		{"success is cached", 9 * time.Second, "/readyz?verbose", 200, 2},
		{"excluded check is neither run nor needed", 0, "/readyz?exclude=db", 200, 2},
		{"expired again", time.Second, "/readyz/db", 200, 3},
	}
	for _, s := range steps {
		clock.advance(s.advance)
		if code := get(t, h, s.target); code != s.wantCode {
			t.Errorf("%s: status: got %d, want %d", s.name, code, s.wantCode)
		}
		if got := calls.Load(); got != s.wantCalls {
			t.Errorf("%s: check calls: got %d, want %d", s.name, got, s.wantCalls)
		}
	}
}

// TestHungCheck runs a check that ignores its context: probes answer at
// the timeout, later probes join the hung run instead of starting another
// one, and the run ends when the check finally returns.
func TestHungCheck(t *testing.T) {
	var calls atomic.Int32
	unblock := make(chan struct{})
	var once sync.Once
	unblockOnce := func() { once.Do(func() { close(unblock) }) }
	t.Cleanup(unblockOnce) // even if the test fails early
	h, err := New(servingLifecycle(t), WithLogger(discard), WithTimeout(10*time.Millisecond),
		WithReadinessChecks(NamedCheck("hung", func(context.Context) error {
			if calls.Add(1) == 1 {
				<-unblock // ignores its context
			}
			return nil
		})))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		rs := h.checkReadiness(t.Context())
		if !errors.Is(rs[1].Err, context.DeadlineExceeded) {
			t.Fatalf("probe %d: got %v, want a timeout", i, rs[1].Err)
		}
	}
	if code := get(t, h, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("probe while hung: got status %d, want 503", code)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("check calls while hung: got %d, want 1 (probes join the hung run)", got)
	}
	c := h.readiness[1]
	c.mu.Lock()
	f := c.flight
	c.mu.Unlock()
	if f == nil {
		t.Fatal("no run in flight while the check hangs")
	}
	unblockOnce()
	<-f.done // the run's goroutine ends when the check returns
	if !errors.Is(f.err, context.DeadlineExceeded) {
		t.Errorf("late result: got %v, want the timeout the probes saw", f.err)
	}
	if !h.Ready(t.Context()) {
		t.Error("Ready once the check returns promptly: got false, want true")
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("check calls: got %d, want 2", got)
	}
}
