package reliability_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"

	"github.com/lameduck/lameduck/chiadapter"
	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/ginadapter"
	"github.com/lameduck/lameduck/internal/testutil"
)

func init() { gin.SetMode(gin.TestMode) }

// recoverer is a recovery middleware in the usual shape: a panic becomes
// a 500. http.ErrAbortHandler is re-panicked, as net/http expects.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// TestPanickingHandlers sends panicking and well-behaved requests at
// once through each stack, with and without a recovery middleware.
// Whatever the stack, the in-flight count must come back to exactly
// zero, a request parked across the drain must be answered and the drain
// must finish by itself. The lifecycle's tracking is always the outermost
// layer now (ListenHTTP and the adapters' Listen wrap the handler), so a
// recovery middleware can only be inside it.
func TestPanickingHandlers(t *testing.T) {
	const panics, oks = 50, 50
	// A stack listens with l for the three handlers and returns its URL.
	type stack func(t *testing.T, l *lifecycle, boom, ok, park http.HandlerFunc) string
	nethttp := func(wrap func(http.Handler) http.Handler) stack {
		return func(t *testing.T, l *lifecycle, boom, ok, park http.HandlerFunc) string {
			mux := http.NewServeMux()
			mux.Handle("/boom", boom)
			mux.Handle("/ok", ok)
			mux.Handle("/park", park)
			var h http.Handler = mux
			if wrap != nil {
				h = wrap(mux)
			}
			return listen(t, l, h, nil).url
		}
	}
	chiStack := func(t *testing.T, l *lifecycle, boom, ok, park http.HandlerFunc) string {
		r := chi.NewRouter()
		r.Use(recoverer)
		r.Get("/boom", boom)
		r.Get("/ok", ok)
		r.Get("/park", park)
		addr, err := chiadapter.Listen(l.Lifecycle, "127.0.0.1:0", r, nil)
		if err != nil {
			t.Fatalf("chiadapter.Listen: %v", err)
		}
		return "http://" + addr.String()
	}
	ginStack := func(recovery bool) stack {
		return func(t *testing.T, l *lifecycle, boom, ok, park http.HandlerFunc) string {
			r := gin.New()
			if recovery {
				r.Use(gin.RecoveryWithWriter(io.Discard))
			}
			r.GET("/boom", gin.WrapF(boom))
			r.GET("/ok", gin.WrapF(ok))
			r.GET("/park", gin.WrapF(park))
			addr, err := ginadapter.Listen(l.Lifecycle, "127.0.0.1:0", r, nil)
			if err != nil {
				t.Fatalf("ginadapter.Listen: %v", err)
			}
			return "http://" + addr.String()
		}
	}
	for _, tc := range []struct {
		name      string
		stack     stack
		abort     bool // panic with http.ErrAbortHandler
		recovered bool // the panicking request gets a 500
	}{
		{"net/http without recovery", nethttp(nil), false, false},
		{"net/http ErrAbortHandler", nethttp(nil), true, false},
		{"net/http with recovery", nethttp(recoverer), false, true},
		{"net/http with recovery, ErrAbortHandler", nethttp(recoverer), true, false},
		{"chi with recovery", chiStack, false, true},
		{"gin with Recovery", ginStack(true), false, true},
		{"gin without recovery", ginStack(false), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Minute))
			parked := newParker(1)
			boom := func(http.ResponseWriter, *http.Request) {
				if tc.abort {
					panic(http.ErrAbortHandler)
				}
				panic("boom")
			}
			ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }
			park := func(w http.ResponseWriter, _ *http.Request) { parked.park(); _, _ = io.WriteString(w, "parked") }
			url := tc.stack(t, l, boom, ok, park)
			rn, _ := start(t, l)
			c := testutil.NewClient(t)
			parkRes := testutil.DoAsync(c, http.MethodGet, url+"/park")
			parked.waitStarted(t, 1)

			results := make([]testutil.Response, panics+oks)
			var wg sync.WaitGroup
			for i := range panics + oks {
				path := "/ok"
				if i < panics {
					path = "/boom"
				}
				wg.Go(func() { results[i] = testutil.Do(c, http.MethodGet, url+path) })
			}
			wg.Wait()
			for i, r := range results {
				switch {
				case i >= panics:
					if r.Err != nil || r.Status != http.StatusOK {
						t.Fatalf("well-behaved request %d: got %d %v, want 200", i, r.Status, r.Err)
					}
				case tc.recovered:
					if r.Err != nil || r.Status != http.StatusInternalServerError {
						t.Fatalf("recovered panic %d: got %d %v, want 500", i, r.Status, r.Err)
					}
				default:
					if r.Err == nil {
						t.Fatalf("unrecovered panic %d: got status %d, want the connection dropped", i, r.Status)
					}
				}
			}
			if got := l.InFlight(); got != 1 {
				t.Fatalf("InFlight after %d panics with one request parked: got %d, want 1", panics, got)
			}
			res := shutdownAsync(t.Context(), l)
			recv(t, l.Reached(core.Draining), "Reached(Draining)")
			close(parked.release)
			if r := recv(t, parkRes, "the parked answer"); r.Err != nil || r.Body != "parked" {
				t.Fatalf("parked request: got %d %q %v", r.Status, r.Body, r.Err)
			}
			if err := recv(t, res, "Shutdown"); err != nil {
				t.Fatalf("Shutdown: got %v, want nil", err)
			}
			if err := rn.wait(t); err != nil {
				t.Fatalf("Run: got %v, want nil", err)
			}
			if got := l.InFlight(); got != 0 {
				t.Errorf("InFlight after the drain: got %d, want 0", got)
			}
		})
	}
}

// TestHijackedConnections hijacks connections three ways: handlers that
// hold the connection and end at the drain, handlers that hold it and
// ignore the drain, and handlers that hand it to a goroutine and return.
// Only the second kind is still a tracked request at the drain timeout:
// the drain must be forced then, with exactly that many abandoned, and
// the handed-off connections must not be tracked at all.
func TestHijackedConnections(t *testing.T) {
	const watching, ignoring, handedOff = 10, 10, 10
	const drainTimeout = 500 * time.Millisecond
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(drainTimeout))
	started := make(chan struct{}, watching+ignoring+handedOff)
	release := make(chan struct{})
	var ended sync.WaitGroup // every hijacked connection closed by its owner
	hijack := func(w http.ResponseWriter) net.Conn {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return nil
		}
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
		return conn
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/watch", func(w http.ResponseWriter, r *http.Request) {
		conn := hijack(w)
		defer ended.Done()
		if conn == nil {
			return
		}
		defer conn.Close()
		started <- struct{}{}
		<-l.Reached(core.Draining)
	})
	mux.HandleFunc("/ignore", func(w http.ResponseWriter, r *http.Request) {
		conn := hijack(w)
		defer ended.Done()
		if conn == nil {
			return
		}
		defer conn.Close()
		started <- struct{}{}
		<-release
	})
	mux.HandleFunc("/handoff", func(w http.ResponseWriter, r *http.Request) {
		conn := hijack(w)
		if conn == nil {
			ended.Done()
			return
		}
		go func() {
			defer ended.Done()
			defer conn.Close()
			<-l.Reached(core.Draining)
		}()
		started <- struct{}{}
	})
	s := listen(t, l, mux, nil)
	start(t, l)
	ended.Add(watching + ignoring + handedOff)
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range watching + ignoring + handedOff {
		path := "/watch"
		switch {
		case i >= watching+ignoring:
			path = "/handoff"
		case i >= watching:
			path = "/ignore"
		}
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	for range watching + ignoring + handedOff {
		recv(t, started, "a hijacking handler")
	}
	// The handed-off handlers have returned, or are about to: wait until
	// only the holding ones are tracked.
	deadline := time.Now().Add(hang)
	for l.InFlight() != watching+ignoring && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // no event: End is called after the handler returns
	}
	if got := l.InFlight(); got != watching+ignoring {
		t.Fatalf("InFlight with %d hijacks held in handlers: got %d", watching+ignoring, got)
	}
	start := time.Now()
	err := recv(t, shutdownAsync(t.Context(), l), "Shutdown")
	took := time.Since(start)
	forced(t, err, core.ErrDrainTimeout, ignoring)
	if took > drainTimeout+margin {
		t.Errorf("Shutdown took %v, want about the drain timeout %v", took, drainTimeout)
	}
	close(release)
	done := make(chan struct{})
	go func() { ended.Wait(); close(done) }()
	recv(t, done, "every hijacked connection closed by its owner")
	waitIdle(t, l)
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight once every handler returned: got %d, want 0", got)
	}
}

// TestHandlersIgnoringContext parks handlers that ignore their context
// beside well-behaved ones that finish at the drain, over HTTP/1 and
// h2c. The drain must be forced at its timeout with exactly the ignoring
// handlers abandoned; when they wake up later and write into closed
// connections, nothing panics and the count comes back to zero.
func TestHandlersIgnoringContext(t *testing.T) {
	const ignoring, good = 25, 25
	const drainTimeout = 500 * time.Millisecond
	for _, tc := range []struct {
		name      string
		configure func(*http.Server)
		client    func(t testing.TB) *http.Client
	}{
		{"http1", nil, testutil.NewClient},
		{"h2c", h2c, func(t testing.TB) *http.Client {
			tr := &http.Transport{Protocols: new(http.Protocols)}
			tr.Protocols.SetUnencryptedHTTP2(true)
			t.Cleanup(tr.CloseIdleConnections)
			return &http.Client{Transport: tr, Timeout: time.Minute}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(drainTimeout))
			started := make(chan struct{}, ignoring+good)
			release := make(chan struct{})
			lateWrites := make(chan error, ignoring)
			mux := http.NewServeMux()
			mux.HandleFunc("/ignore", func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				<-release // neither r.Context() nor the drain
				_, werr := io.WriteString(w, strings.Repeat("late ", 2000))
				ferr := http.NewResponseController(w).Flush()
				lateWrites <- errors.Join(werr, ferr)
			})
			mux.HandleFunc("/good", func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				<-l.Reached(core.Draining)
				_, _ = io.WriteString(w, "good")
			})
			s := listen(t, l, mux, tc.configure)
			start(t, l)
			c := tc.client(t)
			var ignored, goods []<-chan testutil.Response
			for range ignoring {
				ignored = append(ignored, testutil.DoAsync(c, http.MethodGet, s.url+"/ignore"))
			}
			for range good {
				goods = append(goods, testutil.DoAsync(c, http.MethodGet, s.url+"/good"))
			}
			for range ignoring + good {
				recv(t, started, "a handler")
			}
			start := time.Now()
			err := recv(t, shutdownAsync(t.Context(), l), "Shutdown")
			took := time.Since(start)
			forced(t, err, core.ErrDrainTimeout, ignoring)
			if took > drainTimeout+margin {
				t.Errorf("Shutdown took %v, want about the drain timeout %v", took, drainTimeout)
			}
			for i, ch := range goods {
				if r := recv(t, ch, "a good answer"); r.Err != nil || r.Body != "good" {
					t.Fatalf("good request %d: got %d %q %v, want 200 good", i, r.Status, r.Body, r.Err)
				}
			}
			for i, ch := range ignored {
				if r := recv(t, ch, "an abandoned request"); r.Err == nil {
					t.Fatalf("abandoned request %d: got %d %q, want a transport error", i, r.Status, r.Body)
				}
			}
			if got := l.InFlight(); got != ignoring {
				t.Errorf("InFlight after the forced drain: got %d, want %d (the ignoring handlers still run)", got, ignoring)
			}
			close(release) // they write after the drain timeout
			for range ignoring {
				if err := recv(t, lateWrites, "a late write"); err == nil {
					t.Error("a write after the drain timeout: got no error, want one (connection closed)")
				}
			}
			waitIdle(t, l)
			if got := l.InFlight(); got != 0 {
				t.Errorf("InFlight once the late handlers returned: got %d, want 0", got)
			}
		})
	}
}

// TestFaultsProcessExitsOnTime faults a server process with panics,
// handlers that ignore their context and long polls, then sends SIGTERM:
// it must exit 1 at its drain timeout with exactly the ignoring handlers
// abandoned, and every long poll answered.
func TestFaultsProcessExitsOnTime(t *testing.T) {
	const panics, ignoring, polls = 50, 7, 10
	const drainTimeout = time.Second
	bin := testutil.BuildBinary(t, "./e2e/reliability/testdata/loadserver")
	p := testutil.Start(t, bin, processEnv, "-addr", "127.0.0.1:0", "-drain-timeout", drainTimeout.String(), "-park", fmt.Sprint(polls))
	base := "http://" + p.Addr(hang)
	p.WaitLog("lameduck: serving", hang)
	c := testutil.NewClient(t)
	for i := range panics {
		if r := testutil.Do(c, http.MethodGet, base+"/panic"); r.Err == nil {
			t.Fatalf("panic %d: got status %d, want the connection dropped", i, r.Status)
		}
	}
	for range ignoring {
		testutil.StartRequest(t, c, http.MethodGet, base+"/ignore")
	}
	var answers []<-chan testutil.Response
	for range polls {
		answers = append(answers, testutil.StartRequest(t, c, http.MethodGet, base+"/poll"))
	}
	p.WaitLog("all parked", hang)
	if st := metrics(t, c, base); st.InFlight != ignoring+polls {
		t.Fatalf("in flight after %d panics: got %d, want %d", panics, st.InFlight, ignoring+polls)
	}
	sigterm := time.Now()
	p.Signal(syscall.SIGTERM)
	for i, ch := range answers {
		if r := recv(t, ch, "a long poll's answer"); r.Err != nil || r.Body != "done" {
			t.Fatalf("long poll %d: got %d %q %v", i, r.Status, r.Body, r.Err)
		}
	}
	if code := p.Wait(hang); code != 1 {
		t.Fatalf("exit status: got %d, want 1", code)
	}
	took := time.Since(sigterm)
	if took < drainTimeout || took > drainTimeout+margin {
		t.Errorf("exit %v after SIGTERM, want about the drain timeout %v", took, drainTimeout)
	}
	if want := fmt.Sprintf("abandoned=%d ", ignoring); !strings.Contains(p.Stderr(), want) {
		t.Errorf("log: want %s; got:\n%s", want, p.Stderr())
	}
}
