// Package ginadapter wires a [core.Lifecycle] and a [health.Health] into a
// gin engine: one middleware line and one mount call.
//
//	gin.SetMode(gin.ReleaseMode)
//	engine := gin.New()
//	engine.Use(gin.Recovery(), ginadapter.Middleware(lc))
//	ginadapter.Mount(engine, h) // /healthz, /livez, /readyz, /readyz/<check>
//	engine.GET("/work", work)
//
//	srv := &http.Server{Addr: ":8080", Handler: engine}
//	if err := lc.BindHTTP(srv); err != nil { // never engine.Run: it cannot be shut down
//		return err
//	}
//	go srv.ListenAndServe()
//	lc.MarkReady()
//	return lc.Run(ctx)
//
// # Middleware
//
// [Middleware] is a thin call into [core.Lifecycle.AdmitHTTP], the logic
// every HTTP adapter shares: it tracks in-flight requests, sends
// "Connection: close" during the hold, refuses requests that arrive after
// the drain began (503 with "Retry-After", before any later handler runs)
// and never tracks nor refuses the probe paths of [core.IsProbePath].
//
// The tracking survives everything gin can do to a chain: a handler that
// panics (with [gin.Recovery] before or after the middleware, or with no
// recovery at all, when net/http recovers the panic), and [gin.Context.Abort]
// in a later middleware. A middleware before it that aborts means it never
// runs and nothing is tracked. The middleware calls [gin.Context.Next] on the
// request's goroutine and keeps nothing of the *gin.Context, which gin
// reuses for the next request once the handler chain returns.
//
// Put it early: everything before it runs untracked and is not refused.
// [gin.Recovery] may go on either side.
//
// # Serving
//
// Serve the engine with an *http.Server bound to the lifecycle
// ([core.Lifecycle.BindHTTP]), whose drain ends the moment the last
// response is written. [gin.Engine.Run] builds its own server that nothing
// can shut down: do not use it.
//
// gin writes its debug output (routes, warnings) to stdout. Call
// gin.SetMode(gin.ReleaseMode) before [gin.New] when stdout carries
// something else, such as spans from OTEL_TRACES_EXPORTER=console.
package ginadapter
