package core_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

var probeCases = []struct {
	path  string
	probe bool
}{
	{"/healthz", true},
	{"/livez", true},
	{"/readyz", true},
	{"/readyz/db", true},
	{"/livez/ping", true},
	{"/healthz/ping", true},
	{"/metrics", true},
	{"/healthzfoo", false},
	{"/readyzz", false},
	{"/metrics/x", false},
	{"/", false},
	{"/work", false},
}

func TestIsProbePath(t *testing.T) {
	for _, tc := range probeCases {
		t.Run(tc.path, func(t *testing.T) {
			if got := core.IsProbePath(tc.path); got != tc.probe {
				t.Errorf("IsProbePath(%q): got %v, want %v", tc.path, got, tc.probe)
			}
		})
	}
}

func TestMiddlewareTracksWhileServing(t *testing.T) {
	l := newLifecycle(t)
	l.MarkReady()
	for _, tc := range probeCases {
		t.Run(tc.path, func(t *testing.T) {
			var inside int64 = -1
			h := l.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inside = l.InFlight()
			}), nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
			want := int64(1)
			if tc.probe {
				want = 0
			}
			if inside != want {
				t.Errorf("InFlight() inside the handler: got %d, want %d", inside, want)
			}
			if got := l.InFlight(); got != 0 {
				t.Errorf("InFlight() after: got %d, want 0", got)
			}
			if got := w.Header().Get("Connection"); got != "" {
				t.Errorf("Connection header while serving: got %q, want none", got)
			}
		})
	}
}

// draining returns a lifecycle that stays in Draining: one unit of work
// is in flight until the test ends.
func draining(t *testing.T) *core.Lifecycle {
	t.Helper()
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	l.MarkReady()
	if !l.Begin() {
		t.Fatal("Begin: got false")
	}
	res := shutdownAsync(context.Background(), l)
	recv(t, l.Reached(core.Draining), "Draining()")
	t.Cleanup(func() {
		l.End()
		recv(t, res, "Shutdown")
	})
	return l
}

// TestHandlerWhileDraining checks that every request that reaches the
// handler during the drain is served: probes untracked, the rest tracked,
// HTTP/1 responses with "Connection: close".
func TestHandlerWhileDraining(t *testing.T) {
	l := draining(t)
	for _, tc := range probeCases {
		t.Run(tc.path, func(t *testing.T) {
			var inside int64 = -1
			h := l.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inside = l.InFlight()
				_, _ = w.Write([]byte("ok"))
			}), nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if inside < 0 || w.Code != http.StatusOK {
				t.Fatalf("while draining: got status %d, handler called %v, want served 200", w.Code, inside >= 0)
			}
			want, conn := int64(2), "close" // the work of draining(t), and this one
			if tc.probe {
				want, conn = 1, ""
			}
			if inside != want {
				t.Errorf("InFlight() inside the handler: got %d, want %d", inside, want)
			}
			if got := w.Header().Get("Connection"); got != conn {
				t.Errorf("Connection: got %q, want %q", got, conn)
			}
		})
	}
}

func TestHandlerPhases(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour))
	l.MarkReady()
	h := l.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil)
	serve := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/work", nil))
		return w
	}
	if w := serve(); w.Code != http.StatusOK || w.Header().Get("Connection") != "" {
		t.Errorf("serving: got %d Connection %q, want 200 and none", w.Code, w.Header().Get("Connection"))
	}
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Holding), "Reached(Holding)")
	if w := serve(); w.Code != http.StatusOK || w.Header().Get("Connection") != "close" {
		t.Errorf("holding: got %d Connection %q, want 200 and close", w.Code, w.Header().Get("Connection"))
	}
	l.Force(errors.New("end the hour-long hold"))
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	if w := serve(); w.Code != http.StatusOK || w.Header().Get("Connection") != "close" {
		t.Errorf("draining: got %d Connection %q, want 200 and close", w.Code, w.Header().Get("Connection"))
	}
	recv(t, res, "Shutdown")
}

// TestProbesServedWhateverTheRouter checks that the probe paths go to the
// probes handler, untracked, even when the service's router would take
// them (a catch-all) and during the drain, while the same words under a
// prefix are the router's, tracked.
func TestProbesServedWhateverTheRouter(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	l.MarkReady()
	var routerInFlight, wantProbeInFlight int64 = -1, 0
	router := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		routerInFlight = l.InFlight()
		_, _ = w.Write([]byte("router"))
	})
	probes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := l.InFlight(); n != wantProbeInFlight {
			t.Errorf("%s: InFlight() inside the probe: got %d, want %d", r.URL.Path, n, wantProbeInFlight)
		}
		_, _ = w.Write([]byte("probe"))
	})
	h := l.Wrap(router, probes)
	get := func(path string) string {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w.Body.String()
	}
	for _, p := range []string{"/healthz", "/livez", "/readyz", "/readyz/db", "/healthz/ping"} {
		if got := get(p); got != "probe" {
			t.Errorf("GET %s: got %q, want the probes handler", p, got)
		}
	}
	if got := get("/metrics"); got != "router" || routerInFlight != 0 {
		t.Errorf("GET /metrics: got %q with %d in flight, want the router's, untracked", got, routerInFlight)
	}
	if got := get("/ops/healthz"); got != "router" || routerInFlight != 1 {
		t.Errorf("GET /ops/healthz: got %q with %d in flight, want the router's, tracked", got, routerInFlight)
	}

	if !l.Begin() {
		t.Fatal("Begin: got false")
	}
	wantProbeInFlight = 1 // the work above, not the probe
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	if got := get("/readyz"); got != "probe" {
		t.Errorf("GET /readyz while draining: got %q, want the probes handler", got)
	}
	l.End()
	if err := recv(t, res, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
