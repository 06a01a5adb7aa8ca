package grpcadapter

import (
	"errors"
	"fmt"
	"time"
)

// Defaults used by [Bind] when no option overrides them.
const (
	// DefaultLivenessService is the grpc.health.v1 service name that
	// reports liveness.
	DefaultLivenessService = "liveness"
	// DefaultWatchInterval is how often readiness is re-evaluated for
	// open Watch streams.
	DefaultWatchInterval = time.Second
)

// An Option configures [Bind].
type Option func(*config)

type config struct {
	liveness string
	interval time.Duration
	services []string
}

func newConfig(opts []Option) (config, error) {
	c := config{liveness: DefaultLivenessService, interval: DefaultWatchInterval}
	for _, o := range opts {
		o(&c)
	}
	switch {
	case c.liveness == "":
		return c, errors.New("grpcadapter: the liveness service name must not be empty: \"\" is readiness")
	case c.interval <= 0:
		return c, fmt.Errorf("grpcadapter: watch interval must be positive, got %v", c.interval)
	}
	for _, s := range c.services {
		if s == c.liveness {
			return c, fmt.Errorf("grpcadapter: service %q is both the liveness service and a readiness service", s)
		}
	}
	return c, nil
}

// WithLivenessService sets the grpc.health.v1 service name that reports
// liveness: SERVING in every phase, until the process exits, unless a
// liveness check of the [health.Health] fails. Point the kubelet's
// liveness probe at it (grpc.service in the probe). An empty name is an
// error from [Bind]. If none is specified, [DefaultLivenessService] is
// used.
func WithLivenessService(name string) Option { return func(c *config) { c.liveness = name } }

// WithWatchInterval sets how often readiness (and its registered checks)
// is re-evaluated while at least one Watch stream is open, so that a
// failing dependency reaches watchers without anyone calling Check. The
// hold reaches watchers at once, whatever the interval. A value that is
// not positive is an error from [Bind]. If none is specified,
// [DefaultWatchInterval] is used.
func WithWatchInterval(d time.Duration) Option { return func(c *config) { c.interval = d } }

// WithServices adds grpc.health.v1 service names that report readiness,
// like "". Every service registered on the *grpc.Server before [Bind]
// is added already; use this for names registered later or served by
// another process behind the same port. If none is specified, only ""
// and the registered services report readiness.
func WithServices(names ...string) Option {
	return func(c *config) { c.services = append(c.services, names...) }
}
