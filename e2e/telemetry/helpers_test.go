package telemetry_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/lameduck/lameduck/core"
)

// The span names, attribute keys and instrumentation scope that core
// documents.
const (
	scopeName    = "github.com/lameduck/lameduck/core"
	spanShutdown = "lameduck.shutdown"
	spanHold     = "lameduck.hold"
	spanDrain    = "lameduck.drain"

	attrTrigger      = attribute.Key("lameduck.trigger")
	attrHold         = attribute.Key("lameduck.hold.duration")
	attrDrainTimeout = attribute.Key("lameduck.drain.timeout")
	attrInFlight     = attribute.Key("lameduck.drain.in_flight")
	attrAbandoned    = attribute.Key("lameduck.drain.abandoned")
	attrPhase        = attribute.Key("lameduck.phase")
)

// wrap returns h as ListenHTTP serves it: ListenHTTP replaces the
// server's handler with the lifecycle's. The server is never served; the
// cleanup shuts the lifecycle down, which closes its listener.
func wrap(tb testing.TB, l *core.Lifecycle, h http.Handler) http.Handler {
	tb.Helper()
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: h}
	if err := l.ListenHTTP(srv, nil); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Shutdown(context.Background()) })
	return srv.Handler
}

// quiet is a logger that drops everything.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newLifecycle returns a lifecycle with a silent logger.
func newLifecycle(t testing.TB, opts ...core.Option) *core.Lifecycle {
	t.Helper()
	l, err := core.New(append([]core.Option{core.WithLogger(quiet), core.WithSignals()}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// recv waits for ch to close or deliver, failing after a generous bound
// that only guards against a hang.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not within 10s", what)
		var zero T
		return zero
	}
}

// shutdownAsync runs l.Shutdown(ctx) on a goroutine and returns its result.
func shutdownAsync(ctx context.Context, l *core.Lifecycle) <-chan error {
	res := make(chan error, 1)
	go func() { res <- l.Shutdown(ctx) }()
	return res
}

// run runs l.Run on a goroutine, waits until the service is ready and
// returns Run's result. The test's cleanup forces the lifecycle and waits
// for Run to return.
func run(t testing.TB, l *core.Lifecycle) <-chan error {
	t.Helper()
	res := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { res <- l.Run(ctx) }()
	recv(t, l.Reached(core.Serving), "Run marks the service ready")
	out := make(chan error, 1)
	done := make(chan struct{})
	go func() { out <- <-res; close(done) }()
	t.Cleanup(func() {
		cancel()
		l.Force(errors.New("test cleanup"))
		<-done
	})
	return out
}
