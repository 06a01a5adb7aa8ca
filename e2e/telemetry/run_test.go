package telemetry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// runLifecycle starts l.Run on a goroutine and returns once Run catches
// its signals, so that a signal sent afterwards reaches Run and never the
// default action (which would kill the test binary).
func runLifecycle(t *testing.T, ctx context.Context, l *core.Lifecycle) <-chan error {
	t.Helper()
	res := make(chan error, 1)
	go func() { res <- l.Run(ctx) }()
	recv(t, l.Reached(core.Serving), "Run catching signals and marking the service ready")
	return res
}

// kill sends sig to this process and returns once it has been delivered
// to the os/signal handlers (so to Run's channel too). The guard channel
// also keeps a signal that arrives after Run stopped catching it from
// killing the test binary.
func kill(t *testing.T, sig syscall.Signal) {
	t.Helper()
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, sig)
	defer signal.Stop(guard)
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		t.Fatalf("kill: %v", err)
	}
	recv(t, guard, "signal delivery")
}

// rootTrigger returns the trigger recorded on the shutdown span.
func rootTrigger(t *testing.T, sr *tracetest.SpanRecorder) string {
	t.Helper()
	for _, s := range sr.Ended() {
		if s.Name() == spanShutdown {
			for _, a := range s.Attributes() {
				if a.Key == attrTrigger {
					return a.Value.AsString()
				}
			}
		}
	}
	t.Fatalf("no %s span with a trigger", spanShutdown)
	return ""
}

func tracedLifecycle(t *testing.T, opts ...core.Option) (*core.Lifecycle, *tracetest.SpanRecorder) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return newLifecycle(t, append(opts, core.WithTracerProvider(tp), core.WithSignals(syscall.SIGUSR1, syscall.SIGUSR2))...), sr
}

func TestRunSignalStartsShutdown(t *testing.T) {
	l, sr := tracedLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	res := runLifecycle(t, t.Context(), l)
	kill(t, syscall.SIGUSR1)
	if err := recv(t, res, "Run"); err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}
	if got, want := rootTrigger(t, sr), "user defined signal 1"; got != want {
		t.Errorf("trigger: got %q, want %q", got, want)
	}
}

func TestRunSecondSignalForces(t *testing.T) {
	l, _ := tracedLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	if !l.Begin() {
		t.Fatal("Begin: got false")
	}
	defer l.End()
	res := runLifecycle(t, t.Context(), l)
	kill(t, syscall.SIGUSR1)
	recv(t, l.Reached(core.Holding), "Holding()")
	kill(t, syscall.SIGUSR2) // any configured signal counts as the second
	err := recv(t, res, "Run after a second signal")
	var fe *core.ForcedError
	if !errors.As(err, &fe) || !errors.Is(err, core.ErrSecondSignal) || fe.Abandoned != 1 {
		t.Fatalf("Run: got %v, want ForcedError{Abandoned: 1, Cause: ErrSecondSignal}", err)
	}
	if !strings.Contains(err.Error(), "user defined signal 2") {
		t.Errorf("error %q: want it to name the second signal", err)
	}
}

func TestRunSecondSignalForcesWithNothingInFlight(t *testing.T) {
	l, _ := tracedLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	res := runLifecycle(t, t.Context(), l)
	kill(t, syscall.SIGUSR1)
	recv(t, l.Reached(core.Holding), "Holding()")
	kill(t, syscall.SIGUSR1)
	err := recv(t, res, "Run after a second signal")
	var fe *core.ForcedError
	if !errors.As(err, &fe) || !errors.Is(err, core.ErrSecondSignal) || fe.Abandoned != 0 {
		t.Fatalf("Run: got %v, want ForcedError{Abandoned: 0, Cause: ErrSecondSignal}", err)
	}
}

func TestRunContextStartsShutdown(t *testing.T) {
	l, sr := tracedLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	res := runLifecycle(t, ctx, l)
	cancel()
	if err := recv(t, res, "Run"); err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}
	if got := rootTrigger(t, sr); got != "context" {
		t.Errorf("trigger: got %q, want %q", got, "context")
	}
}

func TestRunAfterPreStop(t *testing.T) {
	const hold = 300 * time.Millisecond
	l, sr := tracedLifecycle(t, core.WithHold(hold), core.WithDrainTimeout(time.Hour))
	if !l.Begin() {
		t.Fatal("Begin: got false")
	}
	res := runLifecycle(t, t.Context(), l)

	// The kubelet calls preStop; it returns when the hold is over.
	preStopDone := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		w := httptest.NewRecorder()
		l.PreStopHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/prestop", nil))
		preStopDone <- w
	}()
	w := recv(t, preStopDone, "preStop handler")
	if w.Code != http.StatusOK || w.Body.String() != "ok\n" {
		t.Fatalf("preStop: got %d %q, want 200 \"ok\\n\"", w.Code, w.Body.String())
	}
	// Then SIGTERM: it joins the sequence; it is not a second signal.
	kill(t, syscall.SIGUSR1)
	l.End()
	if err := recv(t, res, "Run"); err != nil {
		t.Fatalf("Run: got %v, want nil (the first signal after preStop must not force)", err)
	}
	if got := rootTrigger(t, sr); got != "prestop" {
		t.Errorf("trigger: got %q, want %q", got, "prestop")
	}
	var holds int
	for _, s := range sr.Ended() {
		if s.Name() == spanHold {
			holds++
		}
	}
	if holds != 1 {
		t.Errorf("hold spans: got %d, want 1 (no second hold)", holds)
	}
}

func TestRunReturnsAfterShutdownElsewhere(t *testing.T) {
	l, _ := tracedLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	res := runLifecycle(t, t.Context(), l)
	if err := l.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := recv(t, res, "Run"); err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}
}
