package health_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// nilPtrCheck is a Checker whose nil pointer panics in Name.
type nilPtrCheck struct{ name string }

func (c *nilPtrCheck) Name() string                { return c.name }
func (c *nilPtrCheck) Check(context.Context) error { return nil }

func TestNewErrors(t *testing.T) {
	ok := returns(nil)
	lc := newLifecycle(t, core.Starting)
	tests := []struct {
		name string
		lc   *core.Lifecycle
		opts []health.Option
		want string // a substring of the error
	}{
		{"nil lifecycle", nil, nil, "health: nil lifecycle"},
		{"nil option", lc, []health.Option{nil}, "health: nil option"},
		{"zero timeout", lc, []health.Option{health.WithTimeout(0)}, "timeout must be positive, got 0s"},
		{"negative timeout", lc, []health.Option{health.WithTimeout(-time.Second)}, "timeout must be positive, got -1s"},
		{"negative ttl", lc, []health.Option{health.WithCacheTTL(-time.Second)}, "cache TTL must not be negative, got -1s"},
		{"empty name", lc, []health.Option{health.WithReadinessChecks(health.NamedCheck("", ok))}, "readiness check 0: empty name"},
		{"duplicate readiness", lc, []health.Option{
			health.WithReadinessChecks(health.NamedCheck("db", ok)),
			health.WithReadinessChecks(health.NamedCheck("db", ok)),
		}, `readiness check 1: duplicate name "db"`},
		{"duplicate liveness", lc, []health.Option{health.WithLivenessChecks(health.NamedCheck("x", ok), health.NamedCheck("x", ok))}, `liveness check 1: duplicate name "x"`},
		{"upper case", lc, []health.Option{health.WithReadinessChecks(health.NamedCheck("DB", ok))}, `name "DB" has the invalid character 'D' at byte 0`},
		{"slash", lc, []health.Option{health.WithReadinessChecks(health.NamedCheck("a/b", ok))}, `invalid character '/' at byte 1`},
		{"space", lc, []health.Option{health.WithLivenessChecks(health.NamedCheck("a b", ok))}, `liveness check 0: name "a b" has the invalid character ' '`},
		{"query char", lc, []health.Option{health.WithReadinessChecks(health.NamedCheck("a?b", ok))}, `invalid character '?'`},
		{"wildcard", lc, []health.Option{health.WithReadinessChecks(health.NamedCheck("{name}", ok))}, `invalid character '{'`},
		{"dot dot", lc, []health.Option{health.WithReadinessChecks(health.NamedCheck("..", ok))}, `name ".." is not a usable path segment`},
		{"too long", lc, []health.Option{health.WithReadinessChecks(health.NamedCheck(strings.Repeat("a", 64), ok))}, "64 bytes long, more than 63"},
		{"shutdown reserved", lc, []health.Option{health.WithReadinessChecks(health.NamedCheck("shutdown", ok))}, `name "shutdown" is reserved`},
		{"ping reserved", lc, []health.Option{health.WithLivenessChecks(health.NamedCheck("ping", ok))}, `name "ping" is reserved`},
		{"ping reserved in readiness", lc, []health.Option{health.WithReadinessChecks(health.NamedCheck("ping", ok))}, `name "ping" is reserved`},
		{"nil checker", lc, []health.Option{health.WithReadinessChecks(health.NamedCheck("a", ok), nil)}, "readiness check 1: nil Checker"},
		{"typed nil checker", lc, []health.Option{health.WithLivenessChecks((*nilPtrCheck)(nil))}, "liveness check 0: Name panicked"},
		{"nil function", lc, []health.Option{health.WithReadinessChecks(health.NamedCheck("db", nil))}, `readiness check 0 ("db"): nil check function`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := health.New(tt.lc, tt.opts...)
			if err == nil {
				t.Fatalf("New: got nil error (and %v), want one containing %q", h, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "health: ") {
				t.Fatalf("New: got error %q, want it to start with \"health: \" and contain %q", err, tt.want)
			}
		})
	}
}

func TestNewAccepts(t *testing.T) {
	lc := newLifecycle(t, core.Serving)
	ok := returns(nil)
	h, err := health.New(lc,
		health.WithLogger(nil), // ignored
		health.WithTimeout(time.Second),
		health.WithCacheTTL(0),
		health.WithReadinessChecks(health.NamedCheck("a-z.0_9", ok)),
		health.WithReadinessChecks(health.NamedCheck(strings.Repeat("x", health.MaxNameLen), ok)),
		// The same name may be a readiness and a liveness check.
		health.WithLivenessChecks(health.NamedCheck("a-z.0_9", ok)),
	)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if !h.Ready(t.Context()) {
		t.Fatal("Ready: got false, want true")
	}
}

func names(rs []health.Result) []string {
	var ns []string
	for _, r := range rs {
		ns = append(ns, r.Name)
	}
	return ns
}

func TestCheckOrderAndExclude(t *testing.T) {
	secret := errors.New("b is down")
	h, err := health.New(newLifecycle(t, core.Starting), health.WithLogger(discard), health.WithTimeout(time.Minute),
		health.WithReadinessChecks(health.NamedCheck("a", returns(nil)), health.NamedCheck("b", returns(secret))),
		health.WithReadinessChecks(health.NamedCheck("c", returns(nil))),
		health.WithLivenessChecks(health.NamedCheck("x", returns(nil))),
	)
	if err != nil {
		t.Fatal(err)
	}
	rs := h.CheckReadiness(t.Context())
	if got, want := names(rs), []string{"shutdown", "a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("CheckReadiness names: got %v, want %v", got, want)
	}
	if rs[0].Err == nil || !strings.Contains(rs[0].Err.Error(), "not ready yet (phase starting)") {
		t.Errorf("shutdown check while starting: got %v, want \"not ready yet (phase starting)\"", rs[0].Err)
	}
	if rs[1].Err != nil || rs[3].Err != nil {
		t.Errorf("passing checks: got %v and %v, want nil", rs[1].Err, rs[3].Err)
	}
	if !errors.Is(rs[2].Err, secret) {
		t.Errorf("failing check: got %v, want %v", rs[2].Err, secret)
	}
	if got, want := names(h.CheckReadiness(t.Context(), "b", "shutdown", "unknown")), []string{"a", "c"}; !slices.Equal(got, want) {
		t.Errorf("CheckReadiness with exclude: got %v, want %v", got, want)
	}
	if got, want := names(h.CheckLiveness(t.Context())), []string{"ping", "x"}; !slices.Equal(got, want) {
		t.Errorf("CheckLiveness names: got %v, want %v", got, want)
	}
	if got, want := names(h.CheckLiveness(t.Context(), "ping")), []string{"x"}; !slices.Equal(got, want) {
		t.Errorf("CheckLiveness with exclude: got %v, want %v", got, want)
	}
}

func TestShutdownCheckMessages(t *testing.T) {
	tests := []struct {
		phase core.Phase
		want  string // "" means passes
	}{
		{core.Starting, "not ready yet (phase starting)"},
		{core.Serving, ""},
		{core.Holding, "shutting down (phase holding)"},
		{core.Draining, "shutting down (phase draining)"},
		{core.Stopped, "shutting down (phase stopped)"},
	}
	for _, tt := range tests {
		t.Run(tt.phase.String(), func(t *testing.T) {
			h, err := health.New(newLifecycle(t, tt.phase), health.WithLogger(discard))
			if err != nil {
				t.Fatal(err)
			}
			rs := h.CheckReadiness(t.Context())
			if len(rs) != 1 || rs[0].Name != health.ShutdownName {
				t.Fatalf("CheckReadiness: got %v, want only the shutdown check", rs)
			}
			switch {
			case tt.want == "" && rs[0].Err != nil:
				t.Errorf("shutdown check: got %v, want nil", rs[0].Err)
			case tt.want != "" && (rs[0].Err == nil || !strings.Contains(rs[0].Err.Error(), tt.want)):
				t.Errorf("shutdown check: got %v, want an error containing %q", rs[0].Err, tt.want)
			}
			if got, want := h.Ready(t.Context()), tt.want == ""; got != want {
				t.Errorf("Ready: got %v, want %v", got, want)
			}
			if got := h.CheckLiveness(t.Context()); len(got) != 1 || got[0].Err != nil {
				t.Errorf("CheckLiveness: got %v, want ping passing", got)
			}
			if !h.Live(t.Context()) {
				t.Error("Live: got false, want true in every phase")
			}
		})
	}
}

func TestReadyNeedsEveryCheck(t *testing.T) {
	lc := newLifecycle(t, core.Serving)
	calls := atomic.Int32{}
	h, err := health.New(lc, health.WithLogger(discard), health.WithTimeout(time.Minute), health.WithReadinessChecks(
		health.NamedCheck("ok", returns(nil)),
		health.NamedCheck("bad", func(context.Context) error { calls.Add(1); return errors.New("down") }),
	))
	if err != nil {
		t.Fatal(err)
	}
	if h.Ready(t.Context()) {
		t.Error("Ready with a failing check: got true, want false")
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("check calls: got %d, want 1", got)
	}
}

func TestLiveNeedsEveryLivenessCheck(t *testing.T) {
	h, err := health.New(newLifecycle(t, core.Serving), health.WithLogger(discard), health.WithTimeout(time.Minute),
		health.WithReadinessChecks(health.NamedCheck("db", returns(errors.New("down")))),
		health.WithLivenessChecks(health.NamedCheck("ok", returns(nil))))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Live(t.Context()) {
		t.Error("Live with a failing readiness check: got false, want true")
	}
	h, err = health.New(newLifecycle(t, core.Serving), health.WithLogger(discard), health.WithTimeout(time.Minute),
		health.WithLivenessChecks(health.NamedCheck("ok", returns(nil)), health.NamedCheck("stuck", returns(errors.New("deadlock")))))
	if err != nil {
		t.Fatal(err)
	}
	if h.Live(t.Context()) {
		t.Error("Live with a failing liveness check: got true, want false")
	}
}

// TestChecksRunConcurrently: each check waits for the other to start,
// so run one after the other they would both time out.
func TestChecksRunConcurrently(t *testing.T) {
	aStarted, bStarted := make(chan struct{}), make(chan struct{})
	meet := func(mine, other chan struct{}) func(context.Context) error {
		return func(ctx context.Context) error {
			close(mine)
			select {
			case <-other:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	h, err := health.New(newLifecycle(t, core.Serving), health.WithLogger(discard),
		health.WithTimeout(time.Minute), // generous: the test passes long before
		health.WithReadinessChecks(health.NamedCheck("a", meet(aStarted, bStarted)), health.NamedCheck("b", meet(bStarted, aStarted))))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range h.CheckReadiness(t.Context()) {
		if r.Err != nil {
			t.Errorf("check %s: got %v, want nil", r.Name, r.Err)
		}
	}
}

func TestTimeoutCancelsCheckContext(t *testing.T) {
	seen := make(chan error, 1)
	logger, logs := newLogger()
	h, err := health.New(newLifecycle(t, core.Serving), health.WithLogger(logger),
		health.WithTimeout(20*time.Millisecond),
		health.WithReadinessChecks(health.NamedCheck("slow", func(ctx context.Context) error {
			<-ctx.Done()
			select {
			case seen <- ctx.Err():
			default:
			}
			return ctx.Err()
		})))
	if err != nil {
		t.Fatal(err)
	}
	rs := h.CheckReadiness(t.Context())
	if !errors.Is(rs[1].Err, context.DeadlineExceeded) || !strings.Contains(rs[1].Err.Error(), `check "slow" timed out after 20ms`) {
		t.Errorf("slow check: got %v, want a timeout error", rs[1].Err)
	}
	if err := <-seen; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("check context error: got %v, want %v", err, context.DeadlineExceeded)
	}
	// This probe may join the first run, which is still finishing, or
	// start a second one: both time out.
	if rec := serve(t, h, http.MethodGet, "/readyz"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status: got %d, want 503", rec.Code)
	}
	if got := logs.String(); !strings.Contains(got, "check=slow") || !strings.Contains(got, "timed out") {
		t.Errorf("log: got %q, want the timeout of check=slow", got)
	}
}

func TestCallerContextEnds(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h, err := health.New(newLifecycle(t, core.Serving), health.WithLogger(discard),
		health.WithTimeout(time.Hour),
		health.WithReadinessChecks(health.NamedCheck("blocked", func(ctx context.Context) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rs := h.CheckReadiness(ctx)
	if !errors.Is(rs[1].Err, context.Canceled) {
		t.Errorf("check with the caller's context cancelled: got %v, want %v", rs[1].Err, context.Canceled)
	}
	if rs[0].Err != nil {
		t.Errorf("shutdown check: got %v, want nil", rs[0].Err)
	}
}

func TestPanickingCheck(t *testing.T) {
	logger, logs := newLogger()
	var calls atomic.Int32
	h, err := health.New(newLifecycle(t, core.Serving), health.WithLogger(logger), health.WithTimeout(time.Minute),
		health.WithReadinessChecks(health.NamedCheck("boom", func(context.Context) error {
			calls.Add(1)
			panic("kaboom-secret")
		})))
	if err != nil {
		t.Fatal(err)
	}
	rs := h.CheckReadiness(t.Context())
	if rs[1].Err == nil || !strings.Contains(rs[1].Err.Error(), `check "boom" panicked: kaboom-secret`) {
		t.Errorf("panicking check: got %v, want a panic error", rs[1].Err)
	}
	rec := serve(t, h, http.MethodGet, "/readyz?verbose")
	if rec.Code != http.StatusServiceUnavailable || strings.Contains(rec.Body.String(), "kaboom") {
		t.Errorf("response: got %d %q, want 503 without the panic value", rec.Code, rec.Body)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("check calls: got %d, want 2 (a panic does not stop later runs)", got)
	}
	if got := logs.String(); !strings.Contains(got, "check panicked") || !strings.Contains(got, "check=boom") ||
		!strings.Contains(got, "kaboom-secret") || !strings.Contains(got, "stack=") {
		t.Errorf("log: got %q, want the panic of check=boom with its stack", got)
	}
}
