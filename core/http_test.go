package core_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/internal/testutil"
)

// testServer is a real http.Server on 127.0.0.1:0 served by a lifecycle.
type testServer struct {
	srv    *http.Server
	addr   string
	url    string
	states chan connEvent // every ConnState change
}

type connEvent struct {
	conn  net.Conn
	state http.ConnState
}

// startServer serves h with l.ListenHTTP and starts l.Run, returning
// once the service is ready. configure, if not nil, adjusts the server
// before it listens.
func startServer(t *testing.T, l *core.Lifecycle, h http.Handler, configure func(*http.Server)) *testServer {
	t.Helper()
	ts := &testServer{states: make(chan connEvent, 1024)}
	ts.srv = &http.Server{
		Addr:     "127.0.0.1:0",
		Handler:  h,
		ErrorLog: log.New(io.Discard, "", 0),
		ConnState: func(c net.Conn, s http.ConnState) {
			select {
			case ts.states <- connEvent{c, s}:
			default:
			}
		},
	}
	if configure != nil {
		configure(ts.srv)
	}
	if err := l.ListenHTTP(ts.srv, nil); err != nil {
		t.Fatalf("ListenHTTP: %v", err)
	}
	ts.addr = ts.srv.Addr
	ts.url = "http://" + ts.addr
	run(t, l)
	return ts
}

// waitState waits for the next connection to reach state s.
func (ts *testServer) waitState(t *testing.T, s http.ConnState) net.Conn {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-ts.states:
			if e.state == s {
				return e.conn
			}
		case <-deadline:
			t.Fatalf("no connection reached %v within 10s", s)
			return nil
		}
	}
}

// gate is a handler that signals its start and waits for release.
type gate struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{started: make(chan struct{}, 16), release: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func TestHTTPHoldSendsConnectionClose(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), nil)
	c := testutil.NewClient(t)
	if r := testutil.Do(c, http.MethodGet, ts.url+"/work"); r.Err != nil || r.Status != 200 || r.Close {
		t.Fatalf("serving: got %d %v close %v, want 200 and keep-alive", r.Status, r.Err, r.Close)
	}
	ctx, cancel := context.WithCancel(t.Context())
	res := shutdownAsync(ctx, l)
	recv(t, l.Reached(core.Holding), "Holding()")
	r := testutil.Do(c, http.MethodGet, ts.url+"/work")
	if r.Err != nil || r.Status != 200 || r.Body != "ok" {
		t.Fatalf("holding: got %d %q %v, want 200 ok", r.Status, r.Body, r.Err)
	}
	if !r.Close {
		t.Errorf("holding: got a keep-alive response, want Connection: close")
	}
	cancel()
	if err := recv(t, res, "Shutdown"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with its ctx cancelled mid-hold: got %v, want context.Canceled", err)
	}
	if l.Phase() != core.Holding {
		t.Fatalf("phase after Shutdown's ctx ended: got %v, want the hold going on", l.Phase())
	}
	l.Force(errors.New("end the hour-long hold"))
	recv(t, l.Reached(core.Stopped), "Reached(Stopped)")
	// The drain closed the listener.
	if conn, err := net.Dial("tcp", ts.addr); err == nil {
		conn.Close()
		t.Errorf("dial once stopped: got a connection, want refused")
	}
}

func TestHTTPInFlightGetsFullBody(t *testing.T) {
	const size, chunk = 1 << 20, 64 << 10
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	g := newGate()
	ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.started <- struct{}{}
		<-g.release
		f := w.(http.Flusher)
		buf := []byte(strings.Repeat("x", chunk))
		for range size / chunk {
			if _, err := w.Write(buf); err != nil {
				return
			}
			f.Flush()
		}
	}), nil)
	resc := testutil.DoAsync(testutil.NewClient(t), http.MethodGet, ts.url+"/big")
	recv(t, g.started, "handler start")
	shut := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Draining), "Draining()")
	g.open() // write the body only once the drain has started
	r := recv(t, resc, "response")
	if r.Err != nil || r.Status != 200 {
		t.Fatalf("in-flight request: got %d %v, want 200", r.Status, r.Err)
	}
	if len(r.Body) != size {
		t.Fatalf("body: got %d bytes, want %d", len(r.Body), size)
	}
	// The drain finishes by itself once the response is written: a nil
	// result, not a ForcedError (the drain timeout is an hour).
	if err := recv(t, shut, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil", err)
	}
}

func TestHTTPStuckHandlerForced(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(200*time.Millisecond))
	g := newGate()
	defer g.open()
	ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.started <- struct{}{}
		<-g.release
	}), nil)
	resc := testutil.DoAsync(testutil.NewClient(t), http.MethodGet, ts.url+"/stuck")
	recv(t, g.started, "handler start")
	err := l.Shutdown(t.Context())
	var fe *core.ForcedError
	if !errors.As(err, &fe) || fe.Abandoned != 1 || fe.Cause != core.ErrDrainTimeout {
		t.Fatalf("Shutdown: got %v, want ForcedError{Abandoned: 1, Cause: ErrDrainTimeout}", err)
	}
	if r := recv(t, resc, "response of the abandoned request"); r.Err == nil {
		t.Errorf("abandoned request: got status %d, want a transport error (connection closed)", r.Status)
	}
}

func TestHTTPPanickingHandlerDoesNotLeak(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	}), nil)
	if r := testutil.Do(testutil.NewClient(t), http.MethodGet, ts.url+"/panic"); r.Err == nil {
		t.Fatalf("panicking handler: got status %d, want the connection dropped", r.Status)
	}
	if got := l.InFlight(); got != 0 {
		t.Fatalf("InFlight() after a panic: got %d, want 0", got)
	}
	if err := recv(t, shutdownAsync(t.Context(), l), "Shutdown"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil", err)
	}
}

func TestHTTPHijackedConnection(t *testing.T) {
	for _, tc := range []struct {
		name          string
		watchDraining bool
	}{{"handler watches Draining", true}, {"handler ignores the drain", false}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(200*time.Millisecond))
			g := newGate()
			defer g.open()
			ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("Hijack: %v", err)
					return
				}
				defer conn.Close()
				g.started <- struct{}{}
				if tc.watchDraining {
					select {
					case <-l.Reached(core.Draining):
					case <-g.release:
					}
				} else {
					<-g.release
				}
			}), nil)
			conn, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			recv(t, g.started, "hijacking handler")
			err = recv(t, shutdownAsync(t.Context(), l), "Shutdown")
			if tc.watchDraining {
				if err != nil {
					t.Fatalf("Shutdown: got %v, want nil", err)
				}
				return
			}
			var fe *core.ForcedError
			if !errors.As(err, &fe) || fe.Abandoned != 1 {
				t.Fatalf("Shutdown: got %v, want a ForcedError with 1 abandoned at the drain timeout", err)
			}
		})
	}
}

func TestHTTPIdleKeepAliveClosedAtDrain(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), nil)
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "GET /work HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Close {
		t.Fatal("serving: the server asked to close, want keep-alive")
	}
	ts.waitState(t, http.StateIdle)
	// An idle keep-alive connection must not hold the hour-long drain.
	if err := recv(t, shutdownAsync(t.Context(), l), "Shutdown with an idle connection"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil", err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("read on the idle connection after the drain: got %v, want EOF (closed)", err)
	}
}

func TestHTTPSlowlorisBoundedByNewConnGrace(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	ts := startServer(t, l, http.NotFoundHandler(), nil)
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	ts.waitState(t, http.StateNew)
	start := time.Now()
	err = recv(t, shutdownAsync(t.Context(), l), "Shutdown with a slowloris connection")
	if err != nil {
		t.Fatalf("Shutdown: got %v, want nil (the connection closed at its grace)", err)
	}
	// The connection is closed NewConnGrace after its accept; 5s on top
	// only absorbs a loaded machine, far below the hour of drain timeout.
	if d := time.Since(start); d > core.NewConnGrace+5*time.Second {
		t.Errorf("drain with a slowloris connection took %v, want about NewConnGrace (%v)", d, core.NewConnGrace)
	}
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read on the slowloris connection: got %v, want EOF", err)
	}
}

func h2cServer(s *http.Server) {
	s.Protocols = new(http.Protocols)
	s.Protocols.SetHTTP1(true)
	s.Protocols.SetUnencryptedHTTP2(true)
}

func h2cClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// TestHTTP2HoldMovesTheConnectionOnce checks that the hold asks an
// HTTP/2 client to leave its connection with a GOAWAY that refuses
// nothing, once: the client opens one new connection for its next
// requests, and that one is not torn down during the hold (a
// one-step GOAWAY after each response would refuse the streams the client
// sent in the same round trip). At the drain the new connection gets the
// graceful GOAWAY, which closes it once idle: the drain does not wait for
// it.
func TestHTTP2HoldMovesTheConnectionOnce(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}), h2cServer)
	c := h2cClient(t)

	var reused []bool
	var mu sync.Mutex
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		mu.Lock()
		reused = append(reused, info.Reused)
		mu.Unlock()
	}}
	do := func(what string) {
		t.Helper()
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, ts.url+"/work", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "HTTP/2.0" {
			t.Fatalf("%s: got %d %q %v, want 200 over HTTP/2.0", what, resp.StatusCode, body, err)
		}
	}
	do("serving")
	ts.waitState(t, http.StateNew)
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Holding), "Reached(Holding)")
	// Until the client has read the GOAWAY, its requests still go to the
	// first connection, and are served; then it opens one new connection.
	last := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return reused[len(reused)-1]
	}
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("the client still uses its first connection after 1,000 requests in the hold")
		}
		if do("holding"); !last() {
			break
		}
	}
	for range 3 {
		do("holding") // on the new connection, which stays open
	}
	mu.Lock()
	got := append([]bool(nil), reused...)
	mu.Unlock()
	if news := len(got) - len(slices.DeleteFunc(slices.Clone(got), func(r bool) bool { return !r })); news != 2 || !slices.Equal(got[len(got)-4:], []bool{false, true, true, true}) {
		t.Fatalf("GotConn Reused: got %v, want the first connection, then one new connection through the hold", got)
	}
	second := ts.waitState(t, http.StateNew)
	for pending := true; pending; {
		select {
		case e := <-ts.states:
			if e.conn == second && e.state == http.StateClosed {
				t.Fatal("the new connection closed during the hold")
			}
		default:
			pending = false
		}
	}
	// The drain's GOAWAY closes the idle connection: it does not hold the
	// hour-long drain.
	l.Force(errors.New("end the hour-long hold"))
	recv(t, res, "Shutdown")
	for closed := false; !closed; {
		e := recv(t, ts.states, "the new connection closing at the drain")
		closed = e.conn == second && e.state == http.StateClosed
	}
}

func TestHTTP2IdleConnectionDoesNotHangDrain(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), h2cServer)
	if r := testutil.Do(h2cClient(t), http.MethodGet, ts.url+"/work"); r.Err != nil || r.Status != 200 {
		t.Fatalf("request: got %d %v", r.Status, r.Err)
	}
	ts.waitState(t, http.StateIdle)
	if err := recv(t, shutdownAsync(t.Context(), l), "Shutdown with an idle h2 connection"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil", err)
	}
}

func TestListenHTTPAfterShutdown(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0))
	if err := l.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	hook := func(net.Conn, http.ConnState) {}
	srv := &http.Server{Addr: "127.0.0.1:0", ConnState: hook}
	if err := l.ListenHTTP(srv, nil); !errors.Is(err, core.ErrShuttingDown) {
		t.Fatalf("ListenHTTP once stopped: got %v, want ErrShuttingDown", err)
	}
	if srv.ConnState == nil || srv.Handler != nil {
		t.Error("ListenHTTP failed but changed the server")
	}
}

// TestListenHTTPPortInUse checks that a listen error is ListenHTTP's, at
// once: nothing is served and the service never becomes ready.
func TestListenHTTPPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	l := newLifecycle(t)
	err = l.ListenHTTP(&http.Server{Addr: taken.Addr().String()}, nil)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("ListenHTTP on a port in use: got %v, want address already in use", err)
	}
	if l.Phase() != core.Starting {
		t.Errorf("phase: got %v, want starting", l.Phase())
	}
	if err := l.ListenHTTP(nil, nil); err == nil {
		t.Error("ListenHTTP(nil): got nil, want an error")
	}
}

// TestConnStateReplacedAfterListenHTTP checks the misuse of setting
// srv.ConnState after ListenHTTP: the binding no longer sees the
// connections, so the drain falls back to http.Server.Shutdown's poll
// and still waits for every in-flight answer.
func TestConnStateReplacedAfterListenHTTP(t *testing.T) {
	const n = 20
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Minute))
	g := newGate()
	defer g.open()
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.started <- struct{}{}
		<-g.release
		_, _ = io.WriteString(w, "ok")
	})}
	if err := l.ListenHTTP(srv, nil); err != nil {
		t.Fatal(err)
	}
	srv.ConnState = func(net.Conn, http.ConnState) {} // the misuse
	run(t, l)
	c := testutil.NewClient(t)
	results := make([]<-chan testutil.Response, n)
	for i := range results {
		results[i] = testutil.DoAsync(c, http.MethodGet, "http://"+srv.Addr+"/work")
	}
	for range n {
		recv(t, g.started, "handler start")
	}
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	g.open()
	for i, rc := range results {
		if r := recv(t, rc, "answer"); r.Err != nil || r.Status != 200 || r.Body != "ok" {
			t.Errorf("request %d: got %d %q %v, want 200 ok", i, r.Status, r.Body, r.Err)
		}
	}
	if err := recv(t, res, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil", err)
	}
}

// TestHTTPShutdownFromHandler pins down the documented outcome of a
// handler that calls Shutdown itself: it waits for its own request, so
// the drain runs to its timeout and reports the handler as abandoned; it
// does not deadlock.
func TestHTTPShutdownFromHandler(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(200*time.Millisecond))
	inside := make(chan error, 1)
	ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inside <- l.Shutdown(context.Background())
	}), nil)
	resc := testutil.DoAsync(testutil.NewClient(t), http.MethodGet, ts.url+"/admin/stop")
	err := recv(t, inside, "Shutdown called from the handler")
	var fe *core.ForcedError
	if !errors.As(err, &fe) || fe.Abandoned != 1 || fe.Cause != core.ErrDrainTimeout {
		t.Fatalf("Shutdown from a handler: got %v, want ForcedError{Abandoned: 1, Cause: ErrDrainTimeout}", err)
	}
	recv(t, resc, "the client's result")
	recv(t, l.Reached(core.Stopped), "Reached(Stopped)")
}
