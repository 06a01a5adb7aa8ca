package core

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Run waits for one of the configured signals (SIGTERM and SIGINT unless
// [WithSignals] says otherwise), for ctx to end, or for a shutdown started
// elsewhere (such as [Lifecycle.PreStopHandler]), then runs the shutdown
// sequence of [Lifecycle.Shutdown] and returns its result. The signal's
// name, such as "SIGTERM", is the shutdown's trigger.
//
// Once a signal or a preStop call has started the sequence, the end of
// ctx changes nothing: only a second signal forces it. To bound the whole
// sequence, call [Lifecycle.Shutdown] with a context.
//
// A second signal during the sequence skips whatever is left of the hold
// and the drain and forces the shutdown: Run then returns a
// [*ForcedError] whose cause is [ErrSecondSignal].
//
// Signals are caught from the moment Run starts, when [Lifecycle.Running]
// closes; one that arrives earlier gets the default action and kills the
// process. So mark the service ready only after that, never before Run:
//
//	go func() {
//		<-lc.Running()
//		lc.MarkReady()
//	}()
//	err := lc.Run(ctx)
//
// A signal before MarkReady (during a slow startup, say) shuts down
// without a hold: no load balancer routes to a service that was never
// ready. A service that owns its signals calls [Lifecycle.Shutdown]
// itself instead.
func (l *Lifecycle) Run(ctx context.Context) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, l.cfg.signals...)
	defer signal.Stop(sigs)
	l.runningOnce.Do(func() { close(l.running) })
	attrs := []any{"signals", signalNames(l.cfg.signals), "hold", l.cfg.hold, "drain_timeout", l.cfg.drainTimeout}
	if l.cfg.graceSet {
		attrs = append(attrs, "grace", l.cfg.grace)
	}
	l.log.Info("lameduck: waiting for signals", attrs...)

	ctxDone := ctx.Done()
	first := true
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
			l.forceCancel(fmt.Errorf("%w %s", ErrSecondSignal, signalName(s)))
		case <-ctxDone:
			ctxDone = nil
			l.start("context")
		case <-l.stopped:
			return l.result()
		}
	}
}

// Running returns a channel that is closed once [Lifecycle.Run] catches
// the configured signals. Mark the service ready after it (see Run).
func (l *Lifecycle) Running() <-chan struct{} { return l.running }

func (l *Lifecycle) result() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
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
