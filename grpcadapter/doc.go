// Package grpcadapter serves gRPC from a [core.Lifecycle]: [Listen]
// builds the *grpc.Server with in-flight tracking interceptors and
// grpc.health.v1 served from the lifecycle and the [health.Health]
// checks, and adds it to the lifecycle, which serves it and drains it
// with a drain that cannot hang.
//
// # Usage
//
//	lc, err := core.New(core.WithHold(10*time.Second), core.WithGracePeriod(30*time.Second))
//	if err != nil {
//		log.Fatal(err)
//	}
//	h, err := health.New(lc, health.WithReadinessChecks(health.NamedCheck("db", db.PingContext)))
//	if err != nil {
//		log.Fatal(err)
//	}
//	srv, err := grpcadapter.Listen(lc, ":9090", h) // grpc.ServerOptions may follow
//	if err != nil {
//		log.Fatal(err) // a port in use, say: nothing has run yet
//	}
//	pb.RegisterGreeterServer(srv, greeter) // after Listen, before Run
//	if err := lc.Run(context.Background()); err != nil {
//		log.Fatal(err) // forced: work was abandoned; or the server failed
//	}
//
// Listen listens at once, so a bad address or a port in use is its error.
// [core.Lifecycle.Run] then serves the server, catches SIGTERM and marks
// the service ready; a server that stops serving before the shutdown is
// Run's error. Listen builds the server, so services are registered on
// it after Listen, and before Run: grpc-go refuses (fatally) a
// registration once the server serves, which is why Listen is an error
// once Run serves. The grpc.ServerOptions passed to Listen apply; their
// Chain interceptors run inside lameduck's, which track them too.
//
// # What happens on SIGTERM
//
//   - Hold: grpc.health.v1 reports NOT_SERVING for "" and every
//     registered service at once, to Check and to every open Watch
//     stream; the liveness service ("liveness") stays SERVING. Every RPC
//     is still served, so clients and proxies that watch health move
//     away without a single failed call. With [core.WithAdaptiveHold],
//     the hold lasts while new traffic keeps arriving (see below).
//   - Drain: open streams are told to end: the handler's context is
//     cancelled and its context error becomes codes.Unavailable, which
//     clients treat as retryable; Watch streams end the same way after
//     sending the last status. GracefulStop then refuses new RPCs at the
//     transport (a GOAWAY, whose last stream id tells the client which
//     streams the server never processed: grpc-go retries those
//     transparently, on another connection) and returns as soon as the
//     in-flight ones are done. An RPC that reaches the interceptors is
//     served, in the drain as in the hold: the server accepted its
//     stream, so the client could not retry it, and refusing it would
//     fail it. A stream opened in the drain runs with its context ended,
//     like the streams open when the drain began.
//   - Drain timeout: Stop closes every connection, cancelling what is
//     left; the lifecycle reports the tracked RPCs still running as
//     abandoned ([core.ForcedError]). Once the lifecycle has stopped, an
//     RPC that still reaches the interceptors (its connection closed
//     already) fails with codes.Unavailable without running its
//     handler: nothing waits for it any more and no response could
//     reach the client.
//
// # Adaptive hold
//
// With [core.WithAdaptiveHold], the hold ends once no new traffic has
// arrived for its quiet time (at the earliest after [core.WithHold], at
// the latest at its maximum). For gRPC, new traffic is an RPC that is not
// a health RPC on a connection accepted after the hold began: a client
// or a load balancer that still sends RPCs here on new connections has
// not yet learned that the server is going away. The RPCs of connections
// opened before the hold do not count: a client's pinned HTTP/2
// connection keeps sending until its GOAWAY, whatever the routing. Nor do
// health RPCs: the kubelet's gRPC probe calls Check on a fresh
// connection every period. The listener built by Listen records when it
// accepted each connection of the hold, and the interceptors look the
// RPC's connection up by its peer addresses, only during the hold: while
// serving, an RPC pays one atomic load for it.
//
// # Health
//
// The readiness that grpc.health.v1 reports for "" and for every service
// registered on the server (whenever it was registered) is the same as
// /readyz: [health.Health.Ready], that is the lifecycle is serving and
// every readiness check passes. The service "liveness" reports
// [health.Health.Live]: SERVING in every phase, unless a liveness check
// fails. Any other name is NOT_FOUND for Check and SERVICE_UNKNOWN for
// Watch, as the protocol says. Without a Health (a nil h), readiness is
// the lifecycle's phase alone and liveness is SERVING.
//
// Statuses are evaluated on every Check (the kubelet's native gRPC probe
// calls Check) and, while Watch streams are open, every second;
// [health.WithCacheTTL] and the checks' single flight bound what probe
// storms cost. They live in grpc-go's own health.Server, which answers
// unknown names per the protocol; its Shutdown, which would flip liveness
// too, is never called.
//
// For Kubernetes, probe readiness with service "" (the default) and
// liveness with service "liveness":
//
//	readinessProbe:
//	  grpc: {port: 9090}
//	livenessProbe:
//	  grpc: {port: 9090, service: liveness}
//
// # Not covered
//
// Health RPCs are neither tracked nor refused nor counted as new
// traffic, like the HTTP probe paths.
// The interceptor of a grpc.UnaryInterceptor or grpc.StreamInterceptor
// option runs before lameduck's (grpc-go runs it ahead of every chain),
// so the time spent in it is not tracked: pass yours with
// grpc.ChainUnaryInterceptor and grpc.ChainStreamInterceptor. A stream
// handler blocked in RecvMsg, or in a SendMsg waiting for flow control,
// does not see its context end (grpc-go cannot wake it): receive in a
// goroutine and select on the context, or the stream is closed only at
// the drain timeout.
package grpcadapter
