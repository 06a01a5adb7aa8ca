// Package health serves liveness and readiness for a [core.Lifecycle], in
// the conventions of the Kubernetes apiserver's healthz package, and
// offers the same checks to gRPC health (see grpcadapter).
//
// # Endpoints
//
// A [Health] is an [net/http.Handler]: [Health.ServeHTTP] serves these
// paths, and answers 404 to any other:
//
//   - /healthz and /livez (liveness): the built-in "ping" check and the
//     checks of [WithLivenessChecks]. They pass in every phase, during
//     the hold and the drain too: only a restart should make them fail.
//   - /readyz (readiness): the built-in "shutdown" check, which passes
//     only in [core.Serving] (not before [core.Lifecycle.Run] has started
//     the servers and caught the signals, not from the hold on), and the
//     checks of [WithReadinessChecks].
//   - /readyz/<name>, /healthz/<name>, /livez/<name>: that one check
//     alone. /readyz/db ignores the lifecycle; /readyz/shutdown is the
//     lifecycle alone.
//
// A service serves its Health through [core.Lifecycle.ListenHTTP], which
// routes these paths here whatever the router does: they are answered
// before the router sees the request (its catch-all or prefixes do not
// matter), and they are never tracked nor refused, so liveness keeps
// passing during the drain. The paths are matched exactly: no prefix,
// no trailing slash.
//
// # Responses
//
// A probe that passes gets 200 with the body "ok"; one that fails gets
// 503 (the Kubernetes apiserver uses 500; 503 says "try another
// replica"). Bodies are text/plain, under 100 bytes per check (the
// kubelet reads 10 KiB, and takes any 200-399 as success):
//
//   - ?verbose lists each check, then a last line, as in
//     "[+]shutdown ok\n[-]db failed: reason withheld\nreadyz check failed\n";
//     the last line is "readyz", "healthz" or "livez" "check passed" or
//     "check failed". A failure always gets this listing, verbose or not.
//   - ?exclude=name skips a check (it is listed as "[+]name excluded: ok");
//     repeat it to skip several. A name that matches no check is ignored,
//     and logged, as the apiserver does. Per-check paths ignore exclude.
//   - The reason a check failed is logged (with slog, at warning level:
//     the check's name and its error), never written in a response, which
//     anyone who can reach the port may read. Failures of "shutdown"
//     are logged at debug level only: the lifecycle logs its phases.
//     Unlike the apiserver, unknown exclude names are not echoed in the
//     response either.
//   - HEAD is answered like GET, without the body. Any other method gets
//     405 with "Allow: GET, HEAD" (the apiserver accepts any method; a
//     probe that POSTs is a mistake worth seeing).
//
// # Checks
//
// A [Checker] has a name and a Check(ctx) error method; [NamedCheck]
// adapts a function. Checks run concurrently, each with its own timeout
// (see [WithTimeout], 500ms by default: the kubelet's probe gives up
// after 1s, and the whole answer must arrive well before). A check that
// panics counts as failed: the panic is recovered and logged with its
// stack. A check that has not returned a result yet counts as failing: a
// pod never becomes ready on a check that has not run.
//
// # Probe storms
//
// Concurrent probes share one in-flight run of each check (single
// flight), so a thousand simultaneous /readyz requests cost one call to
// the dependency. With [WithCacheTTL], a result (pass or fail) is also
// reused for a while after the check returns.
//
// # Timeouts and hung checks
//
// At its timeout a check's context is cancelled and every probe waiting
// for it answers at once, with the check failed. A check that ignores its
// context cannot hold a probe longer, but Go cannot stop a goroutine from
// outside: its run keeps going in the background until the check
// returns. While it does, later probes join that run and fail at once
// instead of starting a second copy beside it, so a hung dependency costs
// one goroutine, not one per probe, and the check is retried as soon as it
// returns.
//
// # Usage
//
//	lc, err := core.New()
//	if err != nil { ... }
//	h, err := health.New(lc,
//		health.WithReadinessChecks(health.NamedCheck("db", db.PingContext)),
//	)
//	if err != nil { ... }
//	srv := &http.Server{Addr: ":8080", Handler: app, ReadHeaderTimeout: 10 * time.Second}
//	if err := lc.ListenHTTP(srv, h); err != nil { ... } // /healthz, /livez, /readyz, /readyz/db, ...
//	if err := lc.Run(ctx); err != nil { ... }            // /readyz passes from Run until the shutdown
//
// The chi and gin adapters (chiadapter.Listen, ginadapter.Listen) do the
// same for their routers, and grpcadapter serves the same checks as
// grpc.health.v1.
package health
