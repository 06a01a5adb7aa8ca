package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Run serves the service until it has shut down, and returns the result
// of the shutdown (see [Lifecycle.Shutdown]):
//
//  1. it catches the configured signals (SIGTERM and SIGINT unless
//     [WithSignals] says otherwise) and calls Serve of every server added
//     so far, each on a goroutine of its own;
//  2. it marks the service ready: from then on the lifecycle is in
//     [Serving], until the shutdown starts;
//  3. the first signal, the end of ctx, a [Lifecycle.Shutdown] or
//     preStop call, or a server that fails starts the shutdown
//     sequence; the signal's name, such as "SIGTERM", is its trigger;
//  4. a second signal forces it ([Lifecycle.Force] with
//     [ErrSecondSignal]).
//
// Once the sequence has started, the end of ctx changes nothing; a ctx
// that has ended before Run shuts down without becoming ready, so without
// a hold. A service that owns its signals passes WithSignals() with none
// and ends ctx (signal.NotifyContext does both halves).
//
// The signals stay caught after Run returns, and further ones are
// ignored, so that a late SIGTERM cannot kill the process while it
// flushes its telemetry; [os/signal.Reset] restores their default.
//
// Run returns nil when everything drained; the [*ForcedError] of a
// forced drain; or, when a server failed, that failure, joined with the
// ForcedError if there is one. It returns once the sequence has finished
// and every Serve has returned (a Serve that ignores its Close is waited
// for a second at most). Run may be called once; a second call returns an
// error at once.
func (l *Lifecycle) Run(ctx context.Context) error {
	// The signals stay caught after Run returns: a late SIGTERM (the
	// kubelet's, after a preStop trigger) then cannot kill the process
	// while it flushes its telemetry. The channel's buffer takes two; the
	// rest are dropped.
	sigs := make(chan os.Signal, 2)
	if len(l.cfg.signals) > 0 {
		signal.Notify(sigs, l.cfg.signals...)
	}
	l.mu.Lock()
	if l.running {
		l.mu.Unlock()
		return errors.New("lameduck: Run called twice")
	}
	l.running = true
	if !l.started {
		for _, s := range l.servers {
			l.serve(s)
		}
	}
	l.mu.Unlock()
	attrs := []any{"signals", signalNames(l.cfg.signals), "hold", l.cfg.hold, "drain_timeout", l.cfg.drainTimeout}
	if l.cfg.grace > 0 {
		attrs = append(attrs, "grace", l.cfg.grace)
	}
	l.log.Info("lameduck: waiting for signals", attrs...)
	if ctx.Err() != nil {
		// Ended before Run (a signal.NotifyContext during a slow
		// startup): never ready, so no load balancer routes here and
		// there is no hold.
		l.start("context")
	} else {
		l.markReady()
	}

	ctxDone := ctx.Done()
	first := true
	stopped := l.reached[Stopped]
	for {
		select {
		case s := <-sigs:
			if first {
				// After a preStop trigger this joins the running sequence,
				// which does not hold again.
				first = false
				l.start(signalName(s))
				continue
			}
			l.log.Warn("lameduck: second signal, forcing shutdown", "signal", signalName(s))
			l.Force(fmt.Errorf("%w %s", ErrSecondSignal, signalName(s)))
		case <-ctxDone:
			ctxDone = nil
			l.start("context")
		case <-stopped:
			l.waitServing()
			return l.result()
		}
	}
}

// waitServing waits for the Serve calls to return, for [closeWait] at
// most after the sequence has finished.
func (l *Lifecycle) waitServing() {
	done := make(chan struct{})
	go func() { l.serving.Wait(); close(done) }()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		l.log.Error("lameduck: a server's Serve did not return after its shutdown; not waiting for it", "waited", closeWait)
	}
}

func signalNames(sigs []os.Signal) string {
	names := make([]string, len(sigs))
	for i, s := range sigs {
		names[i] = signalName(s)
	}
	return strings.Join(names, ",")
}

// signalName returns the conventional name of s, such as "SIGTERM".
func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return s.String()
}
