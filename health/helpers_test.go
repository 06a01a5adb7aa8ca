package health_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// newLifecycle returns a lifecycle in phase p, run by [core.Lifecycle.Run]
// (without signals) for every phase past Starting, as a service's is.
// Holding and Draining are held there until the test ends; the cleanup
// ends the shutdown and waits for Run to return.
func newLifecycle(t testing.TB, p core.Phase) *core.Lifecycle {
	t.Helper()
	hold := time.Duration(0)
	if p == core.Holding {
		hold = time.Hour
	}
	lc, err := core.New(core.WithSignals(), core.WithLogger(discard), core.WithHold(hold), core.WithDrainTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if p == core.Starting {
		return lc
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	res := make(chan error, 1)
	go func() { res <- lc.Run(ctx) }()
	<-lc.Reached(core.Serving)
	switch p {
	case core.Serving:
		t.Cleanup(func() {
			cancel() // starts the shutdown: nothing to hold or drain
			if err := <-res; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	case core.Holding:
		cancel()
		<-lc.Reached(core.Holding)
		t.Cleanup(func() {
			lc.Force(nil) // cuts the hour-long hold short
			<-res
		})
	case core.Draining:
		if !lc.Begin() { // in-flight work keeps the drain going
			t.Fatal("Begin on a serving lifecycle: got false, want true")
		}
		cancel()
		<-lc.Reached(core.Draining)
		t.Cleanup(func() {
			lc.End()
			if err := <-res; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	case core.Stopped:
		cancel()
		if err := <-res; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	if got := lc.Phase(); got != p {
		t.Fatalf("lifecycle phase: got %v, want %v", got, p)
	}
	return lc
}

// logBuffer collects log output safely from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// serve sends one request to h and returns the recorded response.
func serve(t testing.TB, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, target, nil))
	return rec
}

// returns is a check function that returns err.
func returns(err error) func(context.Context) error {
	return func(context.Context) error { return err }
}
