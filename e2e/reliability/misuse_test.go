package reliability_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/internal/testutil"
)

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// kill sends sig to this process and returns once it has been delivered
// to the os/signal handlers. The guard also keeps a stray signal from
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

// TestShutdownBeforeServe shuts down a bound server that never served
// and never became ready: Shutdown returns nil at once (no hold: no load
// balancer routes to it), and a Serve called afterwards returns
// ErrServerClosed at once and closes its listener.
func TestShutdownBeforeServe(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	srv := &http.Server{Handler: l.Middleware(http.NotFoundHandler())}
	if err := l.BindHTTP(srv); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, shutdownAsync(t.Context(), l), "Shutdown before Serve"); err != nil {
		t.Fatalf("Shutdown before Serve: got %v, want nil", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if err := recv(t, served, "Serve after Shutdown"); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: got %v, want ErrServerClosed", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("dial after Serve returned: got a connection, want refused")
	}
	if l.MarkReady(); l.Ready() {
		t.Error("MarkReady after Shutdown: the service became ready")
	}
}

// TestShutdownWithEndedContextBeforeServing: a context that has already
// ended forces the sequence at once, even with nothing to drain, and the
// result says so.
func TestShutdownWithEndedContextBeforeServing(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := recv(t, shutdownAsync(ctx, l), "Shutdown with an ended context")
	forced(t, err, context.Canceled, 0)
}

// TestManyTriggersAtOnce starts the shutdown from everywhere at once
// while requests are in flight: 100 goroutines calling Shutdown, Run
// catching a signal, and 10 preStop hooks over HTTP. One sequence runs
// (one hold logged), every caller gets the same nil result, every preStop
// call is answered once the hold is over, every request is answered, and
// a later call returns the same result at once.
func TestManyTriggersAtOnce(t *testing.T) {
	const callers, prestops, parkedN = 100, 10, 20
	logs := &lockedBuffer{}
	l, err := core.New(core.WithLogger(slog.New(slog.NewTextHandler(logs, nil))),
		core.WithHold(200*time.Millisecond), core.WithDrainTimeout(hang), core.WithSignals(syscall.SIGUSR1))
	if err != nil {
		t.Fatal(err)
	}
	parked := newParker(parkedN)
	s := serve(t, l, l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parked.started <- struct{}{}
		<-l.Draining()
		_, _ = io.WriteString(w, "done")
	})), nil)
	admin := serve(t, l, l.PreStopHandler(), nil)
	runRes := make(chan error, 1)
	go func() { runRes <- l.Run(t.Context()) }()
	recv(t, l.Running(), "Run catching signals")
	l.MarkReady()
	c := testutil.NewClient(t)
	var answers []<-chan testutil.Response
	for range parkedN {
		answers = append(answers, testutil.DoAsync(c, http.MethodGet, s.url+"/poll"))
	}
	parked.waitStarted(t, parkedN)

	start := make(chan struct{})
	errs := make([]error, callers)
	pre := make([]testutil.Response, prestops)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { <-start; errs[i] = l.Shutdown(context.Background()) })
	}
	for i := range prestops {
		wg.Go(func() { <-start; pre[i] = testutil.Do(c, http.MethodGet, admin.url+"/prestop") })
	}
	close(start)
	kill(t, syscall.SIGUSR1)
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	recv(t, all, "every trigger returning")
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Shutdown call %d: got %v, want nil", i, err)
		}
	}
	if err := recv(t, runRes, "Run"); err != nil {
		t.Fatalf("Run: got %v, want nil (its signal joined the running sequence)", err)
	}
	for i, r := range pre {
		// A preStop call that lost the race to the admin server's own
		// drain is refused by its listener; one that got in is answered.
		if r.Err == nil && (r.Status != http.StatusOK || r.Body != "ok\n") {
			t.Errorf("preStop %d: got %d %q, want 200 ok", i, r.Status, r.Body)
		}
	}
	for i, ch := range answers {
		if r := recv(t, ch, "a parked answer"); r.Err != nil || r.Body != "done" {
			t.Fatalf("parked request %d: got %d %q %v, want 200 done", i, r.Status, r.Body, r.Err)
		}
	}
	if n := strings.Count(logs.String(), "lameduck: holding"); n != 1 {
		t.Errorf("holds logged: got %d, want 1 (one sequence)\n%s", n, logs.String())
	}
	if err := l.Shutdown(t.Context()); err != nil {
		t.Errorf("a later Shutdown: got %v, want nil", err)
	}
}

// TestShutdownFromHandlerStartsAsync is the pattern the Shutdown doc
// recommends to a handler: start it on a goroutine and return. The
// handler's own answer is delivered and the drain finishes by itself.
func TestShutdownFromHandlerStartsAsync(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Minute))
	res := make(chan error, 1)
	s := serve(t, l, l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() { res <- l.Shutdown(context.Background()) }()
		_, _ = io.WriteString(w, "bye")
	})), nil)
	l.MarkReady()
	if r := testutil.Do(testutil.NewClient(t), http.MethodGet, s.url+"/admin/quit"); r.Err != nil || r.Body != "bye" {
		t.Fatalf("handler starting the shutdown: got %d %q %v, want 200 bye", r.Status, r.Body, r.Err)
	}
	if err := recv(t, res, "Shutdown"); err != nil {
		t.Fatalf("Shutdown started by a handler: got %v, want nil", err)
	}
}

// TestSignalBeforeReady: a signal that Run catches before MarkReady shuts
// down without the hold (an hour here) and the service never becomes
// ready afterwards.
func TestSignalBeforeReady(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour), core.WithSignals(syscall.SIGUSR1))
	s := serve(t, l, l.Middleware(http.NotFoundHandler()), nil)
	runRes := make(chan error, 1)
	go func() { runRes <- l.Run(t.Context()) }()
	recv(t, l.Running(), "Run catching signals")
	kill(t, syscall.SIGUSR1)
	if err := recv(t, runRes, "Run after a signal before ready"); err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}
	l.MarkReady() // a slow startup finishing after the signal
	if l.Ready() || l.Phase() != core.Stopped {
		t.Errorf("after MarkReady: got phase %v ready %v, want stopped, not ready", l.Phase(), l.Ready())
	}
	recv(t, s.served, "Serve returning")
}

// TestRunContextEndsMidHold: once a signal has started the sequence, the
// end of Run's context does not cut the hold short nor force the drain;
// the requests in flight are answered and Run returns nil.
func TestRunContextEndsMidHold(t *testing.T) {
	const hold = 300 * time.Millisecond
	l := newLifecycle(t, core.WithHold(hold), core.WithDrainTimeout(hang), core.WithSignals(syscall.SIGUSR1))
	parked := newParker(1)
	s := serve(t, l, l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parked.started <- struct{}{}
		<-l.Draining()
		_, _ = io.WriteString(w, "done")
	})), nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runRes := make(chan error, 1)
	go func() { runRes <- l.Run(ctx) }()
	recv(t, l.Running(), "Run catching signals")
	l.MarkReady()
	answer := testutil.DoAsync(testutil.NewClient(t), http.MethodGet, s.url+"/poll")
	parked.waitStarted(t, 1)
	start := time.Now()
	kill(t, syscall.SIGUSR1)
	recv(t, l.Holding(), "Holding()")
	cancel()
	if err := recv(t, runRes, "Run"); err != nil {
		t.Fatalf("Run with its context ended mid-hold: got %v, want nil", err)
	}
	if took := time.Since(start); took < hold {
		t.Errorf("Run returned %v after the signal, before the %v hold was over", took, hold)
	}
	if r := recv(t, answer, "the parked answer"); r.Err != nil || r.Body != "done" {
		t.Fatalf("parked request: got %d %q %v, want 200 done", r.Status, r.Body, r.Err)
	}
}

// TestShutdownContextEndsMidHoldHTTP: the context of Shutdown ending
// mid-hold skips the rest of the hold and forces the drain at once, with
// exactly the requests still in flight abandoned.
func TestShutdownContextEndsMidHoldHTTP(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	stuck := newParker(3)
	defer close(stuck.release)
	s := serve(t, l, l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stuck.park()
	})), nil)
	l.MarkReady()
	c := testutil.NewClient(t)
	var answers []<-chan testutil.Response
	for range 3 {
		answers = append(answers, testutil.DoAsync(c, http.MethodGet, s.url+"/stuck"))
	}
	stuck.waitStarted(t, 3)
	ctx, cancel := context.WithCancelCause(t.Context())
	res := shutdownAsync(ctx, l)
	recv(t, l.Holding(), "Holding()")
	cause := errors.New("deadline of the platform")
	cancel(cause)
	forced(t, recv(t, res, "Shutdown"), cause, 3)
	for i, ch := range answers {
		if r := recv(t, ch, "an abandoned answer"); r.Err == nil {
			t.Errorf("abandoned request %d: got %d, want a transport error", i, r.Status)
		}
	}
}
