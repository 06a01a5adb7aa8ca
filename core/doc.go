// Package core is the lifecycle at the heart of lameduck: it takes a
// service through its phases and, on shutdown, fails readiness at once,
// keeps serving everything for a hold while load balancers converge, then
// stops accepting and drains in-flight work with a hard timeout. That
// removes the burst of 5xx that a Kubernetes rolling deploy otherwise
// causes. It knows net/http, but no web framework: adapters for chi, gin
// and gRPC build on it.
//
// # Phases
//
// A [Lifecycle] moves forward only: [Starting] → [Serving] → [Holding] →
// [Draining] → [Stopped]. [Lifecycle.MarkReady] moves Starting to
// Serving; [Lifecycle.Ready] is true only in Serving. Liveness is the
// process itself: it passes in every phase. [Lifecycle.Holding],
// [Lifecycle.Draining] and [Lifecycle.Stopped] return channels closed when
// each phase starts; long-lived handlers (server-sent events, websockets,
// streams) should end when Draining closes.
//
// # Request tracking
//
// [Lifecycle.Begin] and [Lifecycle.End] bracket each unit of work without
// a lock or an allocation. Begin returns false once the drain has started:
// refuse the work then, and do not call End. The drain waits until
// [Lifecycle.InFlight] is zero.
//
// # HTTP servers
//
// [Lifecycle.Middleware] (or [Lifecycle.AdmitHTTP] for other frameworks)
// tracks requests, adds "Connection: close" during the hold (a GOAWAY on
// HTTP/2), and answers a request that arrives after the drain began with
// 503 and Retry-After. Probe paths ([IsProbePath]) are never tracked nor
// refused. [Lifecycle.BindHTTP] lets the lifecycle drain an
// [net/http.Server]: it closes its listeners and idle connections and
// finishes the moment the last response has been written, instead of
// polling as [net/http.Server.Shutdown] does. Other servers implement
// [Server] and call [Lifecycle.Register].
//
// # Shutdown
//
// [Lifecycle.Shutdown] runs the sequence once; concurrent and later calls
// share its result. It returns nil when everything drained, or a
// [*ForcedError] that says how many requests were abandoned and why:
// [ErrDrainTimeout], [ErrSecondSignal] or the cause of Shutdown's context.
// With [WithGracePeriod], [New] checks that the hold plus the drain
// timeout fit in the platform's grace period.
//
// # Signals
//
// [Lifecycle.Run] waits for SIGTERM or SIGINT (see [WithSignals]) or for
// its context to end, runs the shutdown, and forces it on a second
// signal. [Lifecycle.PreStopHandler] serves a Kubernetes preStop hook: it
// starts the shutdown and answers when the hold is over, so the SIGTERM
// that follows joins the running sequence instead of holding again.
//
// # Telemetry
//
// Each shutdown records a span [SpanShutdown] with children [SpanHold]
// and [SpanDrain], and the metrics lameduck.requests.in_flight,
// lameduck.phase.duration and lameduck.requests.abandoned. The global
// OpenTelemetry providers are used unless [WithTracerProvider] or
// [WithMeterProvider] say otherwise; the package never installs an SDK.
//
// # Usage
//
//	l, err := core.New(core.WithHold(10*time.Second), core.WithDrainTimeout(15*time.Second),
//		core.WithGracePeriod(30*time.Second))
//	if err != nil {
//		log.Fatal(err)
//	}
//	srv := &http.Server{Addr: ":8080", Handler: l.Middleware(mux)}
//	if err := l.BindHTTP(srv); err != nil {
//		log.Fatal(err)
//	}
//	go func() {
//		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
//			log.Fatal(err)
//		}
//	}()
//	l.MarkReady()
//	if err := l.Run(context.Background()); err != nil {
//		log.Print(err) // forced: work was abandoned
//		os.Exit(1)
//	}
package core
