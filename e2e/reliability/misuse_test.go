package reliability_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"github.com/lameduck/lameduck/health"
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

// logTo returns the option that logs to a new buffer, and the buffer.
func logTo() (core.Option, *lockedBuffer) {
	logs := &lockedBuffer{}
	return core.WithLogger(slog.New(slog.NewTextHandler(logs, nil))), logs
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

// refused reports whether nothing accepts connections at addr.
func refused(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
		return false
	}
	return true
}

// TestShutdownBeforeRun shuts down a lifecycle with a listening server
// that Run never served: Shutdown returns nil at once (no hold: the
// service never became ready, no load balancer routes to it) and closes
// the listener; servers can no longer be added; a Run called afterwards
// returns the same nil at once without serving or becoming ready.
func TestShutdownBeforeRun(t *testing.T) {
	opt, logs := logTo()
	l := newLifecycle(t, opt, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	h, err := health.New(l.Lifecycle, health.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	s := listen(t, l, http.NotFoundHandler(), nil)
	if err := recv(t, shutdownAsync(t.Context(), l), "Shutdown before Run"); err != nil {
		t.Fatalf("Shutdown before Run: got %v, want nil", err)
	}
	if p := l.Phase(); p != core.Stopped {
		t.Errorf("phase after Shutdown: got %v, want %v", p, core.Stopped)
	}
	if !refused(s.addr) {
		t.Error("dial after Shutdown: got a connection, want refused (the listener closed)")
	}
	late := &http.Server{Addr: "127.0.0.1:0"}
	if err := l.ListenHTTP(late, nil); !errors.Is(err, core.ErrShuttingDown) {
		t.Errorf("ListenHTTP after Shutdown: got %v, want ErrShuttingDown", err)
	}
	if late.Addr != "127.0.0.1:0" {
		t.Errorf("ListenHTTP after Shutdown: it listened on %s", late.Addr)
	}
	if err := l.Add(newFakeServer()); !errors.Is(err, core.ErrShuttingDown) {
		t.Errorf("Add after Shutdown: got %v, want ErrShuttingDown", err)
	}
	res := make(chan error, 1)
	go func() { res <- l.Run(t.Context()) }()
	if err := recv(t, res, "Run after Shutdown"); err != nil {
		t.Fatalf("Run after Shutdown: got %v, want nil (the result of the shutdown)", err)
	}
	if h.Ready(t.Context()) {
		t.Error("Ready after Run after Shutdown: got true")
	}
	if strings.Contains(logs.String(), "lameduck: serving") || !strings.Contains(logs.String(), "hold=0s") {
		t.Errorf("log: want no \"lameduck: serving\" and a hold of 0s; got:\n%s", logs.String())
	}
	if !refused(s.addr) {
		t.Error("dial after Run: got a connection, want refused (Run served nothing)")
	}
}

// TestForceBeforeRun: what was "a signal before ready" (a signal now only
// reaches Run, which marks the service ready as it catches them) is, in
// the new API, the shutdown ordered before Run: Force before Run skips
// the hold, closes the listening server and makes the result a
// *ForcedError with its cause, which Shutdown and a later Run return at
// once, Run without serving.
func TestForceBeforeRun(t *testing.T) {
	opt, logs := logTo()
	l := newLifecycle(t, opt, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	s := listen(t, l, http.NotFoundHandler(), nil)
	cause := errors.New("startup failed")
	l.Force(cause)
	forced(t, recv(t, shutdownAsync(t.Context(), l), "Shutdown after Force"), cause, 0)
	res := make(chan error, 1)
	go func() { res <- l.Run(t.Context()) }()
	forced(t, recv(t, res, "Run after Force"), cause, 0)
	if strings.Contains(logs.String(), "lameduck: serving") {
		t.Errorf("log: Run after Force served; got:\n%s", logs.String())
	}
	if !refused(s.addr) {
		t.Error("dial after Run: got a connection, want refused")
	}
}

// TestShutdownWithEndedContext is the trap of issue 12: the usual
// "ctx, stop := signal.NotifyContext(…); <-ctx.Done(); lc.Shutdown(ctx)"
// calls Shutdown with a context that has already ended. Shutdown returns
// ctx's error at once, but the sequence skips nothing: requests are still
// served during the whole hold, the drain waits for the one in flight,
// and the result is nil (drained), not forced.
func TestShutdownWithEndedContext(t *testing.T) {
	const hold = time.Second
	l := newLifecycle(t, core.WithHold(hold), core.WithDrainTimeout(hang))
	parked := newParker(1)
	mux := http.NewServeMux()
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		parked.started <- struct{}{}
		<-l.Reached(core.Draining)
		_, _ = io.WriteString(w, "done")
	})
	mux.HandleFunc("/quick", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "quick") })
	s := listen(t, l, mux, nil)
	rn, _ := start(t, l)
	c := testutil.NewClient(t)
	poll := testutil.DoAsync(c, http.MethodGet, s.url+"/poll")
	parked.waitStarted(t, 1)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	called := time.Now()
	if err := l.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with an ended ctx: got %v, want context.Canceled at once", err)
	}
	if closed(l.Reached(core.Draining)) {
		t.Fatalf("Shutdown with an ended ctx returned after the drain began, want at once, in the hold")
	}
	if r := testutil.Do(c, http.MethodGet, s.url+"/quick"); r.Err != nil || r.Status != http.StatusOK || r.Body != "quick" || !r.Close {
		t.Errorf("request during the hold: got %d %q close=%v %v, want 200 quick with Connection: close", r.Status, r.Body, r.Close, r.Err)
	}
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	if held := time.Since(called); held < hold {
		t.Errorf("the drain began %v after Shutdown, before the %v hold was over", held, hold)
	}
	if r := recv(t, poll, "the parked answer"); r.Err != nil || r.Body != "done" {
		t.Fatalf("parked request: got %d %q %v, want 200 done", r.Status, r.Body, r.Err)
	}
	if err := rn.wait(t); err != nil {
		t.Fatalf("Run: got %v, want nil (drained, not forced)", err)
	}
	if err := l.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown once the sequence finished: got %v, want its result, nil", err)
	}
}

// TestManyTriggersAtOnce starts the shutdown from everywhere at once
// while requests are in flight: 100 goroutines calling Shutdown, Run
// catching a signal, and 10 preStop hooks over HTTP. One sequence runs
// (one hold logged), every caller gets the same nil result, every preStop
// call is answered once the hold is over, every request is answered, and
// a later call returns the same result at once.
func TestManyTriggersAtOnce(t *testing.T) {
	const callers, prestops, parkedN = 100, 10, 20
	opt, logs := logTo()
	l := newLifecycle(t, opt, core.WithHold(200*time.Millisecond), core.WithDrainTimeout(hang), core.WithSignals(syscall.SIGUSR1))
	parked := newParker(parkedN)
	s := listen(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parked.started <- struct{}{}
		<-l.Reached(core.Draining)
		_, _ = io.WriteString(w, "done")
	}), nil)
	admin := listen(t, l, l.PreStopHandler(), nil)
	rn, _ := start(t, l)
	c := testutil.NewClient(t)
	var answers []<-chan testutil.Response
	for range parkedN {
		answers = append(answers, testutil.DoAsync(c, http.MethodGet, s.url+"/poll"))
	}
	parked.waitStarted(t, parkedN)

	begin := make(chan struct{})
	errs := make([]error, callers)
	pre := make([]testutil.Response, prestops)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { <-begin; errs[i] = l.Shutdown(context.Background()) })
	}
	for i := range prestops {
		wg.Go(func() { <-begin; pre[i] = testutil.Do(c, http.MethodGet, admin.url+"/prestop") })
	}
	close(begin)
	kill(t, syscall.SIGUSR1)
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	recv(t, all, "every trigger returning")
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Shutdown call %d: got %v, want nil", i, err)
		}
	}
	if err := rn.wait(t); err != nil {
		t.Fatalf("Run: got %v, want nil (its signal joined the running sequence)", err)
	}
	for i, r := range pre {
		// A preStop call that lost the race to the admin server's own
		// drain is refused (by its listener, or 503 by the lifecycle's
		// handler); one that got in is answered.
		if r.Err == nil && r.Status != http.StatusServiceUnavailable && (r.Status != http.StatusOK || r.Body != "ok\n") {
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

// TestShutdownFromHandler: a handler that starts the shutdown. Started on
// a goroutine (the pattern the Shutdown doc recommends), or called in the
// handler with a context that bounds the wait — the handler's own request
// is one the drain waits for, and Shutdown returns the context's error
// instead of waiting for itself. Either way the handler's answer is
// delivered and the drain finishes by itself: Run returns nil.
func TestShutdownFromHandler(t *testing.T) {
	for _, tc := range []struct {
		name     string
		shutdown func(l *lifecycle) error
		want     error
	}{
		{"on a goroutine", func(l *lifecycle) error {
			go l.Shutdown(context.Background())
			return nil
		}, nil},
		{"bounded wait", func(l *lifecycle) error {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			return l.Shutdown(ctx)
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Minute))
			res := make(chan error, 1)
			s := listen(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				res <- tc.shutdown(l)
				_, _ = io.WriteString(w, "bye")
			}), nil)
			rn, _ := start(t, l)
			if r := testutil.Do(testutil.NewClient(t), http.MethodGet, s.url+"/admin/quit"); r.Err != nil || r.Body != "bye" {
				t.Fatalf("handler starting the shutdown: got %d %q %v, want 200 bye", r.Status, r.Body, r.Err)
			}
			if err := recv(t, res, "the handler's Shutdown"); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Shutdown in the handler: got %v, want %v", err, tc.want)
			}
			if err := rn.wait(t); err != nil {
				t.Fatalf("Run: got %v, want nil (drained by itself)", err)
			}
		})
	}
}

// TestRunContextEndsMidHold: once a signal has started the sequence, the
// end of Run's context does not cut the hold short nor force the drain;
// the requests in flight are answered and Run returns nil.
func TestRunContextEndsMidHold(t *testing.T) {
	const hold = 300 * time.Millisecond
	l := newLifecycle(t, core.WithHold(hold), core.WithDrainTimeout(hang), core.WithSignals(syscall.SIGUSR1))
	parked := newParker(1)
	s := listen(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parked.started <- struct{}{}
		<-l.Reached(core.Draining)
		_, _ = io.WriteString(w, "done")
	}), nil)
	rn, cancel := start(t, l)
	answer := testutil.DoAsync(testutil.NewClient(t), http.MethodGet, s.url+"/poll")
	parked.waitStarted(t, 1)
	begin := time.Now()
	kill(t, syscall.SIGUSR1)
	recv(t, l.Reached(core.Holding), "Reached(Holding)")
	cancel()
	if err := rn.wait(t); err != nil {
		t.Fatalf("Run with its context ended mid-hold: got %v, want nil", err)
	}
	if took := time.Since(begin); took < hold {
		t.Errorf("Run returned %v after the signal, before the %v hold was over", took, hold)
	}
	if r := recv(t, answer, "the parked answer"); r.Err != nil || r.Body != "done" {
		t.Fatalf("parked request: got %d %q %v, want 200 done", r.Status, r.Body, r.Err)
	}
}

// TestShutdownContextEndsMidHold: the context of Shutdown ending mid-hold
// ends the wait, not the sequence: Shutdown returns the context's error
// at once while the hold goes on with the requests still in flight. The
// force is its own call: Force(cause) skips the rest of the hold (an hour
// here) and closes the servers with exactly the requests still in flight
// abandoned; Run and a later Shutdown report the cause.
func TestShutdownContextEndsMidHold(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	stuck := newParker(3)
	defer close(stuck.release)
	s := listen(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stuck.park()
	}), nil)
	rn, _ := start(t, l)
	c := testutil.NewClient(t)
	var answers []<-chan testutil.Response
	for range 3 {
		answers = append(answers, testutil.DoAsync(c, http.MethodGet, s.url+"/stuck"))
	}
	stuck.waitStarted(t, 3)
	ctx, cancel := context.WithCancelCause(t.Context())
	res := shutdownAsync(ctx, l)
	recv(t, l.Reached(core.Holding), "Reached(Holding)")
	cancel(errors.New("deadline of the platform"))
	if err := recv(t, res, "Shutdown"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with its ctx ended mid-hold: got %v, want context.Canceled", err)
	}
	if p := l.Phase(); p != core.Holding {
		t.Fatalf("phase once Shutdown's ctx ended: got %v, want %v (the hold goes on)", p, core.Holding)
	}
	if got := l.InFlight(); got != 3 {
		t.Fatalf("in flight once Shutdown's ctx ended: got %d, want 3", got)
	}
	cause := errors.New("the platform's deadline")
	l.Force(cause)
	forced(t, rn.wait(t), cause, 3)
	forced(t, l.Shutdown(context.Background()), cause, 3)
	for i, ch := range answers {
		if r := recv(t, ch, "an abandoned answer"); r.Err == nil {
			t.Errorf("abandoned request %d: got %d, want a transport error", i, r.Status)
		}
	}
}

// TestListenAfterShutdownBegan: a server listened for once the shutdown
// has started would never be held nor drained: ListenHTTP and Add return
// ErrShuttingDown, and nothing listens.
func TestListenAfterShutdownBegan(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	listen(t, l, http.NotFoundHandler(), nil)
	rn, _ := start(t, l)
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Holding), "Reached(Holding)")
	free := testutil.FreeAddr(t)
	late := &http.Server{Addr: free, Handler: http.NotFoundHandler()}
	if err := l.ListenHTTP(late, nil); !errors.Is(err, core.ErrShuttingDown) {
		t.Fatalf("ListenHTTP during the hold: got %v, want ErrShuttingDown", err)
	}
	if !refused(free) {
		t.Errorf("ListenHTTP during the hold: %s accepts connections", free)
	}
	if err := l.Add(newFakeServer()); !errors.Is(err, core.ErrShuttingDown) {
		t.Errorf("Add during the hold: got %v, want ErrShuttingDown", err)
	}
	l.Force(errCleanup)
	forced(t, recv(t, res, "Shutdown"), errCleanup, 0)
	forced(t, rn.wait(t), errCleanup, 0)
}

// TestConnStateReplacedAfterListen: srv.ConnState set after ListenHTTP
// replaces the hook the exact drain counts connections with. The drain
// detects it, warns, and falls back to http.Server.Shutdown's poll: 50
// HTTP/1 requests in flight across the drain, each on a connection of its
// own and answered after the drain began, are all answered, and Run
// returns nil.
func TestConnStateReplacedAfterListen(t *testing.T) {
	const n = 50
	opt, logs := logTo()
	l := newLifecycle(t, opt, core.WithHold(0), core.WithDrainTimeout(hang))
	parked := newParker(n)
	s := listen(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parked.started <- struct{}{}
		<-l.Reached(core.Draining)
		time.Sleep(100 * time.Millisecond) // answer while Shutdown polls
		_, _ = io.WriteString(w, "done")
	}), nil)
	var states sync.Map
	s.srv.ConnState = func(c net.Conn, st http.ConnState) { states.Store(c, st) } // the misuse
	rn, cancel := start(t, l)
	tr := &http.Transport{MaxConnsPerHost: n, MaxIdleConnsPerHost: n}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: time.Minute}
	answers := make([]<-chan testutil.Response, n)
	for i := range n {
		answers[i] = testutil.DoAsync(c, http.MethodGet, s.url+"/poll")
	}
	parked.waitStarted(t, n)
	conns := 0
	states.Range(func(any, any) bool { conns++; return true })
	if conns != n {
		t.Fatalf("connections seen by the replaced ConnState: got %d, want %d", conns, n)
	}
	cancel() // Run's context: the shutdown starts
	for i, ch := range answers {
		if r := recv(t, ch, "an answer across the drain"); r.Err != nil || r.Status != http.StatusOK || r.Body != "done" {
			t.Fatalf("request %d in flight across the drain: got %d %q %v, want 200 done", i, r.Status, r.Body, r.Err)
		}
	}
	if err := rn.wait(t); err != nil {
		t.Fatalf("Run: got %v, want nil (drained by Shutdown's poll)", err)
	}
	if want := "srv.ConnState was replaced after ListenHTTP"; !strings.Contains(logs.String(), want) {
		t.Errorf("log: want a warning %q; got:\n%s", want, logs.String())
	}
	if !strings.Contains(logs.String(), "drained=true") {
		t.Errorf("log: want drained=true; got:\n%s", logs.String())
	}
	if !refused(s.addr) {
		t.Error("dial after the drain: got a connection, want refused")
	}
}

// fakeServer is a [core.Server] of a test's own: Serve blocks until the
// test makes it fail or the drain or close ends it.
type fakeServer struct {
	serving chan struct{} // closed once Serve has been called
	fail    chan error    // Serve returns what it receives
	stop    chan struct{} // closed by Drain or Close
	once    sync.Once
	mu      sync.Mutex
	calls   []string // Serve, Hold, Drain, Close, in order
}

func newFakeServer() *fakeServer {
	return &fakeServer{serving: make(chan struct{}), fail: make(chan error, 1), stop: make(chan struct{})}
}

func (f *fakeServer) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeServer) Calls() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

func (f *fakeServer) Serve() error {
	f.record("Serve")
	close(f.serving)
	select {
	case err := <-f.fail:
		return err
	case <-f.stop:
		return nil
	}
}

func (f *fakeServer) Hold() { f.record("Hold") }

func (f *fakeServer) Drain(context.Context) error {
	f.record("Drain")
	f.once.Do(func() { close(f.stop) })
	return nil
}

func (f *fakeServer) Close() error {
	f.record("Close")
	f.once.Do(func() { close(f.stop) })
	return nil
}

// TestListenPortInUse is the first trap of issue 12: a port in use is an
// error from ListenHTTP, before anything runs, and the lifecycle does not
// move: it stays Starting, never ready. (TestLoadserverPortInUse checks
// the process: a non-zero exit before ready.)
func TestListenPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	l := newLifecycle(t)
	h := http.NewServeMux()
	srv := &http.Server{Addr: taken.Addr().String(), Handler: h}
	err = l.ListenHTTP(srv, nil)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("ListenHTTP on a port in use: got %v, want an error wrapping EADDRINUSE", err)
	}
	if p := l.Phase(); p != core.Starting {
		t.Errorf("phase after the listen error: got %v, want %v", p, core.Starting)
	}
	if closed(l.Reached(core.Serving)) {
		t.Error("Reached(Serving) closed after a listen error")
	}
	if srv.Handler != http.Handler(h) || srv.ConnState != nil {
		t.Error("ListenHTTP that failed changed srv.Handler or srv.ConnState")
	}
}

// TestLoadserverPortInUse: the server process started on a port in use
// exits non-zero (4, cannot listen) before it is ready or listening.
func TestLoadserverPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	bin := testutil.BuildBinary(t, "./e2e/reliability/testdata/loadserver")
	p := testutil.Start(t, bin, processEnv, "-addr", taken.Addr().String())
	if code := p.Wait(hang); code != 4 {
		t.Fatalf("exit status on a port in use: got %d, want 4", code)
	}
	stderr := p.Stderr()
	if !strings.Contains(stderr, "address already in use") {
		t.Errorf("stderr: want the listen error; got:\n%s", stderr)
	}
	for _, never := range []string{"msg=listening", "lameduck: listening", "lameduck: serving", "lameduck: waiting for signals"} {
		if strings.Contains(stderr, never) {
			t.Errorf("stderr: got %q on a port in use; stderr:\n%s", never, stderr)
		}
	}
}

// TestServeFailureAfterStart is the second trap of issue 12: a server
// whose Serve fails once Run has started it starts the shutdown, and Run
// returns that failure — not nil, not a *ForcedError — after the whole
// sequence: readiness went from Serving to Holding, the hold was kept,
// the other servers were drained (a request in flight answered, the
// listener closed), and the failed server was held and drained too. A
// Serve that returns nil early is a failure as well.
func TestServeFailureAfterStart(t *testing.T) {
	boom := errors.New("serve: boom")
	for _, tc := range []struct {
		name string
		err  error // what Serve returns
	}{
		{"error", boom},
		{"nil", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const hold = 200 * time.Millisecond
			opt, logs := logTo()
			l := newLifecycle(t, opt, core.WithHold(hold), core.WithDrainTimeout(hang))
			h, err := health.New(l.Lifecycle, health.WithLogger(quiet))
			if err != nil {
				t.Fatal(err)
			}
			f := newFakeServer()
			if err := l.Add(f); err != nil {
				t.Fatal(err)
			}
			parked := newParker(1)
			s := listen(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				parked.started <- struct{}{}
				<-l.Reached(core.Draining)
				_, _ = io.WriteString(w, "done")
			}), nil)
			rn, _ := start(t, l)
			recv(t, f.serving, "the fake server's Serve")
			if !h.Ready(t.Context()) {
				t.Fatal("Ready while serving: got false")
			}
			poll := testutil.DoAsync(testutil.NewClient(t), http.MethodGet, s.url+"/poll")
			parked.waitStarted(t, 1)

			failed := time.Now()
			f.fail <- tc.err
			recv(t, l.Reached(core.Holding), "Reached(Holding) after the failure")
			if h.Ready(t.Context()) {
				t.Error("Ready once a server failed: got true")
			}
			if r := recv(t, poll, "the parked answer"); r.Err != nil || r.Body != "done" {
				t.Fatalf("request in flight at the failure: got %d %q %v, want 200 done", r.Status, r.Body, r.Err)
			}
			err = rn.wait(t)
			if err == nil {
				t.Fatal("Run after a server failed: got nil, want the failure")
			}
			var fe *core.ForcedError
			if errors.As(err, &fe) {
				t.Fatalf("Run after a server failed: got %v, want the failure, not forced", err)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("Run after a server failed: got %v, want %v", err, tc.err)
			}
			if took := time.Since(failed); took < hold {
				t.Errorf("Run returned %v after the failure, before the %v hold was over", took, hold)
			}
			if got, want := f.Calls(), "Serve,Hold,Drain"; got != want {
				t.Errorf("calls of the failed server: got %s, want %s", got, want)
			}
			recv(t, s.shutdown, "the HTTP listener closed")
			if !refused(s.addr) {
				t.Error("dial after Run: got a connection, want refused")
			}
			for _, want := range []string{"a server failed", "trigger=failure", "drained=true"} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log: want %q; got:\n%s", want, logs.String())
				}
			}
			if err := l.Shutdown(t.Context()); err == nil || fmt.Sprint(err) != fmt.Sprint(rn.err) {
				t.Errorf("a later Shutdown: got %v, want Run's result %v", err, rn.err)
			}
		})
	}
}
