package grpcadapter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/grpcadapter"
	"github.com/lameduck/lameduck/health"
)

// Example shows what grpc.health.v1 answers in each phase: readiness ("")
// turns NOT_SERVING the moment the shutdown starts, liveness stays
// SERVING.
func Example() {
	lc, err := core.New(core.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	h, err := health.New(lc)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpcadapter.ServerOptions(lc)...)
	if err := grpcadapter.Bind(lc, srv, h); err != nil {
		log.Fatal(err)
	}
	lis := bufconn.Listen(1 << 16) // in memory; a real service uses net.Listen
	go srv.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	show := func(when string) {
		for _, service := range []string{"", "liveness"} {
			r, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("%-8s %-10q %v\n", when, service, r.GetStatus())
		}
	}

	show("starting")
	lc.MarkReady()
	show("serving")

	// Start the shutdown; the hold (10s by default) keeps serving.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- lc.Shutdown(ctx) }()
	<-lc.Holding()
	show("holding")

	cancel() // cut the hold short: the shutdown is forced
	err = <-done
	fmt.Println("forced:", errors.Is(err, context.Canceled))
	// Output:
	// starting ""         NOT_SERVING
	// starting "liveness" SERVING
	// serving  ""         SERVING
	// serving  "liveness" SERVING
	// holding  ""         NOT_SERVING
	// holding  "liveness" SERVING
	// forced: true
}

// ExampleBind wires a service the way a main function does: interceptors
// first, services, then Bind, then serve until SIGTERM.
func ExampleBind() {
	lc, err := core.New() // WithHold, WithDrainTimeout, WithGracePeriod...
	if err != nil {
		log.Fatal(err)
	}
	h, err := health.New(lc) // WithReadinessChecks(...)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpcadapter.ServerOptions(lc)...)
	// pb.RegisterGreeterServer(srv, greeter): register services before Bind.
	if err := grpcadapter.Bind(lc, srv, h, grpcadapter.WithLivenessService("liveness")); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", ":9090")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln) // returns when the drain stops the server
	lc.MarkReady()
	if err := lc.Run(context.Background()); err != nil {
		log.Fatal(err) // a *core.ForcedError: work was abandoned
	}
}
