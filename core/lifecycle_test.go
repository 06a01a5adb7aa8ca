package core_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

func TestPhasesInOrder(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	if l.Ready() {
		t.Fatal("Ready() before MarkReady: got true, want false")
	}
	l.MarkReady()
	if got := l.Phase(); got != core.Serving {
		t.Fatalf("Phase() after MarkReady: got %v, want serving", got)
	}
	if !l.Ready() {
		t.Fatal("Ready() while serving: got false, want true")
	}
	if isClosed(l.Holding()) || isClosed(l.Draining()) || isClosed(l.Stopped()) {
		t.Fatal("a phase channel is closed while serving")
	}
	if !l.Begin() {
		t.Fatal("Begin() while serving: got false, want true")
	}

	ctx, cancel := context.WithCancel(t.Context())
	res := shutdownAsync(ctx, l)
	recv(t, l.Holding(), "Holding()")
	if got := l.Phase(); got != core.Holding {
		t.Errorf("Phase() after Holding closed: got %v, want holding", got)
	}
	if l.Ready() {
		t.Error("Ready() while holding: got true, want false")
	}
	if isClosed(l.Draining()) || isClosed(l.Stopped()) {
		t.Fatal("Draining or Stopped closed during the hold")
	}
	// The hold keeps accepting work.
	for range 3 {
		if !l.Begin() {
			t.Fatal("Begin() during the hold: got false, want true")
		}
		l.End()
	}
	l.MarkReady()
	if l.Ready() || l.Phase() != core.Holding {
		t.Errorf("MarkReady during the hold: got phase %v ready %v, want holding, not ready", l.Phase(), l.Ready())
	}

	cancel() // ends the hour-long hold; the drain is forced at once
	recv(t, l.Draining(), "Draining()")
	if l.Begin() {
		t.Error("Begin() once draining: got true, want false")
	}
	err := recv(t, res, "Shutdown result")
	var fe *core.ForcedError
	if !errors.As(err, &fe) || fe.Abandoned != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: got %v, want a ForcedError with 1 abandoned and cause context.Canceled", err)
	}
	if !isClosed(l.Stopped()) || l.Phase() != core.Stopped {
		t.Fatalf("after Shutdown: got phase %v, Stopped closed %v; want stopped, true", l.Phase(), isClosed(l.Stopped()))
	}
	l.End()
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight() after End: got %d, want 0", got)
	}
	l.MarkReady()
	if l.Ready() || l.Phase() != core.Stopped {
		t.Errorf("MarkReady after shutdown: got phase %v ready %v, want stopped, not ready", l.Phase(), l.Ready())
	}
}

func TestShutdownFromStartingSkipsHold(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour))
	// Never ready: no load balancer routes here, so the hour is skipped.
	// 10s is not a speed target, only "long before the hour".
	start := time.Now()
	if err := l.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Shutdown from Starting took %v, want the hold skipped", d)
	}
	if l.Phase() != core.Stopped {
		t.Fatalf("Phase(): got %v, want stopped", l.Phase())
	}
}

func TestShutdownConcurrentCallsShareOneSequence(t *testing.T) {
	log := &callLog{}
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	s := newFakeServer("s", log)
	if err := l.Register(s); err != nil {
		t.Fatal(err)
	}
	l.MarkReady()
	if !l.Begin() {
		t.Fatal("Begin: got false")
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	cause := errors.New("deploy aborted")

	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = l.Shutdown(ctx) })
	}
	recv(t, l.Holding(), "Holding()")
	cancel(cause)
	wg.Wait()
	first := errs[0]
	var fe *core.ForcedError
	if !errors.As(first, &fe) || !errors.Is(fe.Cause, cause) || fe.Abandoned != 1 {
		t.Fatalf("Shutdown: got %v, want ForcedError{Abandoned: 1, Cause: %v}", first, cause)
	}
	for i, err := range errs {
		if err != first {
			t.Errorf("call %d: got %v (%p), want the same error as call 0", i, err, err)
		}
	}
	if again := l.Shutdown(t.Context()); again != first {
		t.Errorf("a later Shutdown: got %v, want the same error", again)
	}
	want := []string{"s.Hold", "s.Drain", "s.Close"}
	if got := log.get(); !slices.Equal(got, want) {
		t.Errorf("server calls: got %v, want %v (one sequence)", got, want)
	}
	l.End()
}

func TestShutdownCtxCancelledMidHold(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	l.MarkReady()
	ctx, cancel := context.WithCancelCause(t.Context())
	res := shutdownAsync(ctx, l)
	recv(t, l.Holding(), "Holding()")
	cause := errors.New("the platform is out of patience")
	cancel(cause)
	err := recv(t, res, "Shutdown after the ctx ended mid-hold")
	var fe *core.ForcedError
	if !errors.As(err, &fe) {
		t.Fatalf("Shutdown: got %v, want a *ForcedError", err)
	}
	if fe.Cause != cause || fe.Abandoned != 0 {
		t.Errorf("ForcedError: got {Abandoned: %d, Cause: %v}, want {0, %v}", fe.Abandoned, fe.Cause, cause)
	}
}

func TestDrainWaitsForInFlightWork(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	l.MarkReady()
	if !l.Begin() {
		t.Fatal("Begin: got false")
	}
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Draining(), "Draining()")
	if got := l.InFlight(); got != 1 {
		t.Fatalf("InFlight() at the drain: got %d, want 1", got)
	}
	select {
	case err := <-res:
		t.Fatalf("Shutdown returned %v with work in flight, want it to wait", err)
	case <-l.Stopped():
		t.Fatal("Stopped with work in flight")
	default:
	}
	l.End()
	if err := recv(t, res, "Shutdown after End"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil", err)
	}
}

func TestDrainTimeout(t *testing.T) {
	log := &callLog{}
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(100*time.Millisecond))
	a, b := newFakeServer("a", log), newFakeServer("b", log)
	for _, s := range []*fakeServer{a, b} {
		if err := l.Register(s); err != nil {
			t.Fatal(err)
		}
	}
	l.MarkReady()
	for range 2 {
		if !l.Begin() {
			t.Fatal("Begin: got false")
		}
	}
	err := l.Shutdown(t.Context())
	var fe *core.ForcedError
	if !errors.As(err, &fe) || fe.Abandoned != 2 || fe.Cause != core.ErrDrainTimeout {
		t.Fatalf("Shutdown: got %v, want ForcedError{Abandoned: 2, Cause: ErrDrainTimeout}", err)
	}
	if !errors.Is(err, core.ErrDrainTimeout) {
		t.Errorf("errors.Is(err, ErrDrainTimeout): got false")
	}
	calls := log.get()
	for _, name := range []string{"a", "b"} {
		i, j, k := slices.Index(calls, name+".Hold"), slices.Index(calls, name+".Drain"), slices.Index(calls, name+".Close")
		if i < 0 || j < i || k < j {
			t.Errorf("server %s calls: got %v, want Hold, Drain, Close in order", name, calls)
		}
	}
	l.End()
	l.End()
}

func TestDrainWaitsForServers(t *testing.T) {
	log := &callLog{}
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	s := newFakeServer("s", log)
	if err := l.Register(s); err != nil {
		t.Fatal(err)
	}
	res := shutdownAsync(t.Context(), l)
	recv(t, s.drainIn, "Server.Drain called")
	select {
	case err := <-res:
		t.Fatalf("Shutdown returned %v while a server drains", err)
	default:
	}
	close(s.release)
	if err := recv(t, res, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil", err)
	}
	if got, want := log.get(), []string{"s.Hold", "s.Drain"}; !slices.Equal(got, want) {
		t.Errorf("server calls: got %v, want %v (no Close after a finished drain)", got, want)
	}
}

func TestRegister(t *testing.T) {
	log := &callLog{}
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	l.MarkReady()
	ctx, cancel := context.WithCancel(t.Context())
	res := shutdownAsync(ctx, l)
	recv(t, l.Holding(), "Holding()")

	late := newFakeServer("late", log)
	if err := l.Register(late); err != nil {
		t.Fatalf("Register during the hold: %v", err)
	}
	if got, want := log.get(), []string{"late.Hold"}; !slices.Equal(got, want) {
		t.Fatalf("Register during the hold: got calls %v, want %v at once", got, want)
	}
	close(late.release)
	cancel()
	recv(t, l.Draining(), "Draining()")
	if err := l.Register(newFakeServer("too late", log)); !errors.Is(err, core.ErrShuttingDown) {
		t.Errorf("Register once draining: got %v, want ErrShuttingDown", err)
	}
	recv(t, res, "Shutdown")
	if got := log.get(); !slices.Contains(got, "late.Drain") {
		t.Errorf("server registered during the hold: got calls %v, want it drained", got)
	}
	if err := l.Register(newFakeServer("stopped", log)); !errors.Is(err, core.ErrShuttingDown) {
		t.Errorf("Register once stopped: got %v, want ErrShuttingDown", err)
	}
}

// TestShutdownFromTrackedWork pins down what happens when tracked work
// calls Shutdown: it waits for itself, so the drain runs to its timeout
// and the caller is counted as abandoned. Started on a new goroutine, the
// same shutdown drains cleanly as soon as the work ends.
func TestShutdownFromTrackedWork(t *testing.T) {
	t.Run("same goroutine waits for the drain timeout", func(t *testing.T) {
		l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(100*time.Millisecond))
		l.MarkReady()
		if !l.Begin() {
			t.Fatal("Begin: got false")
		}
		err := l.Shutdown(t.Context()) // from inside the tracked work
		l.End()
		var fe *core.ForcedError
		if !errors.As(err, &fe) || fe.Abandoned != 1 || fe.Cause != core.ErrDrainTimeout {
			t.Fatalf("Shutdown from tracked work: got %v, want ForcedError{Abandoned: 1, Cause: ErrDrainTimeout}", err)
		}
	})
	t.Run("new goroutine drains", func(t *testing.T) {
		l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
		l.MarkReady()
		if !l.Begin() {
			t.Fatal("Begin: got false")
		}
		res := shutdownAsync(context.Background(), l)
		l.End() // the work returns
		if err := recv(t, res, "Shutdown"); err != nil {
			t.Fatalf("Shutdown: got %v, want nil", err)
		}
	})
}

func TestForcedErrorMessage(t *testing.T) {
	err := &core.ForcedError{Abandoned: 3, Cause: core.ErrDrainTimeout}
	want := "lameduck: shutdown forced (lameduck: drain timeout exceeded): 3 requests abandoned"
	if got := err.Error(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
