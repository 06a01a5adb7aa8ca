package reliability_test

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

// quiet drops the lifecycle's log lines.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// hang bounds every wait that only guards against a hang: far above any
// expected duration, so it never decides a result on a loaded machine.
const hang = 30 * time.Second

func newLifecycle(t testing.TB, opts ...core.Option) *core.Lifecycle {
	t.Helper()
	l, err := core.New(append([]core.Option{core.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatalf("core.New: %v", err)
	}
	return l
}

// server is a real http.Server on 127.0.0.1:0 bound to a lifecycle.
type server struct {
	srv    *http.Server
	addr   string
	url    string
	served chan struct{} // closed when Serve has returned
	err    error         // Serve's result, once served is closed
}

// serve serves h (which the caller wraps in the lifecycle's middleware,
// or not) with a server bound to l. configure, if not nil, adjusts the
// server before it starts.
func serve(t testing.TB, l *core.Lifecycle, h http.Handler, configure func(*http.Server)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), served: make(chan struct{})}
	s.url = "http://" + s.addr
	s.srv = &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	if configure != nil {
		configure(s.srv)
	}
	if err := l.BindHTTP(s.srv); err != nil {
		t.Fatalf("BindHTTP: %v", err)
	}
	go func() { s.err = s.srv.Serve(ln); close(s.served) }()
	t.Cleanup(func() {
		_ = s.srv.Close()
		<-s.served
		if !errors.Is(s.err, http.ErrServerClosed) {
			t.Errorf("Serve: got %v, want ErrServerClosed", s.err)
		}
	})
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

// shutdownAsync runs l.Shutdown(ctx) on a goroutine.
func shutdownAsync(ctx context.Context, l *core.Lifecycle) <-chan error {
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
		t.Fatalf("Shutdown: got %v, want ForcedError{Abandoned: %d, Cause: %v}", err, abandoned, cause)
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

// waitIdle waits until nothing is in flight. The middleware calls End
// after the handler has returned, so a handler's own "done" signal comes
// a moment before: there is no event to wait on, so it polls, bounded by
// [hang].
func waitIdle(t testing.TB, l *core.Lifecycle) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for l.InFlight() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}
