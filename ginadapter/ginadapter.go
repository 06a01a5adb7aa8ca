package ginadapter

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// Middleware returns gin middleware with the request handling of
// [core.Lifecycle.Middleware]: it tracks in-flight requests (a panic or an
// aborted chain does not leak the count), sends "Connection: close" during
// the hold and refuses requests that arrive after the drain began with
// 503, aborting the chain. Health probe paths are never tracked nor
// refused. Middleware panics if lc is nil.
func Middleware(lc *core.Lifecycle) gin.HandlerFunc {
	if lc == nil {
		panic("ginadapter: Middleware needs a non-nil *core.Lifecycle")
	}
	return func(c *gin.Context) {
		switch lc.AdmitHTTP(c.Writer, c.Request) {
		case core.Refused:
			c.Abort() // the 503 is written; no later handler runs
			return
		case core.Tracked:
			// Deferred, so that it runs when a later handler panics;
			// c.Next returns normally when one aborts.
			defer lc.End()
		}
		c.Next()
	}
}

// Mount registers the health routes of h (/healthz, /livez, /readyz and
// one path per check, see [health.Health.Routes]) on r for GET and HEAD.
// Other methods get gin's 404, or 405 with "Allow: GET, HEAD" when the
// engine's HandleMethodNotAllowed is set.
// r must be the engine or a group at its root: the middleware exempts the
// probe paths from tracking and refusal by their path ([core.IsProbePath]),
// so under a prefix the kubelet's probes would be refused during the drain.
// Mount panics if r or h is nil or r is a group with another base path.
func Mount(r gin.IRouter, h *health.Health) {
	if r == nil || h == nil {
		panic("ginadapter: Mount needs a non-nil router and *health.Health")
	}
	if g, ok := r.(interface{ BasePath() string }); ok && g.BasePath() != "/" {
		panic("ginadapter: Mount the health routes at the root, not under " + g.BasePath() +
			": probe paths are exempt from request tracking by their path")
	}
	for _, rt := range h.Routes() {
		hf := gin.WrapH(rt.Handler)
		r.Handle(http.MethodGet, rt.Pattern, hf)
		r.Handle(http.MethodHead, rt.Pattern, hf)
	}
}
