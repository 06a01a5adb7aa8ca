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
	if l.Phase() == core.Serving {
		t.Fatal("Ready() before MarkReady: got true, want false")
	}
	l.MarkReady()
	if got := l.Phase(); got != core.Serving {
		t.Fatalf("Phase() after MarkReady: got %v, want serving", got)
	}
	if !(l.Phase() == core.Serving) {
		t.Fatal("Ready() while serving: got false, want true")
	}
	if isClosed(l.Reached(core.Holding)) || isClosed(l.Reached(core.Draining)) || isClosed(l.Reached(core.Stopped)) {
		t.Fatal("a phase channel is closed while serving")
	}
	if !l.Begin() {
		t.Fatal("Begin() while serving: got false, want true")
	}

	ctx, cancel := context.WithCancel(t.Context())
	res := shutdownAsync(ctx, l)
	recv(t, l.Reached(core.Holding), "Holding()")
	if got := l.Phase(); got != core.Holding {
		t.Errorf("Phase() after Holding closed: got %v, want holding", got)
	}
	if l.Phase() == core.Serving {
		t.Error("Ready() while holding: got true, want false")
	}
	if isClosed(l.Reached(core.Draining)) || isClosed(l.Reached(core.Stopped)) {
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
	if (l.Phase() == core.Serving) || l.Phase() != core.Holding {
		t.Errorf("MarkReady during the hold: got phase %v ready %v, want holding, not ready", l.Phase(), (l.Phase() == core.Serving))
	}

	// Shutdown's ctx bounds its wait, not the sequence.
	cancel()
	if err := recv(t, res, "Shutdown result"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with its ctx ended: got %v, want context.Canceled", err)
	}
	if got := l.Phase(); got != core.Holding {
		t.Fatalf("Phase() once Shutdown's ctx ended: got %v, want holding", got)
	}
	cause := errors.New("end the hour-long hold")
	l.Force(cause) // the drain is forced at once
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	err := l.Shutdown(t.Context())
	var fe *core.ForcedError
	if !errors.As(err, &fe) || fe.Abandoned != 1 || fe.Cause != cause {
		t.Fatalf("Shutdown: got %v, want a ForcedError with 1 abandoned and cause %v", err, cause)
	}
	if !isClosed(l.Reached(core.Stopped)) || l.Phase() != core.Stopped {
		t.Fatalf("after Shutdown: got phase %v, Stopped closed %v; want stopped, true", l.Phase(), isClosed(l.Reached(core.Stopped)))
	}
	l.End()
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight() after End: got %d, want 0", got)
	}
	if l.Begin() {
		t.Error("Begin() once stopped: got true, want false: nothing waits for it")
	}
	l.MarkReady()
	if (l.Phase() == core.Serving) || l.Phase() != core.Stopped {
		t.Errorf("MarkReady after shutdown: got phase %v ready %v, want stopped, not ready", l.Phase(), (l.Phase() == core.Serving))
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
	if err := l.Add(s); err != nil {
		t.Fatal(err)
	}
	l.MarkReady()
	if !l.Begin() {
		t.Fatal("Begin: got false")
	}
	ctx := t.Context()
	cause := errors.New("deploy aborted")

	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = l.Shutdown(ctx) })
	}
	recv(t, l.Reached(core.Holding), "Holding()")
	l.Force(cause)
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
	// Forced during the hold, Close follows Drain at once: the two calls
	// may be logged in either order.
	got := log.get()
	slices.Sort(got[1:])
	if want := []string{"s.Hold", "s.Close", "s.Drain"}; !slices.Equal(got, want) {
		t.Errorf("server calls: got %v, want Hold, then Drain and Close once each (one sequence)", log.get())
	}
	l.End()
}

// TestShutdownEndedCtxStillHoldsAndDrains pins down the common
// signal.NotifyContext pattern: Shutdown called with a ctx that has
// already ended returns at once with ctx's error, but the sequence still
// runs its hold and its drain, and work in flight finishes.
func TestShutdownEndedCtxStillHoldsAndDrains(t *testing.T) {
	const hold = 200 * time.Millisecond
	l := newLifecycle(t, core.WithHold(hold), core.WithDrainTimeout(time.Hour))
	l.MarkReady()
	if !l.Begin() {
		t.Fatal("Begin: got false")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if err := l.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with an ended ctx: got %v, want context.Canceled at once", err)
	}
	if got := l.Phase(); got != core.Holding {
		t.Fatalf("Phase() after Shutdown returned: got %v, want holding", got)
	}
	// The hold runs in full; the work in flight is still served.
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	if d := time.Since(start); d < hold {
		t.Errorf("the hold lasted %v, want at least %v: an ended ctx must not skip it", d, hold)
	}
	select {
	case <-l.Reached(core.Stopped):
		t.Fatal("stopped with work in flight: the drain was skipped")
	default:
	}
	l.End()
	if err := l.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: got %v, want nil (drained)", err)
	}
}

// TestForceMidHold checks that Force ends the hold at once and is
// reported as forced, with its cause.
func TestForceMidHold(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	l.MarkReady()
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Holding), "Reached(Holding)")
	cause := errors.New("the platform is out of patience")
	l.Force(cause)
	err := recv(t, res, "Shutdown after Force mid-hold")
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
	recv(t, l.Reached(core.Draining), "Draining()")
	if got := l.InFlight(); got != 1 {
		t.Fatalf("InFlight() at the drain: got %d, want 1", got)
	}
	// Work that reaches a server during the drain is served and waited for.
	if !l.Begin() {
		t.Fatal("Begin() once draining: got false, want true")
	}
	l.End()
	select {
	case err := <-res:
		t.Fatalf("Shutdown returned %v with work in flight, want it to wait", err)
	case <-l.Reached(core.Stopped):
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
		if err := l.Add(s); err != nil {
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
	if err := l.Add(s); err != nil {
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

func TestAdd(t *testing.T) {
	log := &callLog{}
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	if err := l.Add(nil); err == nil {
		t.Error("Add(nil): got nil, want an error")
	}
	early := newFakeServer("early", log)
	if err := l.Add(early); err != nil {
		t.Fatalf("Add before Run: %v", err)
	}
	run(t, l)
	late := newFakeServer("late", log) // started at once by the running Run
	if err := l.Add(late); err != nil {
		t.Fatalf("Add while serving: %v", err)
	}
	close(early.release)
	close(late.release)
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Holding), "Reached(Holding)")
	if err := l.Add(newFakeServer("too late", log)); !errors.Is(err, core.ErrShuttingDown) {
		t.Errorf("Add during the hold: got %v, want ErrShuttingDown", err)
	}
	l.Force(errors.New("end the hour-long hold"))
	recv(t, res, "Shutdown")
	got := log.get()
	for _, want := range []string{"early.Hold", "early.Drain", "late.Hold", "late.Drain"} {
		if !slices.Contains(got, want) {
			t.Errorf("server calls: got %v, want %s among them", got, want)
		}
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
