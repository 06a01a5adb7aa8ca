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

// newLifecycle returns a lifecycle in phase p. Holding and Draining are
// held there until the test ends.
func newLifecycle(t testing.TB, p core.Phase) *core.Lifecycle {
	t.Helper()
	hold := time.Duration(0)
	if p == core.Holding {
		hold = time.Hour
	}
	lc, err := core.New(core.WithLogger(discard), core.WithHold(hold), core.WithDrainTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if p == core.Starting {
		return lc
	}
	lc.MarkReady()
	switch p {
	case core.Holding:
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- lc.Shutdown(ctx) }()
		<-lc.Holding()
		t.Cleanup(func() { cancel(); <-done })
	case core.Draining:
		if !lc.Begin() { // in-flight work keeps the drain going
			t.Fatal("Begin on a serving lifecycle: got false, want true")
		}
		done := make(chan error, 1)
		go func() { done <- lc.Shutdown(context.Background()) }()
		<-lc.Draining()
		t.Cleanup(func() {
			lc.End()
			if err := <-done; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	case core.Stopped:
		if err := lc.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
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
