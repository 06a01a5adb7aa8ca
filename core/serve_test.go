package core_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

// failingServer is a Server whose Serve returns err once fail is closed,
// and that records the rest of the calls like fakeServer.
type failingServer struct {
	*fakeServer
	fail chan struct{}
	err  error
}

func (f *failingServer) Serve() error {
	select {
	case <-f.fail:
		return f.err
	case <-f.stop:
		return nil
	}
}

// TestRunServeFailure checks that a server failing after Run started it
// starts the shutdown, and that Run returns that failure: not nil, not a
// ForcedError, so that a service exits non-zero.
func TestRunServeFailure(t *testing.T) {
	log := &callLog{}
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Hour))
	boom := errors.New("accept: too many open files")
	bad := &failingServer{fakeServer: newFakeServer("bad", log), fail: make(chan struct{}), err: boom}
	good := newFakeServer("good", log)
	close(bad.release)
	close(good.release)
	for _, s := range []core.Server{bad, good} {
		if err := l.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	res := make(chan error, 1)
	go func() { res <- l.Run(context.Background()) }()
	recv(t, l.Reached(core.Serving), "Reached(Serving)")
	close(bad.fail)
	// The service was ready, so the hour-long hold runs: readiness
	// fails at once, and the test ends the hold.
	recv(t, l.Reached(core.Holding), "the failure starting the shutdown")
	l.Force(errors.New("end the hour-long hold"))
	err := recv(t, res, "Run")
	if !errors.Is(err, boom) {
		t.Fatalf("Run: got %v, want the serve failure %v", err, boom)
	}
	got := log.get()
	for _, want := range []string{"bad.Hold", "bad.Drain", "good.Hold", "good.Drain"} {
		if !slices.Contains(got, want) {
			t.Errorf("server calls: got %v, want %s among them", got, want)
		}
	}
}

// TestRunServeReturnsNilEarly checks that a Serve returning nil before the
// drain is a failure too: the service cannot serve any more.
func TestRunServeReturnsNilEarly(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0))
	s := &failingServer{fakeServer: newFakeServer("s", &callLog{}), fail: make(chan struct{})}
	close(s.release)
	close(s.fail) // Serve returns nil at once
	if err := l.Add(s); err != nil {
		t.Fatal(err)
	}
	err := l.Run(context.Background())
	var fe *core.ForcedError
	if err == nil || errors.As(err, &fe) {
		t.Fatalf("Run: got %v, want a failure that is not a ForcedError", err)
	}
}

func TestRunTwice(t *testing.T) {
	l := newLifecycle(t, core.WithHold(0))
	res := run(t, l)
	if err := l.Run(context.Background()); err == nil {
		t.Error("a second Run: got nil, want an error")
	}
	if err := l.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, res, "Run"); err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}
}

// TestShutdownBeforeRun checks that Run after a finished shutdown serves
// nothing and returns the shutdown's result at once.
func TestShutdownBeforeRun(t *testing.T) {
	log := &callLog{}
	l := newLifecycle(t, core.WithHold(time.Hour))
	s := newFakeServer("s", log)
	close(s.release)
	if err := l.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := l.Shutdown(t.Context()); err != nil { // never ready: no hold
		t.Fatalf("Shutdown: %v", err)
	}
	if err := l.Run(context.Background()); err != nil {
		t.Fatalf("Run after the shutdown: got %v, want nil", err)
	}
	if got, want := log.get(), []string{"s.Hold", "s.Drain"}; !slices.Equal(got, want) {
		t.Errorf("server calls: got %v, want %v", got, want)
	}
}

// stubbornServer's Drain ignores its ctx until unblock is closed.
type stubbornServer struct {
	*fakeServer
	unblock chan struct{}
	closed  chan struct{}
}

func (s *stubbornServer) Drain(context.Context) error {
	s.log.add(s.name + ".Drain")
	<-s.unblock
	return nil
}

func (s *stubbornServer) Close() error {
	close(s.closed)
	return s.fakeServer.Close()
}

// TestDrainIgnoringCtxCannotHang checks that a Server whose Drain ignores
// its ctx does not block the shutdown: at the drain timeout Close is
// called although Drain has not returned, and the lifecycle waits for it
// a bounded time only.
func TestDrainIgnoringCtxCannotHang(t *testing.T) {
	const timeout = 100 * time.Millisecond
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(timeout))
	s := &stubbornServer{fakeServer: newFakeServer("s", &callLog{}), unblock: make(chan struct{}), closed: make(chan struct{})}
	defer close(s.unblock) // so that the Drain goroutine ends before goleak looks
	if err := l.Add(s); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := recv(t, shutdownAsync(t.Context(), l), "Shutdown with a Drain that ignores ctx")
	var fe *core.ForcedError
	if !errors.As(err, &fe) || fe.Cause != core.ErrDrainTimeout {
		t.Fatalf("Shutdown: got %v, want a ForcedError caused by the drain timeout", err)
	}
	if !isClosed(s.closed) {
		t.Error("Close was not called while Drain had not returned")
	}
	// The timeout plus the bounded wait of a second; 5s of slack only
	// absorbs a loaded machine.
	if d := time.Since(start); d > timeout+time.Second+5*time.Second {
		t.Errorf("Shutdown took %v, want about the drain timeout plus a second", d)
	}
}

// TestForcedDrainNeverReportedDrained checks that a Drain that returned
// because the drain timeout ended counts as forced, though nothing is
// tracked in flight: whichever the order in which the drain sees the
// timeout and the Drain's return, the result is a ForcedError. The race
// showed in about half the runs, so it is repeated.
func TestForcedDrainNeverReportedDrained(t *testing.T) {
	for i := range 50 {
		l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(5*time.Millisecond))
		s := newFakeServer("busy", &callLog{}) // its Drain waits for ctx
		if err := l.Add(s); err != nil {
			t.Fatal(err)
		}
		err := l.Shutdown(t.Context())
		var fe *core.ForcedError
		if !errors.As(err, &fe) || fe.Cause != core.ErrDrainTimeout {
			t.Fatalf("run %d: Shutdown: got %v, want a ForcedError: a busy server was cut at the timeout", i, err)
		}
	}
}

// TestRunWithEndedCtxSkipsTheHold checks that a Run whose ctx has already
// ended (a signal.NotifyContext that fired during a slow startup) never
// marks the service ready, so it does not hold.
func TestRunWithEndedCtxSkipsTheHold(t *testing.T) {
	l := newLifecycle(t, core.WithHold(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res := make(chan error, 1)
	go func() { res <- l.Run(ctx) }()
	if err := recv(t, res, "Run with an ended ctx"); err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}
	select {
	case <-l.Reached(core.Serving):
	default:
		t.Fatal("Reached(Serving) not closed once stopped")
	}
}
