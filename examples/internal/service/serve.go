package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// DefaultHTTPAddr is the -addr default of the HTTP examples.
const DefaultHTTPAddr = ":8080"

// RunHTTP is the whole life of an HTTP example service named name, with
// only the router left to the caller: it parses args (without the program
// name) with [ParseFlags], sets up telemetry, builds the lifecycle and the
// health checks, asks routes for the handler, serves it with an
// *http.Server bound to the lifecycle ([core.Lifecycle.BindHTTP]) and the
// preStop trigger on the admin listener, logs "listening addr=…", marks
// the service ready once [core.Lifecycle.Run] catches signals and waits for Run. It returns the
// exit status: [ExitUsage] before anything listens, [ExitFailure] when
// the service cannot listen, else [ExitCode] of the shutdown.
func RunHTTP(name string, args []string, routes func(*core.Lifecycle, *health.Health) http.Handler) int {
	cfg, err := ParseFlags(name, DefaultHTTPAddr, args, os.Stderr)
	if err != nil {
		return ExitUsage // ParseFlags has said why
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return code
	}
	logger := Logger()
	flush, err := SetupTelemetry(context.Background())
	if err != nil {
		return fail(ExitUsage, err)
	}
	defer flush()

	lc, err := core.New(cfg.Options(logger)...)
	if err != nil {
		return fail(ExitUsage, err)
	}
	h, err := health.New(lc, health.WithLogger(logger))
	if err != nil {
		return fail(ExitUsage, err)
	}

	srv := &http.Server{Handler: routes(lc, h), ReadHeaderTimeout: 10 * time.Second}
	if err := lc.BindHTTP(srv); err != nil {
		return fail(ExitFailure, err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fail(ExitFailure, err)
	}
	logger.Info("listening", "addr", ln.Addr().String())
	stopAdmin, err := ServeAdmin(cfg.AdminAddr, lc, logger)
	if err != nil {
		ln.Close()
		return fail(ExitFailure, err)
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
	go func() {
		<-lc.Running() // a signal before Run catches it would kill the process
		lc.MarkReady()
	}()
	return ExitCode(lc.Run(ctx))
}
