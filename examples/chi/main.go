// Command chi is a chi service that shuts down without losing a request.
//
// It follows the example contract of DESIGN.md section 5:
//
//	go run ./examples/chi -addr :8080 -hold 10s -drain-timeout 15s -grace 30s
//
// Routes: GET /healthz, GET /livez, GET /readyz (with ?verbose, ?exclude=,
// /readyz/<check>) and GET|POST /work?ms=N, which waits N ms and answers
// "ok". On SIGTERM or SIGINT readiness fails at once, every request is
// still served for -hold (with "Connection: close"), then the listener
// closes and in-flight requests drain for at most -drain-timeout. Exit
// status: 0 drained, 1 drain timed out and work was abandoned, 2 bad
// flags, 3 a second signal forced the exit. With OTEL_TRACES_EXPORTER=console
// the shutdown spans are printed to stdout.
//
// The router is the only part that is chi's; service.RunHTTP serves it
// with an *http.Server bound to the lifecycle, exactly as examples/gin.
package main

import (
	"net/http"
	"os"

	"github.com/go-chi/chi/v5"

	"github.com/lameduck/lameduck/chiadapter"
	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/examples/internal/service"
	"github.com/lameduck/lameduck/health"
)

func main() { os.Exit(service.RunHTTP("chi", os.Args[1:], router)) }

// router returns the chi router with the lifecycle's middleware, the
// health routes and /work.
func router(lc *core.Lifecycle, h *health.Health) http.Handler {
	r := chi.NewRouter()
	r.Use(chiadapter.Middleware(lc))
	chiadapter.Mount(r, h)
	r.Get("/work", service.Work)
	r.Post("/work", service.Work)
	return r
}
