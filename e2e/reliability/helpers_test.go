package reliability_test

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/lameduck/lameduck/core"
)

// quiet drops the lifecycle's log lines.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// hang bounds every wait that only guards against a hang: far above any
// expected duration, so it never decides a result on a loaded machine.
const hang = 30 * time.Second

// errCleanup is the cause of the Force with which a test's cleanup ends a
// sequence that the test left running (an hour's hold, say).
var errCleanup = errors.New("test cleanup")

// lifecycle is a [core.Lifecycle] whose in-flight count the tests read
// through its public face, the lameduck.requests.in_flight metric.
type lifecycle struct {
	*core.Lifecycle
	reader *sdkmetric.ManualReader
}

// newLifecycle returns a lifecycle that logs nowhere, catches no signal
// (opts may set some) and reports its metrics to a reader of its own.
func newLifecycle(t testing.TB, opts ...core.Option) *lifecycle {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	l, err := core.New(append([]core.Option{core.WithLogger(quiet), core.WithSignals(), core.WithMeterProvider(mp)}, opts...)...)
	if err != nil {
		t.Fatalf("core.New: %v", err)
	}
	return &lifecycle{Lifecycle: l, reader: reader}
}

// InFlight returns the number of tracked requests, as the
// lameduck.requests.in_flight metric reports it.
func (l *lifecycle) InFlight() int64 {
	var rm metricdata.ResourceMetrics
	if err := l.reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "lameduck.requests.in_flight" {
				continue
			}
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && len(s.DataPoints) > 0 {
				return s.DataPoints[0].Value
			}
		}
	}
	panic("no lameduck.requests.in_flight metric")
}

// run is a call of Run on a goroutine.
type run struct {
	done    chan struct{}
	err     error       // Run's result, once done is closed
	checked atomic.Bool // the test has waited for the result and checks it
}

// wait waits for Run to return and returns its result, which the caller
// checks (the cleanup of [start] then does not).
func (r *run) wait(t testing.TB) error {
	t.Helper()
	r.checked.Store(true)
	recv(t, r.done, "Run returning")
	return r.err
}

// start calls l.Run on a goroutine and returns once the lifecycle is
// Serving. The returned cancel ends Run's context, which starts the
// shutdown (trigger "context"). At cleanup, a sequence still running is
// forced, Run is waited for, and its result must be nil or a bare
// *core.ForcedError, anything else being a server failure, unless the
// test has checked the result itself with [run.wait].
func start(t testing.TB, l *lifecycle) (*run, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{done: make(chan struct{})}
	go func() { r.err = l.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		if !closed(l.Reached(core.Stopped)) {
			l.Force(errCleanup) // the test has made its checks: do not wait for its hold
		}
		select {
		case <-r.done:
		case <-time.After(hang):
			t.Errorf("Run: not returned within %v of the cleanup", hang)
			return
		}
		if _, ok := r.err.(*core.ForcedError); r.err != nil && !ok && !r.checked.Load() {
			t.Errorf("Run: got %v, want nil or a *core.ForcedError (a server failed)", r.err)
		}
	})
	recv(t, l.Reached(core.Serving), "Reached(Serving)")
	return r, cancel
}

// server is a real http.Server on 127.0.0.1:0 served by a lifecycle.
type server struct {
	srv      *http.Server
	addr     string
	url      string
	shutdown chan struct{} // closed when the drain calls Shutdown, at its end
}

// listen listens with l.ListenHTTP on 127.0.0.1:0 for h, with no probes
// handler. configure, if not nil, adjusts the server before ListenHTTP.
// The server serves once [start] has called Run.
func listen(t testing.TB, l *lifecycle, h http.Handler, configure func(*http.Server)) *server {
	t.Helper()
	return listenProbes(t, l, h, nil, configure)
}

// listenProbes is [listen] with probes serving the health endpoints.
func listenProbes(t testing.TB, l *lifecycle, h, probes http.Handler, configure func(*http.Server)) *server {
	t.Helper()
	s := &server{shutdown: make(chan struct{})}
	s.srv = &http.Server{Addr: "127.0.0.1:0", Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	if configure != nil {
		configure(s.srv)
	}
	// The drain calls http.Server.Shutdown, which calls these, once
	// every connection is closed.
	s.srv.RegisterOnShutdown(func() { close(s.shutdown) })
	if err := l.ListenHTTP(s.srv, probes); err != nil {
		t.Fatalf("ListenHTTP: %v", err)
	}
	s.addr = s.srv.Addr
	s.url = "http://" + s.addr
	return s
}

func h2c(s *http.Server) {
	s.Protocols = new(http.Protocols)
	s.Protocols.SetHTTP1(true)
	s.Protocols.SetUnencryptedHTTP2(true)
}

// recv waits for ch to deliver or close, failing after [hang].
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hang):
		t.Fatalf("%s: not within %v", what, hang)
		var zero T
		return zero
	}
}

// closed reports whether ch is closed (or delivers) right now.
func closed[T any](ch <-chan T) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// shutdownAsync runs l.Shutdown(ctx) on a goroutine.
func shutdownAsync(ctx context.Context, l *lifecycle) <-chan error {
	res := make(chan error, 1)
	go func() { res <- l.Shutdown(ctx) }()
	return res
}

// forced checks that err is a *core.ForcedError with the cause and the
// exact number abandoned.
func forced(t testing.TB, err error, cause error, abandoned int64) {
	t.Helper()
	var fe *core.ForcedError
	if !errors.As(err, &fe) || !errors.Is(fe.Cause, cause) || fe.Abandoned != abandoned {
		t.Fatalf("result: got %v, want ForcedError{Abandoned: %d, Cause: %v}", err, abandoned, cause)
	}
}

// parker is a handler body that reports its start and waits for release.
type parker struct {
	started chan struct{}
	release chan struct{}
}

func newParker(n int) *parker {
	return &parker{started: make(chan struct{}, n), release: make(chan struct{})}
}

func (p *parker) park() {
	p.started <- struct{}{}
	<-p.release
}

// waitStarted waits for n handlers to have started.
func (p *parker) waitStarted(t testing.TB, n int) {
	t.Helper()
	for i := range n {
		recv(t, p.started, "handler start "+strconv.Itoa(i+1))
	}
}

// quantiles returns the p50, p99 and max of ds, which it sorts.
func quantiles(ds []time.Duration) (p50, p99, max time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(q float64) time.Duration { return ds[int(q*float64(len(ds)-1))] }
	return at(0.50), at(0.99), ds[len(ds)-1]
}

// processEnv is the environment added for the server processes: a
// binary built with -race otherwise sleeps a second at exit (the race
// detector's atexit_sleep_ms), which would blur the exit times measured.
var processEnv = []string{"GORACE=atexit_sleep_ms=0"}

// waitIdle waits until nothing is in flight. The lifecycle's handler
// calls End after the handler has returned, so a handler's own "done"
// signal comes a moment before: there is no event to wait on, so it
// polls, bounded by [hang].
func waitIdle(t testing.TB, l *lifecycle) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for l.InFlight() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}
