package core

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// An Option configures a [Lifecycle]. An invalid value is an error from
// [New].
type Option func(*config)

type config struct {
	hold         time.Duration // the minimum with adaptive
	adaptive     bool
	holdQuiet    time.Duration
	holdMax      time.Duration
	drainTimeout time.Duration
	grace        time.Duration // 0: not checked
	graceSet     bool
	logger       *slog.Logger
	tp           trace.TracerProvider
	mp           metric.MeterProvider
	signals      []os.Signal
	progress     time.Duration // of the drain's progress lines
}

func newConfig(opts []Option) (config, error) {
	c := config{
		hold:         10 * time.Second,
		drainTimeout: 15 * time.Second,
		signals:      []os.Signal{syscall.SIGTERM, os.Interrupt},
		progress:     time.Second,
	}
	for _, o := range opts {
		if o == nil {
			return c, errors.New("lameduck: nil Option")
		}
		o(&c)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	switch {
	case c.hold < 0:
		return c, fmt.Errorf("lameduck: hold must not be negative, got %v", c.hold)
	case c.drainTimeout <= 0:
		return c, fmt.Errorf("lameduck: drain timeout must be positive, got %v", c.drainTimeout)
	case c.adaptive && c.holdQuiet <= 0:
		return c, fmt.Errorf("lameduck: the adaptive hold's quiet time must be positive, got %v", c.holdQuiet)
	case c.adaptive && c.holdMax < c.hold:
		return c, fmt.Errorf("lameduck: the adaptive hold's maximum %v is shorter than the hold %v, its minimum", c.holdMax, c.hold)
	case c.graceSet:
		if err := CheckBudget(c.grace, c.longestHold(), c.drainTimeout); err != nil {
			return c, err
		}
	}
	return c, nil
}

// longestHold is the hold, or the adaptive hold's maximum.
func (c *config) longestHold() time.Duration {
	if c.adaptive {
		return c.holdMax
	}
	return c.hold
}

// WithHold sets how long the service keeps serving everything after the
// shutdown starts, with readiness failing, so that load balancers stop
// routing to it before it stops accepting. Zero disables the hold.
// If none is specified, the hold is 10 s.
func WithHold(d time.Duration) Option { return func(c *config) { c.hold = d } }

// WithAdaptiveHold makes the hold end when the load balancers have
// stopped routing to the service, instead of after a fixed time: it lasts
// at least the hold of [WithHold], then ends as soon as no new traffic
// has arrived for quiet, and at most max. New traffic is a request or an
// RPC that is not a probe and that arrived on a connection accepted after
// the hold began: a load balancer that still routes here opens new
// connections (every HTTP/1 response of the hold closes its connection),
// while traffic on older connections (a pinned HTTP/2 connection, a
// keep-alive client's last request) says nothing about routing, and the
// kubelet's probes open a connection each. The servers of
// [Lifecycle.ListenHTTP] and grpcadapter.Listen report it; a server of
// your own calls [Lifecycle.Arrived].
//
// No traffic is not proof of convergence for a service that gets little:
// the minimum must still cover the fastest propagation path. [New]
// rejects a quiet that is not positive and a max shorter than the hold,
// and with [WithGracePeriod] checks max in the budget. If none is
// specified, the hold is fixed.
func WithAdaptiveHold(quiet, max time.Duration) Option {
	return func(c *config) { c.adaptive, c.holdQuiet, c.holdMax = true, quiet, max }
}

// WithDrainTimeout sets how long the drain may wait for in-flight work
// before the rest is closed. If none is specified, it is 15 s.
func WithDrainTimeout(d time.Duration) Option { return func(c *config) { c.drainTimeout = d } }

// WithGracePeriod declares the time the platform allows between SIGTERM and
// SIGKILL (Kubernetes' terminationGracePeriodSeconds). [New] then rejects
// a hold and drain timeout that [CheckBudget] says do not fit in it. If
// none is specified, nothing is checked.
func WithGracePeriod(d time.Duration) Option {
	return func(c *config) { c.grace, c.graceSet = d, true }
}

// WithLogger sets the logger for phase changes. A nil logger is ignored.
// If none is specified, [slog.Default] is used.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithTracerProvider sets the provider of the shutdown spans. A nil
// provider is ignored. If none is specified, the global provider is used.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp != nil {
			c.tp = tp
		}
	}
}

// WithMeterProvider sets the provider of the lifecycle metrics. A nil
// provider is ignored. If none is specified, the global provider is used.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) {
		if mp != nil {
			c.mp = mp
		}
	}
}

// WithSignals sets the signals [Lifecycle.Run] catches. With none, Run
// catches no signal and shuts down when its context ends. If none is
// specified, Run catches SIGTERM and SIGINT.
func WithSignals(sigs ...os.Signal) Option {
	return func(c *config) { c.signals = append([]os.Signal(nil), sigs...) }
}

// MinMargin and the share of the grace period in [CheckBudget]'s margin.
const (
	minMargin     = 2 * time.Second
	marginPercent = 10
)

// CheckBudget reports whether a hold and a drain timeout fit in a grace
// period (Kubernetes' terminationGracePeriodSeconds) with a margin for
// the process to exit and flush its telemetry:
//
//	hold + drainTimeout + margin ≤ grace, where margin = max(2 s, 10 % of grace)
//
// Time spent before the hold, such as a preStop sleep, belongs in hold.
// It returns nil, or an error that names every number. [WithGracePeriod]
// applies it in [New]; the Kubernetes manifests of the examples are
// checked with it too.
func CheckBudget(grace, hold, drainTimeout time.Duration) error {
	margin := max(minMargin, grace*marginPercent/100)
	switch {
	case grace <= 0:
		return fmt.Errorf("lameduck: grace period must be positive, got %v", grace)
	case hold+drainTimeout+margin > grace:
		return fmt.Errorf("lameduck: hold %v + drain timeout %v + margin %v = %v exceeds the grace period %v (the margin is max(2s, 10%% of grace))",
			hold, drainTimeout, margin, hold+drainTimeout+margin, grace)
	}
	return nil
}
