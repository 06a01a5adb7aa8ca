package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Errors reported by a [Lifecycle].
var (
	// ErrDrainTimeout is the cause of a shutdown forced because in-flight
	// work outlived the drain timeout.
	ErrDrainTimeout = errors.New("lameduck: drain timeout exceeded")
	// ErrSecondSignal is the cause of a shutdown forced by a second signal
	// to [Lifecycle.Run].
	ErrSecondSignal = errors.New("lameduck: second signal")
	// ErrShuttingDown is returned by [Lifecycle.Register] once the drain
	// has started: a server registered that late would never be drained.
	ErrShuttingDown = errors.New("lameduck: shutting down")
)

// ForcedError reports a shutdown whose drain did not finish by itself: the
// remaining work was closed. Cause is [ErrDrainTimeout], [ErrSecondSignal]
// or the cause of the context given to [Lifecycle.Shutdown].
type ForcedError struct {
	// Abandoned is the number of tracked requests still in flight when
	// the servers were closed.
	Abandoned int64
	// Cause says why the drain was cut short.
	Cause error
}

func (e *ForcedError) Error() string {
	return fmt.Sprintf("lameduck: shutdown forced (%v): %d requests abandoned", e.Cause, e.Abandoned)
}

// Unwrap returns the cause, so errors.Is(err, ErrDrainTimeout) works.
func (e *ForcedError) Unwrap() error { return e.Cause }

// A Server is something whose shutdown a [Lifecycle] drives, such as an
// *http.Server (see [Lifecycle.BindHTTP]) or a gRPC server. Its methods
// are called once each, in this order, from the shutdown sequence.
type Server interface {
	// Hold is called when the hold starts. The server keeps serving
	// everything; it may stop keep-alives or report itself not serving.
	// Hold must not block.
	Hold()
	// Drain stops accepting new work and returns nil once the work it
	// had accepted is finished, or ctx's error when ctx ends first.
	Drain(ctx context.Context) error
	// Close ends whatever work is left. It is called only when the drain
	// did not finish.
	Close() error
}

// Lifecycle drives a service through its phases (see [Phase]) and runs
// the shutdown sequence: readiness fails at once, the hold keeps serving
// while load balancers converge, then the drain stops accepting and waits
// for in-flight work, forcing the rest at the drain timeout.
//
// Create one with [New]. A Lifecycle is safe for concurrent use.
type Lifecycle struct {
	cfg config
	log *slog.Logger
	tel telemetry

	phase    atomic.Int32
	inflight atomic.Int64
	idle     chan struct{} // pinged when inflight drops to zero while draining

	holding  chan struct{}
	draining chan struct{}
	stopped  chan struct{}

	// force ends the hold and the drain early; its cause says why.
	force       context.Context
	forceCancel context.CancelCauseFunc

	running     chan struct{} // closed once Run catches signals
	runningOnce sync.Once

	mu      sync.Mutex // guards the fields below
	servers []Server
	started bool
	trigger string
	err     error
}

// New returns a Lifecycle in the [Starting] phase. It returns an error
// when the hold is negative, the drain timeout is not positive, or, with
// [WithGracePeriod], the hold plus the drain timeout exceed the grace
// period.
func New(opts ...Option) (*Lifecycle, error) {
	cfg := newConfig(opts)
	switch {
	case cfg.hold < 0:
		return nil, fmt.Errorf("lameduck: hold must not be negative, got %v", cfg.hold)
	case cfg.drainTimeout <= 0:
		return nil, fmt.Errorf("lameduck: drain timeout must be positive, got %v", cfg.drainTimeout)
	case cfg.graceSet && cfg.grace <= 0:
		return nil, fmt.Errorf("lameduck: grace period must be positive, got %v", cfg.grace)
	case cfg.graceSet && cfg.hold+cfg.drainTimeout > cfg.grace:
		return nil, fmt.Errorf("lameduck: hold %v + drain timeout %v = %v exceeds the grace period %v",
			cfg.hold, cfg.drainTimeout, cfg.hold+cfg.drainTimeout, cfg.grace)
	case len(cfg.signals) == 0:
		return nil, errors.New("lameduck: WithSignals needs at least one signal")
	case cfg.progress <= 0:
		return nil, fmt.Errorf("lameduck: progress interval must be positive, got %v", cfg.progress)
	}
	l := &Lifecycle{
		cfg:      cfg,
		log:      cfg.logger,
		idle:     make(chan struct{}, 1),
		holding:  make(chan struct{}),
		draining: make(chan struct{}),
		stopped:  make(chan struct{}),
		running:  make(chan struct{}),
	}
	l.force, l.forceCancel = context.WithCancelCause(context.Background())
	if err := l.tel.init(l); err != nil {
		return nil, err
	}
	return l, nil
}

// Hold returns the configured hold.
func (l *Lifecycle) Hold() time.Duration { return l.cfg.hold }

// DrainTimeout returns the configured drain timeout.
func (l *Lifecycle) DrainTimeout() time.Duration { return l.cfg.drainTimeout }

// MarkReady moves a Starting lifecycle to [Serving]; until then it is not
// ready. It does nothing in any other phase.
func (l *Lifecycle) MarkReady() {
	if l.phase.CompareAndSwap(int32(Starting), int32(Serving)) {
		l.log.Info("lameduck: serving")
	}
}

// Phase returns the current phase.
func (l *Lifecycle) Phase() Phase { return Phase(l.phase.Load()) }

// Ready reports whether the service should receive new traffic: true only
// in the [Serving] phase.
func (l *Lifecycle) Ready() bool { return l.Phase() == Serving }

// Holding returns a channel that is closed when the hold starts, that is
// as soon as the shutdown starts.
func (l *Lifecycle) Holding() <-chan struct{} { return l.holding }

// Draining returns a channel that is closed when the drain starts.
// Long-lived handlers (server-sent events, websockets, streams) should
// finish when it closes, or the drain waits for them until its timeout.
func (l *Lifecycle) Draining() <-chan struct{} { return l.draining }

// Stopped returns a channel that is closed when the shutdown sequence has
// finished.
func (l *Lifecycle) Stopped() <-chan struct{} { return l.stopped }

// Begin records the start of a unit of work (a request, an RPC) and
// reports whether it may proceed. It returns false once the drain has
// started; the caller must then refuse the work and not call End. After a
// true result the caller must call [Lifecycle.End] exactly once, typically
// deferred so that a panic does not leak the count. Begin does not
// allocate or lock.
func (l *Lifecycle) Begin() bool {
	l.inflight.Add(1)
	if Phase(l.phase.Load()) >= Draining {
		l.End()
		return false
	}
	return true
}

// End records the end of a unit of work started by a successful Begin.
func (l *Lifecycle) End() {
	if l.inflight.Add(-1) == 0 && Phase(l.phase.Load()) >= Draining {
		select {
		case l.idle <- struct{}{}:
		default:
		}
	}
}

// InFlight returns the number of units of work between Begin and End.
func (l *Lifecycle) InFlight() int64 { return l.inflight.Load() }

// Register adds a server whose shutdown the lifecycle drives. A server
// registered during the hold has its Hold called at once. Register
// returns [ErrShuttingDown] once the drain has started.
func (l *Lifecycle) Register(s Server) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Phase() >= Draining {
		return ErrShuttingDown
	}
	l.servers = append(l.servers, s)
	if l.Phase() == Holding {
		s.Hold()
	}
	return nil
}

// Shutdown runs the shutdown sequence and returns when it has finished:
//
//  1. readiness fails at once and registered servers are told to hold;
//  2. for the hold, everything is still served (a service that never
//     became ready skips the hold: no load balancer routes to it);
//  3. the drain stops the servers accepting and waits until every
//     tracked request has ended and every server has finished its work;
//  4. if that takes longer than the drain timeout, the servers are
//     closed and Shutdown returns a [*ForcedError] with the number of
//     requests abandoned; otherwise it returns nil.
//
// The sequence runs once: concurrent and later calls wait for the same
// sequence and return the same result. If ctx ends first, the rest of the
// hold is skipped and the drain is forced at once, with ctx's cause as
// the ForcedError's cause. Shutdown does not exit the process. Closing
// the servers does not stop handlers that are still running: their
// writes fail from then on, and [Lifecycle.InFlight] counts them until
// they return.
//
// Shutdown may be called before any server serves: a service never
// marked ready skips the hold, and an *http.Server bound with
// [Lifecycle.BindHTTP] whose Serve is called afterwards returns
// [net/http.ErrServerClosed] at once.
//
// Shutdown waits for every tracked request, so a request handler (or any
// work between Begin and End) that calls Shutdown waits for itself: the
// drain cannot finish before the drain timeout, and Shutdown then returns
// a [*ForcedError] that counts the caller among the abandoned. Start the
// shutdown from such work with go l.Shutdown(context.Background()) and
// return, or watch [Lifecycle.Draining].
func (l *Lifecycle) Shutdown(ctx context.Context) error {
	return l.wait(ctx, l.start("api"))
}

// ShutdownFrom is [Lifecycle.Shutdown] with the trigger that is logged and
// recorded on the shutdown span, such as "prestop". The trigger of the
// call that starts the sequence wins.
func (l *Lifecycle) ShutdownFrom(ctx context.Context, trigger string) error {
	return l.wait(ctx, l.start(trigger))
}

func (l *Lifecycle) wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
	case <-ctx.Done():
		l.forceCancel(context.Cause(ctx))
		<-done
	}
	return l.result()
}

// start begins the shutdown sequence unless it already began, and returns
// the channel closed when it ends. The move to Holding happens here, under
// the lock and before start returns, so that readiness fails at once and a
// MarkReady racing with the shutdown can no longer make the service ready
// (it used to be done by the sequence's goroutine, leaving a window in
// which MarkReady moved a shutting-down service back to Serving).
func (l *Lifecycle) start(trigger string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		l.log.Info("lameduck: joining the running shutdown", "trigger", trigger,
			"started_by", l.trigger, "phase", l.Phase())
		return l.stopped
	}
	l.started = true
	l.trigger = trigger
	start := time.Now()
	ctx := l.tel.startShutdown(trigger, l.cfg.hold, l.cfg.drainTimeout)
	holdSpan := l.tel.startPhase(ctx, SpanHold)
	var was Phase
	for {
		was = Phase(l.phase.Load())
		if l.phase.CompareAndSwap(int32(was), int32(Holding)) {
			break
		}
	}
	close(l.holding)
	servers := append([]Server(nil), l.servers...)
	go l.sequence(ctx, trigger, start, was == Serving, holdSpan, servers)
	return l.stopped
}

// sequence runs the rest of the shutdown once start has entered the hold.
func (l *Lifecycle) sequence(ctx context.Context, trigger string, start time.Time, wasServing bool, holdSpan trace.Span, servers []Server) {
	hold := l.cfg.hold
	if !wasServing {
		hold = 0 // never ready: no load balancer routes here
	}

	// Hold: readiness fails, everything is still served.
	for _, s := range servers {
		s.Hold()
	}
	l.log.Info("lameduck: holding", "trigger", trigger, "hold", hold,
		"drain_timeout", l.cfg.drainTimeout, "in_flight", l.InFlight())
	if hold > 0 {
		t := time.NewTimer(hold)
		select {
		case <-t.C:
		case <-l.force.Done():
			t.Stop()
		}
	}
	held := time.Since(start)
	l.tel.endPhase(ctx, holdSpan, "hold", held, nil)

	// Drain: stop accepting, wait for in-flight work, force at the timeout.
	drainStart := time.Now()
	servers, atDrain := l.enter(Draining, l.draining)
	l.log.Info("lameduck: draining", "held", held.Round(time.Millisecond),
		"in_flight", atDrain, "timeout", l.cfg.drainTimeout)
	drainSpan := l.tel.startPhase(ctx, SpanDrain, AttrInFlight.Int64(atDrain))
	dctx, cancel := context.WithTimeoutCause(l.force, l.cfg.drainTimeout, ErrDrainTimeout)
	var ferr *ForcedError
	if !l.drain(dctx, servers, drainStart) {
		ferr = &ForcedError{Abandoned: l.InFlight(), Cause: context.Cause(dctx)}
		for _, s := range servers {
			if err := s.Close(); err != nil {
				l.log.Warn("lameduck: closing a server", "err", err)
			}
		}
	}
	cancel()
	drained := time.Since(drainStart)
	l.tel.endPhase(ctx, drainSpan, "drain", drained, ferr)
	l.tel.endShutdown(ctx, ferr)

	total := time.Since(start).Round(time.Millisecond)
	if ferr != nil {
		l.log.Error("lameduck: stopped", "drained", false, "abandoned", ferr.Abandoned,
			"cause", ferr.Cause, "drain", drained.Round(time.Millisecond), "total", total)
	} else {
		l.log.Info("lameduck: stopped", "drained", true, "drain", drained.Round(time.Millisecond), "total", total)
	}
	l.mu.Lock()
	if ferr != nil {
		l.err = ferr // a nil *ForcedError must not become a non-nil error
	}
	l.mu.Unlock()
	l.enter(Stopped, l.stopped)
}

// enter moves to phase p, closes its channel and returns the servers
// registered so far and the work in flight as the phase started. The
// count is read before the channel closes, so that work ending when a
// watcher of the channel sees it close is still counted.
func (l *Lifecycle) enter(p Phase, ch chan struct{}) ([]Server, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase.Store(int32(p))
	n := l.InFlight()
	close(ch)
	return append([]Server(nil), l.servers...), n
}

// drain waits for the servers and the tracked work to finish, logging
// progress at the configured interval. It reports whether all finished
// before ctx ended.
func (l *Lifecycle) drain(ctx context.Context, servers []Server, start time.Time) bool {
	var (
		wg   sync.WaitGroup
		busy atomic.Int32
	)
	busy.Store(int32(len(servers)))
	for _, s := range servers {
		wg.Go(func() {
			if err := s.Drain(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("lameduck: draining a server", "err", err)
			}
			busy.Add(-1)
		})
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	defer func() { <-allDone }() // a server's Drain returns once ctx ends

	// Forced before the drain began (ctx or a second signal during the
	// hold): the drain is forced at once, even if nothing is in flight,
	// so that the caller learns that the sequence was cut short.
	if ctx.Err() != nil {
		return false
	}

	tick := time.NewTicker(l.cfg.progress)
	defer tick.Stop()
	serversDone := allDone
	for l.inflight.Load() > 0 || busy.Load() > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-l.idle:
		case <-serversDone:
			serversDone = nil // fired; a nil channel blocks
		case <-tick.C:
			left := l.cfg.drainTimeout - time.Since(start)
			if left <= 0 || ctx.Err() != nil {
				continue // being forced: the stop line says it
			}
			l.log.Info("lameduck: drain in progress", "in_flight", l.InFlight(), "servers_busy", busy.Load(),
				"forced_in", left.Round(100*time.Millisecond))
		}
	}
	return true
}
