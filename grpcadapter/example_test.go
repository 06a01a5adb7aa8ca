package grpcadapter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/grpcadapter"
	"github.com/lameduck/lameduck/health"
)

// Example shows what grpc.health.v1 answers in each phase: readiness (""
// and every registered service) turns NOT_SERVING the moment the
// shutdown starts, liveness stays SERVING.
func Example() {
	lc, err := core.New(core.WithHold(10*time.Second), core.WithSignals(), core.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	h, err := health.New(lc)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := grpcadapter.Listen(lc, "127.0.0.1:0", h)
	if err != nil {
		log.Fatal(err)
	}
	srv.RegisterService(&testServiceDesc, &testService{}) // pb.RegisterGreeterServer(srv, greeter)
	ran := make(chan error, 1)
	go func() { ran <- lc.Run(context.Background()) }()
	<-lc.Reached(core.Serving)

	conn, err := grpc.NewClient("passthrough:///"+srv.Addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	show := func(when string) {
		for _, service := range []string{"", serviceName, "liveness"} {
			r, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("%-7s %-21q %v\n", when, service, r.GetStatus())
		}
	}
	show("serving")

	// Start the shutdown, as SIGTERM does; the hold keeps serving.
	go lc.Shutdown(context.Background())
	<-lc.Reached(core.Holding)
	show("holding")

	lc.Force(nil) // cut the hold short
	var fe *core.ForcedError
	fmt.Println("forced:", errors.As(<-ran, &fe))
	// Output:
	// serving ""                    SERVING
	// serving "lameduck.test.Test"  SERVING
	// serving "liveness"            SERVING
	// holding ""                    NOT_SERVING
	// holding "lameduck.test.Test"  NOT_SERVING
	// holding "liveness"            SERVING
	// forced: true
}

// ExampleListen wires a service the way a main function does: Listen,
// register the services, then Run until SIGTERM.
func ExampleListen() {
	lc, err := core.New(core.WithHold(10*time.Second), core.WithGracePeriod(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	h, err := health.New(lc) // health.WithReadinessChecks(...)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := grpcadapter.Listen(lc, ":9090", h)
	if err != nil {
		log.Fatal(err) // a port in use, say
	}
	_ = srv // pb.RegisterGreeterServer(srv, greeter): register on srv, before Run
	if err := lc.Run(context.Background()); err != nil {
		log.Fatal(err) // a *core.ForcedError, work was abandoned; or the server failed
	}
}
