// Command grpc is a gRPC service that shuts down without failing an RPC.
//
// It follows the example contract of DESIGN.md section 5:
//
//	go run ./examples/grpc -addr :9090 -hold 10s -drain-timeout 15s -grace 30s
//
// It serves grpc.health.v1 (service "" is readiness, "liveness" is
// liveness, and "lameduck.demo.Demo" follows readiness) and the demo
// service lameduck.demo.Demo (see demo.go): a unary Work, which waits the
// given milliseconds, and a server-streaming Ticks. On SIGTERM or SIGINT
// health turns NOT_SERVING at once (Check and Watch) while every RPC is
// still served for -hold; then open streams end with UNAVAILABLE,
// GracefulStop refuses new RPCs and in-flight ones drain for at most
// -drain-timeout. Exit status: 0 drained, 1 drain timed out and work was
// abandoned, 2 bad flags, 3 a second signal forced the exit. With
// OTEL_TRACES_EXPORTER=console the shutdown spans are printed to stdout.
//
// Probe it with grpc-health-probe (go install
// github.com/grpc-ecosystem/grpc-health-probe@v0.4.62), as the kubelet's
// native gRPC probe does:
//
//	grpc-health-probe -addr localhost:9090                    # readiness
//	grpc-health-probe -addr localhost:9090 -service liveness  # liveness
package main

import (
	"context"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/examples/internal/service"
	"github.com/lameduck/lameduck/grpcadapter"
	"github.com/lameduck/lameduck/health"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	cfg, err := service.ParseFlags("grpc", ":9090", args, os.Stderr)
	if err != nil {
		return service.ExitUsage // ParseFlags has said why
	}
	logger := service.Logger()
	flush, err := service.SetupTelemetry(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		return service.ExitUsage
	}
	defer flush()

	lc, err := core.New(cfg.Options(logger)...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		return service.ExitUsage
	}
	h, err := health.New(lc, health.WithLogger(logger))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		return service.ExitUsage
	}

	srv := grpc.NewServer(grpcadapter.ServerOptions(lc)...)
	srv.RegisterService(&demoDesc, nil)
	if err := grpcadapter.Bind(lc, srv, h); err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		return service.ExitFailure
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		return service.ExitFailure
	}
	logger.Info("listening", "addr", ln.Addr().String())
	stopAdmin, err := service.ServeAdmin(cfg.AdminAddr, lc, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		return service.ExitFailure
	}
	defer stopAdmin()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Serve returns nil once the drain has stopped the server.
		if err := srv.Serve(ln); err != nil {
			logger.Error("serve", "err", err)
			cancel() // shut down rather than linger unable to serve
		}
	}()
	go func() {
		<-lc.Running() // a signal before Run catches it would kill the process
		lc.MarkReady()
	}()
	return service.ExitCode(lc.Run(ctx))
}
