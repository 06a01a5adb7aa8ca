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
	// ErrShuttingDown is returned by [Lifecycle.Add] (and the calls that
	// listen and add) once the shutdown has started: a server added that
	// late would never be held or drained.
	ErrShuttingDown = errors.New("lameduck: shutting down")
)

// errForced is the cause of [Lifecycle.Force] called with a nil cause.
var errForced = errors.New("lameduck: forced")

// closeWait bounds how long, after the drain timeout closed the servers,
// the lifecycle waits for a [Server.Drain] or [Server.Close] that has not
// returned. It fits in the margin of [CheckBudget].
const closeWait = time.Second

// ForcedError reports a shutdown whose drain did not finish by itself: the
// remaining work was closed. Cause is [ErrDrainTimeout], [ErrSecondSignal]
// or the cause given to [Lifecycle.Force].
type ForcedError struct {
	// Abandoned is the number of requests cut off when the servers were
	// closed: the tracked requests whose handler was still running and,
	// for the servers of [Lifecycle.ListenHTTP], the responses whose
	// connection was still busy although their handler had returned (a
	// final flush blocked by a client that does not read, an HTTP/2
	// stream waiting for its flow-control window, a slow upload that
	// net/http reads before it answers), or whose last bytes were still
	// in the socket's send queue (Linux). Abandoned is 0 only if nothing
	// was cut; the shutdown span's lameduck.drain.abandoned attribute and
	// the lameduck.requests.abandoned counter say the same.
	Abandoned int64
	// Cause says why the drain was cut short.
	Cause error
}

func (e *ForcedError) Error() string {
	return fmt.Sprintf("lameduck: shutdown forced (%v): %d requests abandoned", e.Cause, e.Abandoned)
}

// Unwrap returns the cause, so errors.Is(err, ErrDrainTimeout) works.
func (e *ForcedError) Unwrap() error { return e.Cause }

// A Server is something a [Lifecycle] starts and stops: an *http.Server
// added by [Lifecycle.ListenHTTP], a gRPC server (grpcadapter.Listen), or
// a server of your own added with [Lifecycle.Add]. [Lifecycle.Run] calls
// Serve on a goroutine of its own; the shutdown sequence then calls Hold,
// Drain and, if the drain did not finish, Close, once each and in that
// order.
type Server interface {
	// Serve serves until the server is drained or closed. It must be
	// listening already, so that the service is ready as soon as Serve
	// is called. A Serve that returns before the drain began, with an
	// error or nil, is a failure: it starts the shutdown and Run
	// returns its error.
	Serve() error
	// Hold is called when the hold starts. The server keeps serving
	// everything; it may tell clients to go elsewhere. Hold must not
	// block.
	Hold()
	// Drain stops accepting new work and returns nil once the work it
	// had accepted is finished, or ctx's error when ctx ends first.
	Drain(ctx context.Context) error
	// Close ends whatever work is left. It is called only when the drain
	// did not finish, even if Drain has not returned.
	Close() error
}

// Lifecycle starts a service's servers, marks it ready, and on shutdown
// runs the sequence of [Lifecycle.Shutdown]: readiness fails at once, the
// hold keeps serving while load balancers converge, then the drain stops
// accepting and waits for in-flight work, forcing the rest at the drain
// timeout.
//
// Create one with [New]. A Lifecycle is safe for concurrent use.
type Lifecycle struct {
	cfg config
	log *slog.Logger
	tel telemetry

	phase    atomic.Int32
	inflight atomic.Int64
	idle     chan struct{} // pinged when inflight drops to zero while draining

	// reached[p] is closed once the phase is p or later.
	reached [Stopped + 1]chan struct{}

	// force ends the hold and the drain early; its cause says why.
	force       context.Context
	forceCancel context.CancelCauseFunc

	serving sync.WaitGroup // Serve calls still running

	// Of the adaptive hold, in Unix nanoseconds: when it began, and when
	// new traffic last arrived (see WithAdaptiveHold).
	holdStart atomic.Int64
	lastNew   atomic.Int64

	// sendq keeps the sockets of the HTTP connections closed during the
	// shutdown open until their peers have acknowledged every byte.
	sendq        sendQueues
	sendqRelease context.CancelFunc // ends the lingering; set by start

	mu      sync.Mutex // guards the fields below
	servers []Server
	running bool // Run has started the servers
	started bool // the shutdown sequence has started
	trigger string
	failure error // the first Serve that failed
	err     error // a *ForcedError once the sequence has been forced
}

// New returns a Lifecycle in the [Starting] phase. It returns an error
// when an option's value is invalid: a negative hold, a drain timeout that
// is not positive, or, with [WithGracePeriod], a budget that
// [CheckBudget] rejects.
func New(opts ...Option) (*Lifecycle, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	l := &Lifecycle{cfg: cfg, log: cfg.logger, idle: make(chan struct{}, 1)}
	for i := range l.reached {
		l.reached[i] = make(chan struct{})
	}
	close(l.reached[Starting])
	l.force, l.forceCancel = context.WithCancelCause(context.Background())
	if err := l.tel.init(l); err != nil {
		return nil, err
	}
	return l, nil
}

// Phase returns the current phase.
func (l *Lifecycle) Phase() Phase { return Phase(l.phase.Load()) }

// Reached returns a channel that is closed once the lifecycle is in phase
// p or a later one. Long-lived handlers (server-sent events, websockets,
// streams) should finish when Reached([Draining]) closes, or the drain
// waits for them until its timeout. Reached panics if p is not a [Phase]
// constant.
func (l *Lifecycle) Reached(p Phase) <-chan struct{} {
	if p < Starting || p > Stopped {
		panic(fmt.Sprintf("lameduck: Reached(%v): not a phase", p))
	}
	return l.reached[p]
}

// Begin records the start of a unit of work (a request, an RPC) that the
// drain waits for, and reports whether it may proceed. Work that reached
// a server is served in every phase, the drain included (refusing new
// work is the protocol's business: a closed listener, a GOAWAY); Begin
// returns false only once the shutdown sequence has finished, when
// nothing waits for the work any more. After a true result the caller
// must call [Lifecycle.End] exactly once, typically deferred so that a
// panic does not leak the count. Begin does not allocate or lock. The
// servers of [Lifecycle.ListenHTTP] and grpcadapter.Listen track their
// requests themselves; call Begin only for a server of your own.
func (l *Lifecycle) Begin() bool {
	l.inflight.Add(1)
	if Phase(l.phase.Load()) == Stopped {
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

// inFlight returns the number of units of work between Begin and End.
func (l *Lifecycle) inFlight() int64 { return l.inflight.Load() }

// Add adds a server that the lifecycle starts and stops (see [Server]).
// Servers added before [Lifecycle.Run] are started by Run; one added while
// Run serves is started at once. Add returns [ErrShuttingDown] once the
// shutdown has started, and an error for a nil server.
func (l *Lifecycle) Add(s Server) error {
	if s == nil {
		return errors.New("lameduck: Add of a nil Server")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		return ErrShuttingDown
	}
	l.servers = append(l.servers, s)
	if l.running {
		l.serve(s)
	}
	return nil
}

// serve calls s.Serve on a goroutine of its own; l.mu is held.
func (l *Lifecycle) serve(s Server) {
	l.serving.Add(1)
	go func() {
		defer l.serving.Done()
		err := s.Serve()
		if l.Phase() >= Draining {
			if err != nil {
				l.log.Debug("lameduck: server stopped", "err", err)
			}
			return
		}
		if err == nil {
			err = errors.New("lameduck: a server stopped serving before the shutdown")
		}
		l.fail(err)
	}()
}

// fail records the first failure of a server and starts the shutdown.
func (l *Lifecycle) fail(err error) {
	l.mu.Lock()
	first := l.failure == nil
	if first {
		l.failure = err
	}
	l.mu.Unlock()
	if first {
		l.log.Error("lameduck: a server failed; shutting down", "err", err)
		l.start("failure")
	}
}

// Shutdown starts the shutdown sequence, unless it has started already,
// and waits for it to finish:
//
//  1. readiness fails at once and every server is told to hold;
//  2. for the hold, everything is still served (a service that never
//     became ready skips the hold: no load balancer routes to it);
//  3. the drain stops the servers accepting and waits until every
//     tracked request has ended and every server has finished its work;
//  4. if that takes longer than the drain timeout, the servers are
//     closed and the result is a [*ForcedError] that says how many
//     requests were abandoned.
//
// ctx bounds the wait, not the sequence, as with
// [net/http.Server.Shutdown]: when ctx ends first, Shutdown returns ctx's
// error while the sequence goes on, within its own drain timeout. An
// ended ctx skips nothing. To cut the sequence short, call
// [Lifecycle.Force].
//
// Shutdown returns nil when everything drained, the [*ForcedError] of a
// forced drain, or, when a server failed, that failure (joined with the
// ForcedError, if any). The sequence runs once: concurrent and later
// calls wait for the same sequence and return the same result. Shutdown
// does not exit the process, and closing the servers does not stop
// handlers that are still running: their writes fail from then on.
//
// Shutdown waits for every tracked request, so a handler that calls it
// waits for itself and is forced at the drain timeout. Start the shutdown
// from a handler with go l.Shutdown(context.Background()) and return, or
// watch [Lifecycle.Reached]([Draining]).
func (l *Lifecycle) Shutdown(ctx context.Context) error {
	done := l.start("api")
	select {
	case <-done:
		return l.result()
	default:
	}
	select {
	case <-done:
		return l.result()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Force cuts the shutdown sequence short: it starts the sequence if it
// has not started, skips whatever is left of the hold and the drain, and
// closes the servers. The result of [Lifecycle.Run] and
// [Lifecycle.Shutdown] is then a [*ForcedError] whose Cause is cause (a
// generic one if cause is nil), unless the drain had already finished.
// Force does not wait; Run and Shutdown do. A second signal to Run is a
// Force with [ErrSecondSignal].
func (l *Lifecycle) Force(cause error) {
	if cause == nil {
		cause = errForced
	}
	l.start("force")
	l.forceCancel(cause)
}

// result is what Run and Shutdown return once the sequence has finished.
func (l *Lifecycle) result() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.failure == nil:
		return l.err
	case l.err == nil:
		return l.failure
	}
	return errors.Join(l.failure, l.err)
}

// markReady moves a Starting lifecycle to Serving.
func (l *Lifecycle) markReady() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.phase.CompareAndSwap(int32(Starting), int32(Serving)) {
		close(l.reached[Serving])
		l.log.Info("lameduck: serving")
	}
}

// start begins the shutdown sequence unless it already began, and returns
// the channel closed when it ends. The move to Holding happens under the
// lock and before start returns, so that readiness fails at once.
func (l *Lifecycle) start(trigger string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	stopped := l.reached[Stopped]
	if l.started {
		l.log.Info("lameduck: joining the running shutdown", "trigger", trigger,
			"started_by", l.trigger, "phase", l.Phase())
		return stopped
	}
	l.started = true
	l.trigger = trigger
	lingerCtx, release := context.WithCancel(context.Background())
	l.sendq.begin(lingerCtx)
	l.sendqRelease = release
	start := time.Now()
	ctx := l.tel.startShutdown(trigger, l.cfg.hold, l.cfg.drainTimeout)
	holdSpan := l.tel.startPhase(ctx, spanHold)
	wasServing := l.Phase() == Serving
	l.holdStart.Store(start.UnixNano())
	l.phase.Store(int32(Holding))
	if !wasServing {
		close(l.reached[Serving])
	}
	close(l.reached[Holding])
	servers := append([]Server(nil), l.servers...)
	go l.sequence(ctx, trigger, start, wasServing, holdSpan, servers)
	return stopped
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
	l.log.Info("lameduck: holding", l.holdAttrs(trigger, hold, wasServing)...)
	why, last := l.hold(start, hold, wasServing)
	held := time.Since(start)
	attrs := []any{"held", held.Round(time.Millisecond), "ended_by", why}
	if l.cfg.adaptive && wasServing {
		if last >= 0 {
			attrs = append(attrs, "last_new_traffic_before_end", last.Round(time.Millisecond))
		} else {
			attrs = append(attrs, "last_new_traffic_before_end", "none")
		}
	}
	l.log.Info("lameduck: hold ended", attrs...)
	holdSpan.SetAttributes(attrHoldActual.Float64(held.Seconds()), attrHoldEnd.String(why))
	if l.cfg.adaptive {
		holdSpan.SetAttributes(attrHoldQuiet.Float64(l.cfg.holdQuiet.Seconds()), attrHoldMax.Float64(l.cfg.holdMax.Seconds()),
			attrHoldMin.Float64(l.cfg.hold.Seconds()), attrHoldLastNew.Float64(last.Seconds()))
	}
	l.tel.endPhase(ctx, holdSpan, "hold", held, nil)

	// Drain: stop accepting, wait for in-flight work, force at the timeout.
	drainStart := time.Now()
	atDrain := l.enter(Draining)
	l.log.Info("lameduck: draining", "held", held.Round(time.Millisecond),
		"in_flight", atDrain, "timeout", l.cfg.drainTimeout)
	drainSpan := l.tel.startPhase(ctx, spanDrain, attrInFlight.Int64(atDrain))
	dctx, cancel := context.WithTimeoutCause(l.force, l.cfg.drainTimeout, ErrDrainTimeout)
	ferr := l.drain(dctx, servers, drainStart)
	cancel()
	l.sendqRelease() // forced: close what still lingers
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
	l.enter(Stopped)
}

// holdAttrs are the attributes of the hold's first log line.
func (l *Lifecycle) holdAttrs(trigger string, hold time.Duration, wasServing bool) []any {
	attrs := []any{"trigger", trigger, "hold", hold}
	if l.cfg.adaptive && wasServing {
		attrs = append(attrs, "hold_quiet", l.cfg.holdQuiet, "hold_max", l.cfg.holdMax)
	}
	return append(attrs, "drain_timeout", l.cfg.drainTimeout, "in_flight", l.inFlight())
}

// hold waits for the hold to end and says why it ended: "min" when the
// minimum ended it (a fixed hold, or an adaptive one already quiet),
// "quiet" or "max" when the adaptive hold outlasted it, "forced", or
// "not ready" for a service that was never ready. last is how long before
// the end the last new traffic arrived, negative if none did.
func (l *Lifecycle) hold(start time.Time, hold time.Duration, wasServing bool) (why string, last time.Duration) {
	if !wasServing {
		return "not ready", -1 // no load balancer routes here
	}
	t := time.NewTimer(hold)
	defer t.Stop()
	lastNew := func(now time.Time) time.Duration {
		if n := l.lastNew.Load(); n > start.UnixNano() {
			return now.Sub(time.Unix(0, n))
		}
		return -1
	}
	select {
	case <-t.C:
	case <-l.force.Done():
		return "forced", lastNew(time.Now())
	}
	if !l.cfg.adaptive {
		return "min", -1
	}
	maxEnd := start.Add(l.cfg.holdMax)
	for first := true; ; first = false {
		now := time.Now()
		quietEnd := start.Add(l.cfg.holdQuiet)
		if n := l.lastNew.Load(); n > start.UnixNano() {
			quietEnd = time.Unix(0, n).Add(l.cfg.holdQuiet)
		}
		switch {
		case !now.Before(maxEnd):
			return "max", lastNew(now)
		case !now.Before(quietEnd) && first:
			return "min", lastNew(now) // quiet already: the minimum held it
		case !now.Before(quietEnd):
			return "quiet", lastNew(now)
		}
		end := quietEnd
		if maxEnd.Before(end) {
			end = maxEnd
		}
		t.Reset(end.Sub(now))
		select {
		case <-t.C:
		case <-l.force.Done():
			return "forced", lastNew(time.Now())
		}
	}
}

// Arrived records that a request or an RPC that is not a probe arrived
// on a connection accepted at accepted. During an adaptive hold (see
// [WithAdaptiveHold]), arrivals on connections accepted after the hold
// began extend it; otherwise Arrived does nothing. It neither locks nor
// allocates, and while serving it only reads the phase. The servers of
// [Lifecycle.ListenHTTP] and grpcadapter.Listen call it; call it
// yourself only for a server of your own.
func (l *Lifecycle) Arrived(accepted time.Time) {
	if Phase(l.phase.Load()) != Holding || !l.cfg.adaptive || accepted.UnixNano() <= l.holdStart.Load() {
		return
	}
	l.lastNew.Store(time.Now().UnixNano())
}

// enter moves to phase p, closes its channel and returns the work in
// flight as the phase started. The count is read before the channel
// closes, so that work ending when a watcher of the channel sees it close
// is still counted.
func (l *Lifecycle) enter(p Phase) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase.Store(int32(p))
	n := l.inFlight()
	close(l.reached[p])
	return n
}

// drain waits for the servers and the tracked work to finish, logging
// progress at the configured interval. It returns nil if all finished
// before ctx ended. Otherwise it closes every server, even one whose Drain
// has not returned, waits for the Drains and Closes for [closeWait] at
// most, and returns the ForcedError.
func (l *Lifecycle) drain(ctx context.Context, servers []Server, start time.Time) *ForcedError {
	var (
		busy   atomic.Int32
		forced atomic.Bool // a Drain returned because ctx ended
	)
	busy.Store(int32(len(servers)))
	done := make(chan struct{}, len(servers))
	drained := make(chan struct{})
	var wg, calling sync.WaitGroup
	calling.Add(len(servers))
	for _, s := range servers {
		wg.Go(func() {
			calling.Done()
			if err := s.Drain(ctx); err != nil {
				if ctx.Err() != nil {
					forced.Store(true)
				} else {
					l.log.Warn("lameduck: draining a server", "err", err)
				}
			}
			busy.Add(-1)
			done <- struct{}{}
		})
	}
	go func() { wg.Wait(); close(drained) }()

	finished := func() bool {
		// Forced before the drain began (Force or a second signal during
		// the hold) counts as forced even if nothing is in flight, so
		// that the caller learns that the sequence was cut short.
		if ctx.Err() != nil {
			return false
		}
		tick := time.NewTicker(l.cfg.progress)
		defer tick.Stop()
		for l.inflight.Load() > 0 || busy.Load() > 0 {
			select {
			case <-ctx.Done():
				return false
			case <-l.idle:
			case <-done:
			case <-tick.C:
				left := l.cfg.drainTimeout - time.Since(start)
				if left <= 0 || ctx.Err() != nil {
					continue // being forced: the stop line says it
				}
				l.log.Info("lameduck: drain in progress", "in_flight", l.inFlight(), "servers_busy", busy.Load(),
					"forced_in", left.Round(100*time.Millisecond))
			}
		}
		// A Drain that returned because ctx ended did not finish its
		// work, whatever the order in which the select saw them.
		if forced.Load() {
			return false
		}
		// The responses written are still to reach their clients: a
		// socket closed with bytes in its send queue lingers until the
		// peer has them, so that the process exiting cannot cut them.
		return l.sendq.wait(ctx) == nil
	}()
	if finished {
		<-drained
		return nil
	}

	ferr := &ForcedError{Abandoned: l.inFlight(), Cause: context.Cause(ctx)}
	for _, s := range servers {
		if u, ok := s.(interface{ unfinished() int64 }); ok {
			ferr.Abandoned += u.unfinished()
		}
	}
	// Responses written and closed but still in their socket's send
	// queue are cut off too when the lingering ends.
	ferr.Abandoned += int64(l.sendq.pending())
	if ferr.Cause == nil {
		ferr.Cause = ErrDrainTimeout
	}
	closed := make(chan struct{})
	go func() {
		calling.Wait() // Drain is called before Close
		var cwg sync.WaitGroup
		for _, s := range servers {
			cwg.Go(func() {
				if err := s.Close(); err != nil {
					l.log.Warn("lameduck: closing a server", "err", err)
				}
			})
		}
		cwg.Wait()
		close(closed)
	}()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	for _, ch := range []chan struct{}{closed, drained} {
		select {
		case <-ch:
		case <-t.C:
			l.log.Error("lameduck: a server's Drain or Close did not return after the drain timeout; not waiting for it",
				"waited", closeWait, "servers_busy", busy.Load())
			return ferr
		}
	}
	return ferr
}
