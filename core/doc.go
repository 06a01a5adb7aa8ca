// Package core is the lifecycle at the heart of lameduck: it serves a
// service's servers and, on shutdown, fails readiness at once, keeps
// serving everything for a hold while load balancers converge, then stops
// accepting and drains in-flight work with a hard timeout. That removes
// the burst of 5xx that a Kubernetes rolling deploy otherwise causes. It
// knows net/http, but no web framework: adapters for chi, gin and gRPC
// build on it.
//
// # Serving
//
// Every start is paired with its stop, as in oklog/run. [Lifecycle.ListenHTTP]
// listens at once (a port in use is its error, before anything runs) and
// adds the *http.Server to the lifecycle; grpcadapter.Listen does the same
// for gRPC, and [Lifecycle.Add] takes a [Server] of your own.
// [Lifecycle.Run] then serves them all, catches SIGTERM and SIGINT, and
// only then marks the service ready, so no signal can find a ready
// service that cannot shut down. A server that fails starts the shutdown
// and becomes Run's error.
//
// The HTTP server tracks every request and serves the health probes
// (/healthz, /livez, /readyz: see the health package) at the root, in
// front of the service's router, so they are never tracked nor refused
// whatever the router's layout.
//
// # Phases
//
// A [Lifecycle] moves forward only: [Starting] → [Serving] → [Holding] →
// [Draining] → [Stopped]. Readiness passes only in Serving; liveness is
// the process itself. [Lifecycle.Reached] returns a channel closed when a
// phase starts; long-lived handlers (server-sent events, websockets,
// streams) should end when Reached(Draining) closes.
//
// # Shutdown
//
// The first signal, the end of Run's context, [Lifecycle.Shutdown], the
// preStop trigger or a failing server start the sequence; it runs once.
// Shutdown's context bounds the wait, not the sequence, as with
// [net/http.Server.Shutdown]. [Lifecycle.Force], or a second signal,
// cuts it short. The result is nil when everything drained, or a
// [*ForcedError] that says how many requests were abandoned and why. With
// [WithGracePeriod], [New] checks with [CheckBudget] that the hold and the
// drain timeout fit in the platform's grace period.
//
// The hold is fixed unless [WithAdaptiveHold] makes it end when no new
// traffic (requests on connections accepted after the hold began) has
// arrived for a while: at least [WithHold], at most its maximum. Work
// that reaches a server is served in every phase, the drain included;
// refusing new work is left to the protocols (the closed listener,
// "Connection: close" on HTTP/1, the GOAWAY of HTTP/2 and gRPC), whose
// refusals clients retry safely.
//
// [Lifecycle.PreStopHandler] serves a Kubernetes preStop hook: it starts
// the shutdown and answers when the hold is over, so the SIGTERM that
// follows joins the running sequence instead of holding again.
//
// # Telemetry
//
// Each shutdown records a span lameduck.shutdown (attributes
// lameduck.trigger, lameduck.hold.duration and lameduck.drain.timeout)
// with children lameduck.hold and lameduck.drain (lameduck.drain.in_flight
// at its start, lameduck.drain.abandoned at its end; a forced drain sets
// an error status on it and on the root), and the metrics
// lameduck.requests.in_flight, lameduck.phase.duration (attribute
// lameduck.phase: hold or drain) and lameduck.requests.abandoned, under
// the instrumentation scope github.com/lameduck/lameduck/core. The global
// OpenTelemetry providers are used unless [WithTracerProvider] or
// [WithMeterProvider] say otherwise; the package never installs an SDK.
//
// # Invalid arguments
//
// One rule for the whole library: an invalid option or argument is an
// error from the call that takes it ([New], [Lifecycle.ListenHTTP],
// [Lifecycle.Add], health.New, the adapters' Listen), before anything
// runs; nil loggers and providers are ignored. Only a programmer error
// that no input can cause panics, with a "lameduck:" prefix:
// [Lifecycle.Reached] with a value that is not a [Phase]. Nothing panics
// on a request.
//
// # Usage
//
//	lc, err := core.New(core.WithHold(10*time.Second), core.WithGracePeriod(30*time.Second))
//	if err != nil {
//		log.Fatal(err)
//	}
//	h, err := health.New(lc)
//	if err != nil {
//		log.Fatal(err)
//	}
//	if err := lc.ListenHTTP(&http.Server{Addr: ":8080", Handler: mux}, h); err != nil {
//		log.Fatal(err) // a port in use, say
//	}
//	if err := lc.Run(context.Background()); err != nil {
//		log.Fatal(err) // forced: work was abandoned; or a server failed
//	}
package core
