package reliability_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/internal/testutil"
)

// margin absorbs a loaded 2-core machine in the bounds that check that
// the drain ends at its timeout or grace rather than later. It is far
// below the timeouts a hang would run into.
const margin = 5 * time.Second

// onNew returns a ConnState hook that reports each new connection, to
// install before ListenHTTP chains it.
func onNew(ch chan<- time.Time) func(*http.Server) {
	return func(s *http.Server) {
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				ch <- time.Now()
			}
		}
	}
}

// TestNeverReadingClient asks for 64 MiB and never reads it: its handler
// blocks in Write once the socket buffers are full. The drain must be
// forced at its timeout with exactly that one request abandoned, and a
// well-behaved client in flight at the same time must get its answer.
func TestNeverReadingClient(t *testing.T) {
	const drainTimeout = 500 * time.Millisecond
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(drainTimeout))
	well := newParker(1)
	bigDone := make(chan error, 1)
	bigStarted := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		close(bigStarted)
		chunk := []byte(strings.Repeat("x", 1<<20))
		for range 64 {
			if _, err := w.Write(chunk); err != nil {
				bigDone <- err
				return
			}
		}
		bigDone <- nil
	})
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		well.park()
		_, _ = io.WriteString(w, "ok")
	})
	s := listen(t, l, mux, nil)
	start(t, l)

	hostile, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hostile.Close()
	if _, err := io.WriteString(hostile, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	recv(t, bigStarted, "the big handler")
	wellRes := testutil.DoAsync(testutil.NewClient(t), http.MethodGet, s.url+"/work")
	well.waitStarted(t, 1)

	start := time.Now()
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	close(well.release)
	if r := recv(t, wellRes, "the well-behaved answer"); r.Err != nil || r.Status != http.StatusOK || r.Body != "ok" {
		t.Fatalf("well-behaved client: got %d %q %v, want 200 ok", r.Status, r.Body, r.Err)
	}
	err = recv(t, res, "Shutdown")
	took := time.Since(start)
	forced(t, err, core.ErrDrainTimeout, 1)
	if took > drainTimeout+margin {
		t.Errorf("Shutdown took %v, want about the drain timeout %v", took, drainTimeout)
	}
	if err := recv(t, bigDone, "the blocked Write returning"); err == nil {
		t.Error("the big handler wrote 64 MiB to a client that never read, want a write error once closed")
	}
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight once the blocked handler returned: got %d, want 0", got)
	}
	t.Logf("never-reading client: drain forced after %v (timeout %v)", took.Round(time.Millisecond), drainTimeout)
}

// trickle writes a request head's start, then one byte every 100ms,
// never finishing it, until the server closes the connection or stop
// closes. It returns the error that ended it.
func trickle(conn net.Conn, stop <-chan struct{}) error {
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		return err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for range 600 { // at most a minute
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		if _, err := conn.Write([]byte("a")); err != nil {
			return err
		}
	}
	return errors.New("trickled for a minute")
}

// TestSlowlorisTrickle trickles a request head one byte per 100ms. The
// drain must close it [core.NewConnGrace] after its accept, finish by
// itself (nil, not forced) long before its timeout, and a well-behaved
// request in flight must get its answer.
func TestSlowlorisTrickle(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Minute))
	well := newParker(1)
	accepted := make(chan time.Time, 4)
	s := listen(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		well.park()
		_, _ = io.WriteString(w, "ok")
	}), onNew(accepted))
	start(t, l)
	wellRes := testutil.DoAsync(testutil.NewClient(t), http.MethodGet, s.url+"/work")
	recv(t, accepted, "the well-behaved connection")
	well.waitStarted(t, 1)

	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	acceptedAt := recv(t, accepted, "the slowloris connection")
	stop := make(chan struct{})
	defer close(stop)
	trickled := make(chan error, 1)
	go func() { trickled <- trickle(conn, stop) }()

	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	close(well.release)
	if r := recv(t, wellRes, "the well-behaved answer"); r.Err != nil || r.Status != http.StatusOK {
		t.Fatalf("well-behaved client: got %d %v, want 200", r.Status, r.Err)
	}
	if err := recv(t, res, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil (the slowloris closed at its grace)", err)
	}
	took := time.Since(acceptedAt)
	if took > core.NewConnGrace+margin {
		t.Errorf("drain ended %v after the slowloris was accepted, want about NewConnGrace (%v)", took, core.NewConnGrace)
	}
	if took < core.NewConnGrace {
		t.Errorf("drain ended %v after the slowloris was accepted, before its grace %v", took, core.NewConnGrace)
	}
	if err := recv(t, trickled, "the trickle to fail"); err == nil {
		t.Error("trickle: stopped without an error, want the server to have closed the connection")
	}
	t.Logf("slowloris: drain ended %v after its accept (grace %v)", took.Round(time.Millisecond), core.NewConnGrace)
}

// TestSlowClientFinishingDuringDrain sends the start of a head before the
// drain and its end during the drain, within its grace: the request must
// be served, with Connection: close, never dropped.
func TestSlowClientFinishingDuringDrain(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Minute))
	accepted := make(chan time.Time, 2)
	var served atomic.Int32
	s := listen(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
	}), onNew(accepted))
	start(t, l)
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /late HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	acceptedAt := recv(t, accepted, "the connection")
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	if _, err := io.WriteString(conn, "\r\n"); err != nil {
		t.Fatal(err)
	}
	late := time.Since(acceptedAt)
	_ = conn.SetReadDeadline(time.Now().Add(hang))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		if late >= core.NewConnGrace {
			t.Skipf("the head was finished %v after the accept, past the grace %v (loaded machine): %v", late, core.NewConnGrace, err)
		}
		// net/http drops, unanswered, a request it reads after Shutdown;
		// ListenHTTP's drain keeps the listener open until such heads are in.
		t.Fatalf("head finished %v after the accept, within the grace: got %v, want it served", late, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("request finished during the drain: got %d close %v, want 200 with Connection: close (served: the client had sent it)",
			resp.StatusCode, resp.Close)
	}
	if n := served.Load(); n != 1 {
		t.Errorf("handler calls: got %d, want 1", n)
	}
	if err := recv(t, res, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil", err)
	}
}

// TestConnectStormDuringDrain keeps 8 clients opening a new connection
// per request before, across and after the drain start, while a
// well-behaved request is in flight. Every storm request must end — a
// full 200 or 503, or a connection error, never a truncated body or a
// hang — the drain must finish by itself, and the well-behaved request
// must get its answer. Once the drain has closed the listener, connections
// are refused.
func TestConnectStormDuringDrain(t *testing.T) {
	const workers, perWorker = 8, 250
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Minute))
	well := newParker(1)
	mux := http.NewServeMux()
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		well.park()
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("/quick", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "quick") })
	s := listen(t, l, mux, nil)
	start(t, l)
	wellRes := testutil.DoAsync(testutil.NewClient(t), http.MethodGet, s.url+"/work")
	well.waitStarted(t, 1)

	var ok200, refused503, connErr, bad atomic.Int64
	var badMu sync.Mutex
	var badFirst string
	stop := make(chan struct{})
	refused := make(chan struct{}) // closed by the first dial the drain refuses
	var refusedOnce sync.Once
	var started sync.WaitGroup
	var wg sync.WaitGroup
	started.Add(workers)
	for range workers {
		wg.Go(func() {
			first := true
			for range perWorker {
				select {
				case <-stop:
					return
				default:
				}
				tr := &http.Transport{DisableKeepAlives: true}
				r := testutil.Do(&http.Client{Transport: tr, Timeout: hang}, http.MethodGet, s.url+"/quick")
				tr.CloseIdleConnections()
				switch {
				case r.Err == nil && r.Status == http.StatusOK && r.Body == "quick":
					ok200.Add(1)
				case r.Err == nil && r.Status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") == "1":
					refused503.Add(1)
				case r.Err != nil && r.Status == 0:
					connErr.Add(1)
					if closed(l.Reached(core.Draining)) {
						refusedOnce.Do(func() { close(refused) })
					}
				default:
					bad.Add(1)
					badMu.Lock()
					if badFirst == "" {
						badFirst = fmt.Sprintf("%d %q %v", r.Status, r.Body, r.Err)
					}
					badMu.Unlock()
				}
				if first {
					first = false
					started.Done()
				}
			}
		})
	}
	started.Wait() // every worker got an answer before the drain
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	recv(t, refused, "a dial refused: the listener closed")
	close(well.release)
	if r := recv(t, wellRes, "the well-behaved answer"); r.Err != nil || r.Status != http.StatusOK || r.Body != "ok" {
		t.Fatalf("well-behaved client: got %d %q %v, want 200 ok", r.Status, r.Body, r.Err)
	}
	if err := recv(t, res, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil", err)
	}
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	recv(t, done, "every storm client ending")
	if c, err := net.Dial("tcp", s.addr); err == nil {
		c.Close()
		t.Error("dial after the drain: got a connection, want refused")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after the drain: got %v, want connection refused", err)
	}
	if bad.Load() > 0 {
		t.Errorf("%d storm requests ended with a truncated or unexpected answer; first: %s", bad.Load(), badFirst)
	}
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight after the drain: got %d, want 0", got)
	}
	t.Logf("connect storm: %d answered 200, %d refused 503, %d connection errors", ok200.Load(), refused503.Load(), connErr.Load())
}

// TestHostileClientsAgainstExamples runs the example binaries: a
// slowloris connection and a request in flight when SIGTERM arrives.
// The process must exit 0 (drained, not forced) about NewConnGrace after
// the slowloris connected, far before its drain timeout, and the request
// must be answered. The hold (300ms) is what makes sure that the server
// has read the request before the drain: with no hold, a request written
// on a keep-alive connection as the drain starts can find it closed.
func TestHostileClientsAgainstExamples(t *testing.T) {
	for _, pkg := range []string{"./examples/chi", "./examples/gin"} {
		t.Run(pkg[len("./examples/"):], func(t *testing.T) {
			bin := testutil.BuildBinary(t, pkg)
			p := testutil.Start(t, bin, processEnv, "-addr", "127.0.0.1:0", "-hold", "300ms", "-drain-timeout", "20s", "-grace", "30s")
			addr := p.Addr(hang)
			p.WaitLog("lameduck: waiting for signals", hang)
			p.WaitLog("lameduck: serving", hang)
			c := testutil.NewClient(t)
			if r := testutil.Do(c, http.MethodGet, "http://"+addr+"/work?ms=0"); r.Err != nil || r.Status != http.StatusOK {
				t.Fatalf("warm-up: got %d %v", r.Status, r.Err)
			}
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			stop := make(chan struct{})
			defer close(stop)
			trickled := make(chan error, 1)
			go func() { trickled <- trickle(conn, stop) }()
			inflight := testutil.StartRequest(t, c, http.MethodGet, "http://"+addr+"/work?ms=500")

			sigterm := time.Now()
			p.Signal(syscall.SIGTERM)
			if r := recv(t, inflight, "the in-flight answer"); r.Err != nil || r.Status != http.StatusOK {
				t.Fatalf("in-flight request: got %d %v, want 200", r.Status, r.Err)
			}
			if code := p.Wait(hang); code != 0 {
				t.Fatalf("exit status: got %d, want 0", code)
			}
			took := time.Since(sigterm)
			if took > core.NewConnGrace+margin {
				t.Errorf("exit %v after SIGTERM with a slowloris connection, want about NewConnGrace (%v), far below the 20s drain timeout",
					took, core.NewConnGrace)
			}
			if err := recv(t, trickled, "the trickle to fail"); err == nil {
				t.Error("trickle: stopped without an error, want the connection closed")
			}
			t.Logf("%s with a slowloris connection: exit 0 after %v", pkg, took.Round(time.Millisecond))
		})
	}
}

// TestNeverReadingClientProcess: the server process must exit at its
// drain timeout (status 1, forced) although a client never reads its 64
// MiB, while a long poll in flight gets its answer.
func TestNeverReadingClientProcess(t *testing.T) {
	const drainTimeout = time.Second
	bin := testutil.BuildBinary(t, "./e2e/reliability/testdata/loadserver")
	p := testutil.Start(t, bin, processEnv, "-addr", "127.0.0.1:0", "-drain-timeout", drainTimeout.String(), "-park", "1")
	addr := p.Addr(hang)
	p.WaitLog("lameduck: serving", hang)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /big?mb=64 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	poll := testutil.StartRequest(t, testutil.NewClient(t), http.MethodGet, "http://"+addr+"/poll")
	p.WaitLog("all parked", hang)
	sigterm := time.Now()
	p.Signal(syscall.SIGTERM)
	if r := recv(t, poll, "the long poll's answer"); r.Err != nil || r.Status != http.StatusOK || r.Body != "done" {
		t.Fatalf("long poll: got %d %q %v, want 200 done", r.Status, r.Body, r.Err)
	}
	if code := p.Wait(hang); code != 1 {
		t.Fatalf("exit status: got %d, want 1 (forced at the drain timeout)", code)
	}
	took := time.Since(sigterm)
	if took < drainTimeout || took > drainTimeout+margin {
		t.Errorf("exit %v after SIGTERM, want about the drain timeout %v", took, drainTimeout)
	}
	if !strings.Contains(p.Stderr(), "abandoned=1 ") {
		t.Errorf("log: want abandoned=1; got:\n%s", p.Stderr())
	}
	t.Logf("never-reading client: server process exit 1 after %v (drain timeout %v)", took.Round(time.Millisecond), drainTimeout)
}
