// Package chiadapter wires a [core.Lifecycle] and a [health.Health] into a
// chi router.
//
// chi takes plain net/http middleware, so the middleware is the core one;
// this package only names it and mounts the health routes:
//
//	r := chi.NewRouter()
//	r.Use(chiadapter.Middleware(lc))
//	chiadapter.Mount(r, h)
//
// Serve the router with an *http.Server bound to the lifecycle
// ([core.Lifecycle.BindHTTP]).
package chiadapter

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// Middleware returns the request middleware of lc
// ([core.Lifecycle.Middleware]): it tracks in-flight requests (a panic
// does not leak the count), sends "Connection: close" during the hold and
// refuses requests that arrive after the drain began with 503. Health
// probe paths are never tracked nor refused.
func Middleware(lc *core.Lifecycle) func(http.Handler) http.Handler {
	return lc.Middleware
}

// Mount registers the health routes of h (/healthz, /livez, /readyz and
// one path per check, see [health.Health.Routes]) on r.
func Mount(r chi.Router, h *health.Health) {
	h.Install(r)
}
