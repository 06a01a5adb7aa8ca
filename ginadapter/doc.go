// Package ginadapter serves a gin engine through a [core.Lifecycle], with
// the probes of a [health.Health]:
//
//	package main
//
//	import (
//		"context"
//		"net/http"
//		"os"
//
//		"github.com/gin-gonic/gin"
//
//		"github.com/lameduck/lameduck/core"
//		"github.com/lameduck/lameduck/ginadapter"
//		"github.com/lameduck/lameduck/health"
//	)
//
//	func main() {
//		lc, err := core.New() // SIGTERM and SIGINT start the shutdown
//		if err != nil {
//			panic(err)
//		}
//		h, err := health.New(lc)
//		if err != nil {
//			panic(err)
//		}
//		gin.SetMode(gin.ReleaseMode) // gin's debug output goes to stdout
//		e := gin.New()
//		e.Use(gin.Recovery())
//		e.GET("/work", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
//		if _, err := ginadapter.Listen(lc, ":8080", e, h); err != nil { // a port in use fails here
//			panic(err)
//		}
//		if err := lc.Run(context.Background()); err != nil { // ready, then hold and drain on SIGTERM
//			os.Exit(1)
//		}
//	}
//
// # No middleware
//
// gin needs no middleware of its own: the lifecycle's HTTP server (see
// [core.Lifecycle.ListenHTTP]) wraps the whole engine. It serves and
// tracks every request, in every phase (a panic does not leak the count):
// a request that reaches an accepted connection is served, and refusing
// new work is left to the protocols (the closed listener at the drain,
// "Connection: close" on HTTP/1 responses from the hold on, the graceful
// GOAWAY of HTTP/2). Everything gin does happens inside a
// tracked request: [gin.Context.Abort], [gin.Recovery], its 404
// ([gin.Engine.NoRoute]) and 405 answers, and groups under any prefix.
//
// The probes, /healthz, /livez and /readyz and their per-check paths,
// are served from h at the root, before the engine sees the request, so
// they are never tracked whatever the engine's routes: a NoRoute
// catch-all does not swallow them. GET and HEAD are answered, other
// methods get 405.
//
// # Serving
//
// [core.Lifecycle.Run] serves the engine; never call [gin.Engine.Run],
// which builds a server that nothing can shut down. The server speaks
// HTTP/1.1 and h2c (HTTP/2 with prior knowledge) on the same port; see
// [Listen]. gin writes its debug
// output (routes, warnings) to stdout: call gin.SetMode(gin.ReleaseMode)
// before [gin.New] when stdout carries something else, such as spans from
// OTEL_TRACES_EXPORTER=console.
package ginadapter
