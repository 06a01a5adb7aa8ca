package ginadapter_test

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/ginadapter"
	"github.com/lameduck/lameduck/health"
)

var quiet = slog.New(slog.DiscardHandler)

// newLifecycle returns a Serving lifecycle with no hold.
func newLifecycle(t *testing.T) *core.Lifecycle {
	t.Helper()
	lc, err := core.New(core.WithHold(0), core.WithDrainTimeout(5*time.Second), core.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	lc.MarkReady()
	return lc
}

// holdingLifecycle returns a lifecycle in its hold, which lasts until the
// test ends.
func holdingLifecycle(t *testing.T) *core.Lifecycle {
	t.Helper()
	lc, err := core.New(core.WithHold(time.Hour), core.WithDrainTimeout(5*time.Second), core.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	lc.MarkReady()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = lc.Shutdown(ctx) }() // forced by cancel: error expected
	t.Cleanup(func() { cancel(); <-done })
	<-lc.Holding()
	return lc
}

// drainedLifecycle returns a lifecycle whose shutdown has finished: every
// request that is not a probe is refused.
func drainedLifecycle(t *testing.T) *core.Lifecycle {
	t.Helper()
	lc := newLifecycle(t)
	if err := lc.Shutdown(t.Context()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	return lc
}

func newHealth(t *testing.T, lc *core.Lifecycle, opts ...health.Option) *health.Health {
	t.Helper()
	h, err := health.New(lc, append([]health.Option{health.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serve(engine *gin.Engine, method, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	engine.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

// probe is a handler that records the in-flight count it sees.
type probe struct {
	lc     *core.Lifecycle
	called int
	seen   int64
}

func (p *probe) handle(c *gin.Context) {
	p.called++
	p.seen = p.lc.InFlight()
	c.String(http.StatusOK, "ok")
}

func TestMiddlewareTracks(t *testing.T) {
	lc := newLifecycle(t)
	p := &probe{lc: lc}
	engine := gin.New()
	engine.Use(ginadapter.Middleware(lc))
	engine.GET("/work", p.handle)

	w := serve(engine, "GET", "/work")
	if w.Code != http.StatusOK || p.called != 1 {
		t.Fatalf("got %d with the handler called %d times, want 200 and 1", w.Code, p.called)
	}
	if p.seen != 1 {
		t.Errorf("in flight inside the handler = %d, want 1", p.seen)
	}
	if got := lc.InFlight(); got != 0 {
		t.Errorf("in flight after the request = %d, want 0", got)
	}
	if got := w.Header().Get("Connection"); got != "" {
		t.Errorf("Connection while serving = %q, want none", got)
	}
}

func TestMiddlewarePanicWithRecovery(t *testing.T) {
	recovery := gin.RecoveryWithWriter(io.Discard) // gin.Recovery() writing elsewhere
	cases := []struct {
		name  string
		chain func(mw gin.HandlerFunc) []gin.HandlerFunc
	}{
		{"recovery_before_middleware", func(mw gin.HandlerFunc) []gin.HandlerFunc { return []gin.HandlerFunc{recovery, mw} }},
		{"recovery_after_middleware", func(mw gin.HandlerFunc) []gin.HandlerFunc { return []gin.HandlerFunc{mw, recovery} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lc := newLifecycle(t)
			var seen int64
			engine := gin.New()
			engine.Use(tc.chain(ginadapter.Middleware(lc))...)
			engine.GET("/panic", func(*gin.Context) {
				seen = lc.InFlight()
				panic("handler bug")
			})

			w := serve(engine, "GET", "/panic")
			if w.Code != http.StatusInternalServerError {
				t.Errorf("status %d, want 500 from gin.Recovery", w.Code)
			}
			if seen != 1 {
				t.Errorf("in flight inside the handler = %d, want 1", seen)
			}
			if got := lc.InFlight(); got != 0 {
				t.Errorf("in flight after the panic = %d, want 0", got)
			}
		})
	}
}

// With the middleware outermost and no recovery at all, the panic leaves
// gin and net/http recovers it by closing the connection.
func TestMiddlewarePanicWithoutRecovery(t *testing.T) {
	lc := newLifecycle(t)
	handled := make(chan int64, 1)
	engine := gin.New()
	engine.Use(ginadapter.Middleware(lc))
	engine.GET("/panic", func(*gin.Context) {
		handled <- lc.InFlight()
		panic("handler bug")
	})
	srv := httptest.NewUnstartedServer(engine)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // net/http logs the recovered panic
	srv.Start()
	t.Cleanup(srv.Close)
	c := srv.Client()
	t.Cleanup(c.CloseIdleConnections)

	resp, err := c.Get(srv.URL + "/panic")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got %d, want the connection closed by net/http's recovery", resp.StatusCode)
	}
	if seen := <-handled; seen != 1 {
		t.Errorf("in flight inside the handler = %d, want 1", seen)
	}
	// The deferred End ran while the panic unwound, before net/http
	// recovered it and closed the connection the client saw closed.
	if got := lc.InFlight(); got != 0 {
		t.Errorf("in flight after the panic = %d, want 0", got)
	}
	// Nothing leaked, so the drain has nothing to wait for.
	if err := lc.Shutdown(t.Context()); err != nil {
		t.Errorf("shutdown after the panic: %v, want nil (drained)", err)
	}
}

func TestMiddlewareAbort(t *testing.T) {
	t.Run("before_middleware", func(t *testing.T) {
		// A middleware before ours aborts: ours never runs. Once drained
		// it would answer 503, so the 403 shows it did not run.
		for _, phase := range []string{"serving", "drained"} {
			t.Run(phase, func(t *testing.T) {
				lc := newLifecycle(t)
				if phase == "drained" {
					lc = drainedLifecycle(t)
				}
				p := &probe{lc: lc}
				engine := gin.New()
				engine.Use(func(c *gin.Context) { c.AbortWithStatus(http.StatusForbidden) }, ginadapter.Middleware(lc))
				engine.GET("/work", p.handle)

				w := serve(engine, "GET", "/work")
				if w.Code != http.StatusForbidden || w.Header().Get("Retry-After") != "" {
					t.Errorf("got %d with Retry-After %q, want 403 without it", w.Code, w.Header().Get("Retry-After"))
				}
				if p.called != 0 {
					t.Errorf("handler called %d times, want 0", p.called)
				}
				if got := lc.InFlight(); got != 0 {
					t.Errorf("in flight = %d, want 0", got)
				}
			})
		}
	})
	t.Run("after_middleware", func(t *testing.T) {
		lc := newLifecycle(t)
		p := &probe{lc: lc}
		var seen int64
		engine := gin.New()
		engine.Use(ginadapter.Middleware(lc), func(c *gin.Context) {
			seen = lc.InFlight()
			c.AbortWithStatus(http.StatusForbidden)
		})
		engine.GET("/work", p.handle)

		w := serve(engine, "GET", "/work")
		if w.Code != http.StatusForbidden || p.called != 0 {
			t.Errorf("got %d with the handler called %d times, want 403 and 0", w.Code, p.called)
		}
		if seen != 1 {
			t.Errorf("in flight in the aborting middleware = %d, want 1", seen)
		}
		if got := lc.InFlight(); got != 0 {
			t.Errorf("in flight after the aborted chain = %d, want 0", got)
		}
	})
}

func TestMiddlewareRefusedAfterDrain(t *testing.T) {
	lc := drainedLifecycle(t)
	p := &probe{lc: lc}
	var later int
	engine := gin.New()
	engine.Use(ginadapter.Middleware(lc), func(c *gin.Context) { later++; c.Next() })
	engine.GET("/work", p.handle)
	engine.POST("/work", p.handle)

	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			w := serve(engine, method, "/work")
			if w.Code != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503", w.Code)
			}
			for _, h := range []struct{ key, want string }{{"Connection", "close"}, {"Retry-After", "1"}} {
				if got := w.Header().Get(h.key); got != h.want {
					t.Errorf("%s = %q, want %q", h.key, got, h.want)
				}
			}
			if p.called != 0 || later != 0 {
				t.Errorf("handler called %d times, later middleware %d times, want 0 and 0", p.called, later)
			}
			if got := lc.InFlight(); got != 0 {
				t.Errorf("in flight = %d, want 0", got)
			}
		})
	}
}

func TestMiddlewareHoldSendsConnectionClose(t *testing.T) {
	lc := holdingLifecycle(t)
	p := &probe{lc: lc}
	engine := gin.New()
	engine.Use(ginadapter.Middleware(lc))
	engine.GET("/work", p.handle)

	w := serve(engine, "GET", "/work")
	if w.Code != http.StatusOK || p.called != 1 {
		t.Fatalf("got %d with the handler called %d times, want 200 and 1: the hold serves everything", w.Code, p.called)
	}
	if got := w.Header().Get("Connection"); got != "close" {
		t.Errorf("Connection during the hold = %q, want close", got)
	}
	if p.seen != 1 || lc.InFlight() != 0 {
		t.Errorf("in flight inside/after = %d/%d, want 1/0", p.seen, lc.InFlight())
	}
}

func TestMiddlewareProbePathsUntracked(t *testing.T) {
	t.Run("serving", func(t *testing.T) {
		lc := newLifecycle(t)
		metrics, work := &probe{lc: lc}, &probe{lc: lc}
		engine := gin.New()
		engine.Use(ginadapter.Middleware(lc))
		engine.GET("/metrics", metrics.handle)
		engine.GET("/work", work.handle)
		serve(engine, "GET", "/metrics")
		serve(engine, "GET", "/work")
		if metrics.seen != 0 || work.seen != 1 {
			t.Errorf("in flight inside /metrics, /work = %d, %d, want 0, 1", metrics.seen, work.seen)
		}
	})
	t.Run("drained", func(t *testing.T) {
		lc := drainedLifecycle(t)
		engine := gin.New()
		engine.Use(ginadapter.Middleware(lc))
		ginadapter.Mount(engine, newHealth(t, lc))
		cases := []struct {
			path   string
			status int
		}{
			{"/healthz", http.StatusOK},
			{"/livez", http.StatusOK},
			{"/readyz", http.StatusServiceUnavailable},
			{"/readyz/shutdown", http.StatusServiceUnavailable},
		}
		for _, tc := range cases {
			w := serve(engine, "GET", tc.path)
			// Refused requests carry Retry-After; health answers do not.
			if w.Code != tc.status || w.Header().Get("Retry-After") != "" {
				t.Errorf("GET %s = %d with Retry-After %q, want %d from health, not refused",
					tc.path, w.Code, w.Header().Get("Retry-After"), tc.status)
			}
		}
	})
}

func TestMount(t *testing.T) {
	lc := newLifecycle(t)
	db := health.NamedCheck("db", func(context.Context) error { return nil })
	h := newHealth(t, lc, health.WithReadinessChecks(db))
	engine := gin.New()
	engine.Use(ginadapter.Middleware(lc))
	ginadapter.Mount(engine, h)

	var registered []string
	for _, r := range engine.Routes() {
		registered = append(registered, r.Method+" "+r.Path)
	}
	routes := h.Routes()
	for _, want := range []string{"/healthz", "/livez", "/readyz", "/readyz/shutdown", "/readyz/db"} {
		if !slices.ContainsFunc(routes, func(r health.Route) bool { return r.Pattern == want }) {
			t.Errorf("health.Routes lacks %s", want)
		}
	}
	for _, r := range routes {
		t.Run(strings.TrimPrefix(r.Pattern, "/"), func(t *testing.T) {
			for _, method := range []string{"GET", "HEAD"} {
				if !slices.Contains(registered, method+" "+r.Pattern) {
					t.Errorf("%s %s not registered; routes: %v", method, r.Pattern, registered)
				}
			}
			get, head := serve(engine, "GET", r.Pattern), serve(engine, "HEAD", r.Pattern)
			if get.Code != http.StatusOK {
				t.Errorf("GET %s = %d %q, want 200", r.Pattern, get.Code, get.Body)
			}
			if head.Code != get.Code || head.Body.Len() != 0 {
				t.Errorf("HEAD %s = %d with %d body bytes, want %d like GET and no body", r.Pattern, head.Code, head.Body.Len(), get.Code)
			}
		})
	}
}

func TestMountOnRootGroup(t *testing.T) {
	lc := newLifecycle(t)
	engine := gin.New()
	ginadapter.Mount(engine.Group("/"), newHealth(t, lc))
	if w := serve(engine, "GET", "/readyz"); w.Code != http.StatusOK {
		t.Errorf("GET /readyz = %d, want 200", w.Code)
	}
}

func TestBadArguments(t *testing.T) {
	lc := newLifecycle(t)
	h := newHealth(t, lc)
	cases := []struct {
		name string
		call func()
		want string
	}{
		{"middleware_nil_lifecycle", func() { ginadapter.Middleware(nil) }, "ginadapter: Middleware needs"},
		{"mount_nil_router", func() { ginadapter.Mount(nil, h) }, "ginadapter: Mount needs"},
		{"mount_nil_health", func() { ginadapter.Mount(gin.New(), nil) }, "ginadapter: Mount needs"},
		{"mount_under_prefix", func() { ginadapter.Mount(gin.New().Group("/api"), h) }, "not under /api"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				got, _ := recover().(string)
				if !strings.Contains(got, tc.want) {
					t.Errorf("panic %q, want one containing %q", got, tc.want)
				}
			}()
			tc.call()
		})
	}
}

// TestReleaseMode runs the engine the way a service does: gin in release
// mode, served by an *http.Server bound to the lifecycle. Release mode
// keeps stdout (gin.DefaultWriter) clean, which the examples rely on.
func TestReleaseMode(t *testing.T) {
	prevMode, prevOut := gin.Mode(), gin.DefaultWriter
	t.Cleanup(func() { gin.SetMode(prevMode); gin.DefaultWriter = prevOut })
	gin.SetMode(gin.ReleaseMode)
	var out strings.Builder
	gin.DefaultWriter = &out

	lc := newLifecycle(t)
	engine := gin.New()
	engine.Use(gin.RecoveryWithWriter(io.Discard), ginadapter.Middleware(lc))
	ginadapter.Mount(engine, newHealth(t, lc))
	engine.GET("/work", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	engine.GET("/panic", func(*gin.Context) { panic("handler bug") })

	srv := &http.Server{Handler: engine, ReadHeaderTimeout: 10 * time.Second}
	if err := lc.BindHTTP(srv); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	c := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
	t.Cleanup(c.CloseIdleConnections)
	base := "http://" + ln.Addr().String()
	for _, tc := range []struct {
		path   string
		status int
	}{{"/work", 200}, {"/panic", 500}, {"/healthz", 200}, {"/readyz", 200}} {
		resp, err := c.Get(base + tc.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s = %d, want %d", tc.path, resp.StatusCode, tc.status)
		}
	}
	if err := lc.Shutdown(t.Context()); err != nil {
		t.Errorf("shutdown: %v, want nil (drained)", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
	}
	if got := lc.InFlight(); got != 0 {
		t.Errorf("in flight after shutdown = %d, want 0", got)
	}
	if out.Len() != 0 {
		t.Errorf("gin wrote to its DefaultWriter (stdout) in release mode: %q", out.String())
	}
}

// TestMiddlewareNoAllocs guards what BenchmarkGin measures: the middleware
// adds no allocation to a request while the service is serving.
func TestMiddlewareNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	lc := newLifecycle(t)
	bare, tracked := benchEngine(nil), benchEngine(lc)
	w, r := newDiscardWriter(), httptest.NewRequest("GET", "/work", nil)
	base := testing.AllocsPerRun(100, func() { bare.ServeHTTP(w, r) })
	with := testing.AllocsPerRun(100, func() { tracked.ServeHTTP(w, r) })
	if with > base {
		t.Errorf("allocs per request: %v with the middleware, %v without, want no more", with, base)
	}
}
