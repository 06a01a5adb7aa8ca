// Package grpcadapter ties a *grpc.Server to a [core.Lifecycle]: in-flight
// tracking interceptors, grpc.health.v1 served from the lifecycle and the
// [health.Health] checks, and a drain that cannot hang.
//
// # Usage
//
//	lc, err := core.New(core.WithHold(10*time.Second), core.WithDrainTimeout(15*time.Second))
//	if err != nil { ... }
//	h, err := health.New(lc, health.WithReadinessChecks(health.NamedCheck("db", db.PingContext)))
//	if err != nil { ... }
//	srv := grpc.NewServer(grpcadapter.ServerOptions(lc)...)
//	pb.RegisterGreeterServer(srv, greeter)        // register services first
//	if err := grpcadapter.Bind(lc, srv, h); err != nil { ... }
//	go srv.Serve(ln)
//	lc.MarkReady()
//	err = lc.Run(ctx) // SIGTERM: hold, drain, exit
//
// # What happens on SIGTERM
//
//   - Hold: grpc.health.v1 reports NOT_SERVING for "" (and the services
//     registered by name) at once, to Check and to every open Watch
//     stream; the liveness service ("liveness") stays SERVING. Every RPC
//     is still served, so clients and proxies that watch health move
//     away without a single failed call.
//   - Drain: open streams are told to end: the handler's context is
//     cancelled and its context error becomes codes.Unavailable, which
//     clients treat as retryable; Watch streams end the same way after
//     sending the last status. GracefulStop then refuses new RPCs (a
//     GOAWAY) and returns as soon as the in-flight ones are done. An RPC
//     that still reaches the interceptors is refused with
//     codes.Unavailable before its handler runs.
//   - Drain timeout: Stop closes every connection, cancelling what is
//     left; the lifecycle reports the tracked RPCs still running as
//     abandoned ([core.ForcedError]).
//
// # Health
//
// The readiness that grpc.health.v1 reports is the same as /readyz:
// [health.Health.Ready], that is the lifecycle is serving and every
// readiness check passes. It is evaluated on every Check (the kubelet's
// native gRPC probe calls Check) and, while Watch streams are open, every
// [WithWatchInterval]; [health.WithCacheTTL] and the checks' single
// flight bound what probe storms cost. Statuses live in grpc-go's own
// health.Server, which answers unknown names per the protocol; its
// Shutdown, which would flip liveness too, is never called.
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
// Health RPCs are neither tracked nor refused, like the HTTP probe paths.
// A stream handler blocked in RecvMsg, or in a SendMsg waiting for flow
// control, does not see its context end (grpc-go cannot wake it): receive
// in a goroutine and select on the context, or the stream is closed only
// at the drain timeout.
package grpcadapter
