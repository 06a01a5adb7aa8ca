// Command gin is a gin service that shuts down without losing a request.
// It behaves exactly like examples/chi; only the router differs.
//
// It follows the example contract of DESIGN.md section 5:
//
//	go run ./examples/gin -addr :8080 -hold 10s -drain-timeout 15s -grace 30s
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
// The engine is served by an *http.Server bound to the lifecycle (see
// service.RunHTTP), never by engine.Run, which nothing can shut down.
package main

import (
	"net/http"
	"os"

	"github.com/gin-gonic/gin"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/examples/internal/service"
	"github.com/lameduck/lameduck/ginadapter"
	"github.com/lameduck/lameduck/health"
)

func main() { os.Exit(service.RunHTTP("gin", os.Args[1:], router)) }

// router returns the gin engine with the lifecycle's middleware, the
// health routes and /work.
func router(lc *core.Lifecycle, h *health.Health) http.Handler {
	// Release mode: gin's debug output goes to stdout, which carries the
	// spans of OTEL_TRACES_EXPORTER=console. It must precede gin.New.
	gin.SetMode(gin.ReleaseMode)
	// gin.New, not gin.Default: gin's Logger would print every request to
	// stdout too; the examples log phase changes only, with slog.
	engine := gin.New()
	engine.HandleMethodNotAllowed = true // 405 for PUT /work, as chi answers
	engine.Use(gin.Recovery(), ginadapter.Middleware(lc))
	ginadapter.Mount(engine, h)
	engine.GET("/work", gin.WrapF(service.Work))
	engine.POST("/work", gin.WrapF(service.Work))
	return engine
}
