// Command chi is a chi service that shuts down without losing a request.
//
// It follows the example contract of DESIGN.md section 5:
//
//	go run ./examples/chi -addr :8080 -hold 10s -drain-timeout 15s -grace 30s
//
// Routes: GET /healthz, GET /livez, GET /readyz (with ?verbose, ?exclude=,
// /readyz/<check>) and GET|POST /work?ms=N, which waits N ms and answers
// "ok". On SIGTERM or SIGINT readiness fails at once, every request is
// still served for -hold (with "Connection: close"), then the listener
// closes and in-flight requests drain for at most -drain-timeout. Exit
// status: 0 drained, 1 drain timed out and work was abandoned, 2 bad
// flags, 3 a second signal forced the exit. With OTEL_TRACES_EXPORTER=console
// the shutdown spans are printed to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/lameduck/lameduck/chiadapter"
	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/examples/internal/service"
	"github.com/lameduck/lameduck/health"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	cfg, err := service.ParseFlags("chi", ":8080", args, os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, err)
		}
		return service.ExitUsage
	}
	logger := service.Logger()
	flush, err := service.SetupTelemetry(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "chi:", err)
		return service.ExitUsage
	}
	defer flush()

	lc, err := core.New(cfg.Options(logger)...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chi:", err)
		return service.ExitUsage
	}
	h, err := health.New(lc, health.WithLogger(logger))
	if err != nil {
		fmt.Fprintln(os.Stderr, "chi:", err)
		return service.ExitUsage
	}

	r := chi.NewRouter()
	r.Use(chiadapter.Middleware(lc))
	chiadapter.Mount(r, h)
	r.Get("/work", service.Work)
	r.Post("/work", service.Work)

	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	if err := lc.BindHTTP(srv); err != nil {
		fmt.Fprintln(os.Stderr, "chi:", err)
		return service.ExitFailure
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chi:", err)
		return service.ExitFailure
	}
	logger.Info("listening", "addr", ln.Addr().String())
	stopAdmin, err := service.ServeAdmin(cfg.AdminAddr, lc, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chi:", err)
		return service.ExitFailure
	}
	defer stopAdmin()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("serve", "err", err)
			cancel() // shut down rather than linger unable to serve
		}
	}()
	lc.MarkReady()
	return service.ExitCode(lc.Run(ctx))
}
