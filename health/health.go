package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/lameduck/lameduck/core"
)

// Names of the built-in checks, which registered checks may not use.
const (
	// shutdownName is the name of the built-in readiness check that
	// passes only while the lifecycle is in [core.Serving]: it fails
	// before [core.Lifecycle.Run] has made the service ready and from the
	// hold on.
	shutdownName = "shutdown"
	// pingName is the name of the built-in liveness check, which always
	// passes, so that /healthz?verbose lists something.
	pingName = "ping"
)

// maxNameLen is the longest check name [New] accepts.
const maxNameLen = 63

// result is the outcome of one check. Err is nil when the check passed.
// Err is for the caller and its logs: the HTTP handlers never put it in a
// response.
type result struct {
	Name string
	Err  error
}

// Health serves liveness and readiness for a [core.Lifecycle] and a set of
// [Checker]s, over HTTP (it is an [net/http.Handler], see [Health.ServeHTTP])
// or directly ([Health.Ready] and [Health.Live], for gRPC health). Create
// one with [New]; the zero value is not usable. A Health is safe for
// concurrent use.
type Health struct {
	lc      *core.Lifecycle
	log     *slog.Logger
	timeout time.Duration
	ttl     time.Duration

	readiness []*check                 // shutdownName first
	liveness  []*check                 // pingName first
	routes    map[string]*probeHandler // by path

	// now is the clock of the result cache; tests replace it.
	now func() time.Time
	// onWait, if set, is called each time a caller starts waiting for a
	// run of a check (tests use it to know that probes have joined).
	onWait func(name string)
}

// check is one registered check and its single-flight state.
type check struct {
	name    string
	checker Checker
	// inline checks (shutdown, ping) never block: they are called on the
	// caller's goroutine, without timeout, single-flight or cache.
	inline bool

	mu     sync.Mutex
	flight *flight // the run in progress, nil if none
	last   *flight // the last finished run, reused for the cache TTL
}

// flight is one run of a check, shared by every caller that joins it.
type flight struct {
	ctx    context.Context // ends at the timeout, or when the run returns
	cancel context.CancelFunc
	done   chan struct{} // closed when the run has returned; err and at are set then
	err    error
	at     time.Time

	timedOut sync.Once // logs the timeout once per run
}

// New returns a Health for lc. It returns an error when lc is nil, an
// option is nil, the timeout is not positive, the cache TTL is negative,
// or a check is nil or misnamed: a name must be 1 to 63 characters of
// a-z, 0-9, '.', '_' and '-' (so it is safe in a URL path), not "." or
// "..", not "shutdown" or "ping" (the built-in checks),
// and unique among the readiness checks (or among the liveness checks;
// a check may be in both lists).
func New(lc *core.Lifecycle, opts ...Option) (*Health, error) {
	if lc == nil {
		return nil, errors.New("health: nil lifecycle")
	}
	cfg, ok := newConfig(opts)
	switch {
	case !ok:
		return nil, errors.New("health: nil option")
	case cfg.timeout <= 0:
		return nil, fmt.Errorf("health: timeout must be positive, got %v", cfg.timeout)
	case cfg.ttl < 0:
		return nil, fmt.Errorf("health: cache TTL must not be negative, got %v", cfg.ttl)
	}
	h := &Health{
		lc:      lc,
		log:     cfg.logger,
		timeout: cfg.timeout,
		ttl:     cfg.ttl,
		now:     time.Now,
	}
	shutdown := &check{name: shutdownName, inline: true, checker: NamedCheck(shutdownName, h.shutdownCheck)}
	ping := &check{name: pingName, inline: true, checker: NamedCheck(pingName, func(context.Context) error { return nil })}
	var err error
	if h.readiness, err = newChecks("readiness", shutdown, cfg.readiness); err != nil {
		return nil, err
	}
	if h.liveness, err = newChecks("liveness", ping, cfg.liveness); err != nil {
		return nil, err
	}
	h.buildRoutes()
	return h, nil
}

// newChecks validates cs and returns them after the built-in check.
func newChecks(kind string, builtin *check, cs []Checker) ([]*check, error) {
	out := []*check{builtin}
	seen := map[string]bool{}
	for i, c := range cs {
		name, err := checkerName(c)
		if err != nil {
			return nil, fmt.Errorf("health: %s check %d: %w", kind, i, err)
		}
		if err := validName(name); err != nil {
			return nil, fmt.Errorf("health: %s check %d: %w", kind, i, err)
		}
		switch {
		case name == shutdownName || name == pingName:
			return nil, fmt.Errorf("health: %s check %d: name %q is reserved for a built-in check", kind, i, name)
		case seen[name]:
			return nil, fmt.Errorf("health: %s check %d: duplicate name %q", kind, i, name)
		}
		if nc, ok := c.(*namedCheck); ok && nc.fn == nil {
			return nil, fmt.Errorf("health: %s check %d (%q): nil check function", kind, i, name)
		}
		seen[name] = true
		out = append(out, &check{name: name, checker: c})
	}
	return out, nil
}

// checkerName returns c.Name(), turning a nil Checker, or a typed nil
// whose Name panics, into an error.
func checkerName(c Checker) (name string, err error) {
	if c == nil {
		return "", errors.New("nil Checker")
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("Name panicked (nil Checker?): %v", v)
		}
	}()
	return c.Name(), nil
}

func validName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > maxNameLen:
		return fmt.Errorf("name %.20q… is %d bytes long, more than %d", name, len(name), maxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("name %q is not a usable path segment", name)
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '.' || b == '_' || b == '-' {
			continue
		}
		return fmt.Errorf("name %q has the invalid character %q at byte %d: use only a-z, 0-9, '.', '_' and '-'", name, b, i)
	}
	return nil
}

// shutdownCheck is the built-in readiness check: it passes only while the
// lifecycle is Serving. It reads an atomic: no goroutine, no timeout.
func (h *Health) shutdownCheck(context.Context) error {
	switch p := h.lc.Phase(); p {
	case core.Serving:
		return nil
	case core.Starting:
		return fmt.Errorf("health: not ready yet (phase %v)", p)
	default:
		return fmt.Errorf("health: shutting down (phase %v)", p)
	}
}

// checkReadiness runs the [shutdownName] and every readiness check whose
// name is not in exclude, concurrently, and returns one result per check
// run, in registration order with "shutdown" first. Excluded names that
// match no check are ignored (and logged). It returns within the timeout
// (see [WithTimeout]), or sooner when ctx ends: the checks still pending
// then fail with ctx's cause.
func (h *Health) checkReadiness(ctx context.Context, exclude ...string) []result {
	return resultsOf(h.run(ctx, "readiness", h.readiness, h.excludeSet("readiness", h.readiness, exclude)))
}

// checkLiveness is [Health.checkReadiness] for the liveness checks: the
// built-in [pingName] first, then the checks of [WithLivenessChecks].
// The lifecycle's phase plays no part in liveness.
func (h *Health) checkLiveness(ctx context.Context, exclude ...string) []result {
	return resultsOf(h.run(ctx, "liveness", h.liveness, h.excludeSet("liveness", h.liveness, exclude)))
}

// Ready reports whether the lifecycle is ready (in [core.Serving]) and
// every readiness check passes. When the lifecycle is not ready it
// reports false without running the checks.
func (h *Health) Ready(ctx context.Context) bool {
	if h.lc.Phase() != core.Serving {
		return false
	}
	for _, r := range h.checkReadiness(ctx) {
		if r.Err != nil {
			return false
		}
	}
	return true
}

// Live reports whether every liveness check passes. The lifecycle's
// phase plays no part: with no [WithLivenessChecks] it is always true.
func (h *Health) Live(ctx context.Context) bool {
	for _, r := range h.checkLiveness(ctx) {
		if r.Err != nil {
			return false
		}
	}
	return true
}

// outcome is a result, or a check skipped by exclude.
type outcome struct {
	result
	excluded bool
}

func resultsOf(out []outcome) []result {
	rs := make([]result, 0, len(out))
	for _, o := range out {
		if !o.excluded {
			rs = append(rs, o.result)
		}
	}
	return rs
}

// maxLoggedExcludes bounds what one request with unknown exclude names can
// put in the log.
const maxLoggedExcludes = 5

// excludeSet returns the names to exclude as a set, and logs those that
// match no check in cs, as the Kubernetes apiserver does.
func (h *Health) excludeSet(kind string, cs []*check, names []string) map[string]bool {
	if len(names) == 0 {
		return nil
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	var unknown []string
	for n := range set {
		if !hasCheck(cs, n) {
			if len(unknown) == maxLoggedExcludes {
				unknown = append(unknown, "…")
				break
			}
			if len(n) > maxNameLen {
				n = n[:maxNameLen] + "…"
			}
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		h.log.Warn("health: cannot exclude unknown checks", "kind", kind, "exclude", unknown)
	}
	return set
}

func hasCheck(cs []*check, name string) bool {
	for _, c := range cs {
		if c.name == name {
			return true
		}
	}
	return false
}

// run runs the checks of cs not in exclude concurrently: it starts (or
// joins) a flight of each, then waits for each in turn. Every wait ends by
// its flight's timeout, so the whole run takes at most one timeout.
func (h *Health) run(ctx context.Context, kind string, cs []*check, exclude map[string]bool) []outcome {
	out := make([]outcome, len(cs))
	flights := make([]*flight, len(cs))
	for i, c := range cs {
		out[i].Name = c.name
		if exclude[c.name] {
			out[i].excluded = true
			continue
		}
		if !c.inline {
			flights[i] = h.start(ctx, kind, c)
		}
	}
	for i, c := range cs {
		switch {
		case out[i].excluded:
		case c.inline:
			// Evaluated last, so that the answer has the latest phase.
			out[i].Err = c.checker.Check(ctx)
			if out[i].Err != nil {
				h.log.Debug("health: check failed", "check", c.name, "kind", kind, "err", out[i].Err)
			}
		default:
			out[i].Err = h.wait(ctx, kind, c, flights[i])
		}
	}
	return out
}

// start returns the flight of c to wait for: the one in progress, the
// last one while it is within the cache TTL, or a new one. A run that
// outlived its timeout is still "in progress" until it returns: callers
// join it and fail at once instead of starting a second copy beside it.
func (h *Health) start(ctx context.Context, kind string, c *check) *flight {
	c.mu.Lock()
	f := c.flight
	if f == nil && h.ttl > 0 && c.last != nil && h.now().Sub(c.last.at) < h.ttl {
		f = c.last
	}
	if f == nil {
		f = &flight{done: make(chan struct{})}
		// The run is shared, so one caller going away must not cancel it
		// for the others; it keeps ctx's values (trace context).
		f.ctx, f.cancel = context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
		c.flight = f
		go h.fly(kind, c, f)
	}
	c.mu.Unlock()
	if h.onWait != nil {
		h.onWait(c.name)
	}
	return f
}

// fly runs one flight of c. If the check ignores its context, fly runs
// until the check returns, however late; the callers stopped waiting at
// the timeout.
func (h *Health) fly(kind string, c *check, f *flight) {
	began := time.Now()
	panicked, err := h.call(f.ctx, kind, c)
	if f.ctx.Err() != nil {
		// Late (or it returned ctx's error): the callers have been, or
		// will be, told it timed out; keep the answers consistent.
		err = h.timeoutError(c)
		f.timedOut.Do(func() { h.logTimeout(kind, c) })
		h.log.Debug("health: check returned after its timeout", "check", c.name, "kind", kind,
			"took", time.Since(began).Round(time.Millisecond))
	} else if err != nil && !panicked {
		h.log.Warn("health: check failed", "check", c.name, "kind", kind, "err", err)
	}
	f.err = err
	f.at = h.now()
	c.mu.Lock()
	c.flight = nil
	c.last = f
	c.mu.Unlock()
	close(f.done)
	f.cancel() // after done: a waiter that sees ctx end then finds done closed
}

// call calls the check, turning a panic into an error.
func (h *Health) call(ctx context.Context, kind string, c *check) (panicked bool, err error) {
	defer func() {
		if v := recover(); v != nil {
			h.log.Error("health: check panicked", "check", c.name, "kind", kind, "panic", v,
				"stack", string(debug.Stack()))
			panicked, err = true, fmt.Errorf("health: check %q panicked: %v", c.name, v)
		}
	}()
	return false, c.checker.Check(ctx)
}

// wait returns the result of f, or a timeout error once f's timeout has
// passed, or ctx's cause once ctx ends.
func (h *Health) wait(ctx context.Context, kind string, c *check, f *flight) error {
	select {
	case <-f.done:
		return f.err
	case <-f.ctx.Done():
		select {
		case <-f.done: // finished and cancelled: not a timeout
			return f.err
		default:
		}
		f.timedOut.Do(func() { h.logTimeout(kind, c) })
		return h.timeoutError(c)
	case <-ctx.Done():
		return fmt.Errorf("health: check %q abandoned: %w", c.name, context.Cause(ctx))
	}
}

func (h *Health) timeoutError(c *check) error {
	return fmt.Errorf("health: check %q timed out after %v: %w", c.name, h.timeout, context.DeadlineExceeded)
}

func (h *Health) logTimeout(kind string, c *check) {
	h.log.Warn("health: check failed", "check", c.name, "kind", kind,
		"err", h.timeoutError(c))
}
