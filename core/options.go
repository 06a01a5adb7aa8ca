package core

import (
	"log/slog"
	"os"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Default values used by [New] when no option overrides them.
const (
	DefaultHold         = 10 * time.Second
	DefaultDrainTimeout = 15 * time.Second
)

// An Option configures a [Lifecycle].
type Option func(*config)

type config struct {
	hold         time.Duration
	drainTimeout time.Duration
	grace        time.Duration
	graceSet     bool
	logger       *slog.Logger
	tp           trace.TracerProvider
	mp           metric.MeterProvider
	signals      []os.Signal
	progress     time.Duration
}

func newConfig(opts []Option) config {
	c := config{
		hold:         DefaultHold,
		drainTimeout: DefaultDrainTimeout,
		signals:      []os.Signal{syscall.SIGTERM, os.Interrupt},
		progress:     time.Second,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c
}

// WithHold sets how long the service keeps serving everything after the
// shutdown starts, with readiness failing, so that load balancers stop
// routing to it before it stops accepting. Zero disables the hold.
// If none is specified, [DefaultHold] is used.
func WithHold(d time.Duration) Option { return func(c *config) { c.hold = d } }

// WithDrainTimeout sets how long the drain may wait for in-flight work
// before the rest is closed. If none is specified, [DefaultDrainTimeout]
// is used.
func WithDrainTimeout(d time.Duration) Option { return func(c *config) { c.drainTimeout = d } }

// WithGracePeriod declares the time the platform allows between SIGTERM and
// SIGKILL (Kubernetes' terminationGracePeriodSeconds). [New] then rejects a
// hold plus drain timeout that would not fit in it. If none is specified,
// nothing is checked.
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

// WithSignals sets the signals [Lifecycle.Run] waits for. If none is
// specified, Run waits for SIGTERM and SIGINT.
func WithSignals(sigs ...os.Signal) Option {
	return func(c *config) { c.signals = append([]os.Signal(nil), sigs...) }
}

// WithProgressInterval sets how often a drain that has not finished logs
// how much work remains and how long until it is forced. If none is
// specified, a line is logged every second.
func WithProgressInterval(d time.Duration) Option { return func(c *config) { c.progress = d } }
