package core_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

func TestPreStopReturnsAfterHold(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	l.MarkReady()
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		w := httptest.NewRecorder()
		l.PreStopHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/prestop", nil))
		done <- w
	}()
	recv(t, l.Reached(core.Holding), "Holding()")
	if l.Phase() == core.Serving {
		t.Fatal("Ready() once preStop was called: got true, want false")
	}
	select {
	case <-done:
		t.Fatal("preStop returned during the hold, want it to wait for the hold")
	default:
	}
	// Force cuts the hold short: the preStop request returns once the
	// hold is over.
	l.Force(nil)
	w := recv(t, done, "preStop after the hold")
	if w.Code != http.StatusOK {
		t.Fatalf("preStop: got status %d, want 200", w.Code)
	}
	if !isClosed(l.Reached(core.Draining)) {
		t.Error("preStop returned before the drain started")
	}
}

func TestPreStopClientGivesUp(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	w := httptest.NewRecorder()
	l.PreStopHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/prestop", nil).WithContext(ctx))
	// Whether the handler saw the drain or the ended request first, the
	// sequence goes on and finishes.
	recv(t, l.Reached(core.Stopped), "Stopped()")
}
