package chiadapter_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/lameduck/lameduck/chiadapter"
	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newLifecycle(t *testing.T) *core.Lifecycle {
	t.Helper()
	lc, err := core.New(core.WithHold(0), core.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	return lc
}

// router mounts the health routes and one /work route whose handler runs
// inside, behind the middleware.
func router(t *testing.T, lc *core.Lifecycle, inside http.HandlerFunc) chi.Router {
	t.Helper()
	h, err := health.New(lc, health.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer, chiadapter.Middleware(lc))
	chiadapter.Mount(r, h)
	r.Get("/work", inside)
	return r
}

func serve(r http.Handler, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w
}

func TestMiddlewareTracksRequests(t *testing.T) {
	lc := newLifecycle(t)
	lc.MarkReady()
	var during int64
	r := router(t, lc, func(w http.ResponseWriter, _ *http.Request) { during = lc.InFlight() })
	if w := serve(r, "/work"); w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", w.Code)
	}
	if during != 1 || lc.InFlight() != 0 {
		t.Errorf("in flight during = %d, after = %d; want 1 and 0", during, lc.InFlight())
	}
}

func TestMiddlewarePanicDoesNotLeak(t *testing.T) {
	lc := newLifecycle(t)
	lc.MarkReady()
	r := router(t, lc, func(http.ResponseWriter, *http.Request) { panic("boom") })
	if w := serve(r, "/work"); w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500 from the recoverer", w.Code)
	}
	if n := lc.InFlight(); n != 0 {
		t.Errorf("in flight after a panic = %d, want 0", n)
	}
}

func TestMiddlewareByPhase(t *testing.T) {
	lc := newLifecycle(t)
	lc.MarkReady()
	release := make(chan struct{})
	inHandler := make(chan struct{}, 1)
	r := router(t, lc, func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Query().Has("block") {
			inHandler <- struct{}{}
			<-release
		}
	})

	if w := serve(r, "/work"); w.Header().Get("Connection") != "" {
		t.Errorf("while serving: Connection %q, want none", w.Header().Get("Connection"))
	}

	// One request in flight keeps the drain open while we probe.
	blocked := make(chan *httptest.ResponseRecorder)
	go func() { blocked <- serve(r, "/work?block") }()
	<-inHandler
	done := make(chan error)
	go func() { done <- lc.Shutdown(context.Background()) }()
	<-lc.Draining()

	if w := serve(r, "/work"); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("after the drain began: %d Retry-After %q, want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	for _, path := range []string{"/healthz", "/livez"} {
		if w := serve(r, path); w.Code != http.StatusOK {
			t.Errorf("%s while draining = %d, want 200: probes are never refused", path, w.Code)
		}
	}
	if w := serve(r, "/readyz"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining = %d, want 503", w.Code)
	}
	close(release)
	if w := <-blocked; w.Code != http.StatusOK {
		t.Errorf("request admitted while serving and finished in the drain = %d, want 200", w.Code)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

func TestMiddlewareHoldClosesConnections(t *testing.T) {
	lc, err := core.New(core.WithHold(core.DefaultHold), core.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	lc.MarkReady()
	r := router(t, lc, func(http.ResponseWriter, *http.Request) {})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- lc.Shutdown(ctx) }()
	<-lc.Holding()
	if w := serve(r, "/work"); w.Code != http.StatusOK || w.Header().Get("Connection") != "close" {
		t.Errorf("during the hold: %d Connection %q, want 200 close", w.Code, w.Header().Get("Connection"))
	}
	cancel() // skip the rest of the hold
	<-done
}

func TestMountRegistersEveryRoute(t *testing.T) {
	lc := newLifecycle(t)
	h, err := health.New(lc, health.WithLogger(quiet),
		health.WithReadinessChecks(health.NamedCheck("db", func(context.Context) error { return nil })))
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	chiadapter.Mount(r, h)
	for _, rt := range h.Routes() {
		if w := serve(r, rt.Pattern); w.Code == http.StatusNotFound {
			t.Errorf("%s not mounted", rt.Pattern)
		}
	}
	lc.MarkReady()
	if w := serve(r, "/readyz/db"); w.Code != http.StatusOK {
		t.Errorf("/readyz/db = %d, want 200", w.Code)
	}
}
