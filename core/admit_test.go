package core_test

import (
	"context"
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
			h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inside = l.InFlight()
			}))
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
	recv(t, l.Draining(), "Draining()")
	t.Cleanup(func() {
		l.End()
		recv(t, res, "Shutdown")
	})
	return l
}

func TestMiddlewareWhileDraining(t *testing.T) {
	l := draining(t)
	for _, tc := range probeCases {
		t.Run(tc.path, func(t *testing.T) {
			called := false
			h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
				_, _ = w.Write([]byte("ok"))
			}))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if tc.probe {
				if !called || w.Code != http.StatusOK {
					t.Fatalf("probe while draining: got called %v status %d, want served 200", called, w.Code)
				}
				return
			}
			if called {
				t.Fatal("refused request reached the handler")
			}
			if w.Code != http.StatusServiceUnavailable {
				t.Errorf("status: got %d, want 503", w.Code)
			}
			if got := w.Header().Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After: got %q, want %q", got, "1")
			}
			if got := w.Header().Get("Connection"); got != "close" {
				t.Errorf("Connection: got %q, want %q", got, "close")
			}
			if got := l.InFlight(); got != 1 {
				t.Errorf("InFlight(): got %d, want 1 (the refused request not counted)", got)
			}
		})
	}
}

func TestAdmitHTTP(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour))
	l.MarkReady()
	req := httptest.NewRequest(http.MethodGet, "/work", nil)
	if got := l.AdmitHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/readyz", nil)); got != core.Untracked {
		t.Errorf("probe: got %v, want Untracked", got)
	}
	w := httptest.NewRecorder()
	if got := l.AdmitHTTP(w, req); got != core.Tracked {
		t.Fatalf("serving: got %v, want Tracked", got)
	}
	l.End()

	ctx, cancel := context.WithCancel(t.Context())
	res := shutdownAsync(ctx, l)
	recv(t, l.Holding(), "Holding()")
	w = httptest.NewRecorder()
	if got := l.AdmitHTTP(w, req); got != core.Tracked {
		t.Fatalf("holding: got %v, want Tracked", got)
	}
	if got := w.Header().Get("Connection"); got != "close" {
		t.Errorf("holding: Connection got %q, want close", got)
	}
	l.End()
	cancel()
	recv(t, l.Draining(), "Draining()")
	w = httptest.NewRecorder()
	if got := l.AdmitHTTP(w, req); got != core.Refused || w.Code != http.StatusServiceUnavailable {
		t.Errorf("draining: got %v status %d, want Refused 503", got, w.Code)
	}
	recv(t, res, "Shutdown")
}
