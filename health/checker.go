package health

import "context"

// Checker is a named dependency check. It is the Kubernetes apiserver's
// HealthChecker without the *http.Request, so that gRPC health can run
// the same checks.
//
// Name is called once, by [New]; it must be URL-path-safe (see [New]).
// Check reports the dependency's health: nil means healthy. It must
// return promptly once ctx is done (ctx carries the per-check timeout, see
// [WithTimeout]); a Check that ignores ctx still cannot delay a probe past
// the timeout, but see "Timeouts and hung checks" in the package doc.
type Checker interface {
	Name() string
	Check(ctx context.Context) error
}

// NamedCheck returns a [Checker] with the given name that calls fn.
// A nil fn is reported as an error by [New].
func NamedCheck(name string, fn func(ctx context.Context) error) Checker {
	return &namedCheck{name: name, fn: fn}
}

type namedCheck struct {
	name string
	fn   func(ctx context.Context) error
}

var _ Checker = (*namedCheck)(nil)

func (c *namedCheck) Name() string                    { return c.name }
func (c *namedCheck) Check(ctx context.Context) error { return c.fn(ctx) }
