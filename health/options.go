package health

import (
	"log/slog"
	"time"
)

// Default values used by [New] when no option overrides them.
const (
	// defaultTimeout is the per-check timeout. The kubelet's probe times
	// out after 1s by default, and the whole answer must fit well inside.
	defaultTimeout = 500 * time.Millisecond
)

// An Option configures a [Health]. Invalid values make [New] return an
// error.
type Option func(*config)

type config struct {
	readiness []Checker
	liveness  []Checker
	timeout   time.Duration
	ttl       time.Duration
	logger    *slog.Logger
}

func newConfig(opts []Option) (config, bool) {
	c := config{timeout: defaultTimeout}
	for _, o := range opts {
		if o == nil {
			return c, false
		}
		o(&c)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c, true
}

// WithReadinessChecks adds checks to readiness (/readyz), after the
// built-in "shutdown" check and after the checks of earlier calls. If none
// is specified, readiness depends on the lifecycle alone.
func WithReadinessChecks(checks ...Checker) Option {
	return func(c *config) { c.readiness = append(c.readiness, checks...) }
}

// WithLivenessChecks adds checks to liveness (/healthz, /livez), after
// the built-in "ping" check. If none is specified, liveness only has
// "ping", which always passes: a failing liveness probe restarts the
// container, so a dependency (a database) must not be a liveness check,
// or its outage restarts every pod. Use liveness checks for states only a
// restart cures, such as a deadlocked worker.
func WithLivenessChecks(checks ...Checker) Option {
	return func(c *config) { c.liveness = append(c.liveness, checks...) }
}

// WithTimeout sets how long one check may run before it counts as failed
// and its context is cancelled. It must be positive. If none is specified,
// 500ms is used.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithCacheTTL makes check results, failures included, valid for d after
// the check returns: probes within d reuse them without calling the check
// again. It must not be negative. If none is specified, results are not
// cached (0), although concurrent probes still share one run of each
// check.
func WithCacheTTL(d time.Duration) Option { return func(c *config) { c.ttl = d } }

// WithLogger sets the logger that receives failure reasons. A nil logger
// is ignored. If none is specified, [slog.Default] is used.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}
