package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// backendEnv, when set in the environment to a behaviour, makes this
// program a backend of the demo instead of the demo itself.
const backendEnv = "LAMEDUCK_ROLLOUT_BACKEND"

// Exit statuses of a backend (besides being killed by SIGTERM), those of
// the example services.
const (
	backendDrained  = 0 // every request finished
	backendForced   = 1 // the drain timed out and work was abandoned
	backendUsage    = 2 // bad arguments
	backendSignal   = 3 // a second signal cut the shutdown short
	backendFailure  = 4 // could not listen or serve
	backendOrphaned = 5 // the demo went away (stdin closed)
)

// backendMain is the life of one backend process with the given
// behaviour: it listens on 127.0.0.1:0, prints the address it got on
// stdout (one line, for the demo), serves /work, /healthz and /readyz and
// reacts to SIGTERM as the behaviour says. It returns the exit status.
func backendMain(behaviour string, args []string) int {
	fs := flag.NewFlagSet("rollout backend", flag.ContinueOnError)
	hold := fs.Duration("hold", 2*time.Second, "lameduck hold; adaptive: its minimum")
	quiet := fs.Duration("hold-quiet", time.Second, "adaptive hold: quiet time")
	holdMax := fs.Duration("hold-max", 0, "adaptive hold: maximum")
	drain := fs.Duration("drain-timeout", 5*time.Second, "drain timeout")
	if err := fs.Parse(args); err != nil {
		return backendUsage
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid(), "behaviour", behaviour)

	// The demo holds our stdin open; when it goes away, so do we, so
	// that no backend outlives a demo that was killed.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(backendOrphaned)
	}()

	if b, ok := strings.CutPrefix(behaviour, grpcBackendPrefix); ok {
		return grpcBackendMain(b, *hold, *drain, logger)
	}
	switch behaviour {
	case behaviourLameduck:
		return serveLameduck(logger, core.WithHold(*hold), core.WithDrainTimeout(*drain))
	case behaviourAdaptive:
		// At least -hold, then until no new traffic for -hold-quiet, at
		// most -hold-max: until the balancer has stopped routing here.
		return serveLameduck(logger, core.WithHold(*hold), core.WithAdaptiveHold(*quiet, *holdMax), core.WithDrainTimeout(*drain))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logger.Error("listen", "err", err)
		return backendFailure
	}
	mux := http.NewServeMux()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	switch behaviour {
	case behaviourExit:
		return serveUntilKilled(srv, mux, ln, logger)
	case behaviourShutdown:
		return serveShutdown(srv, mux, ln, *drain, logger)
	}
	logger.Error("unknown behaviour")
	ln.Close()
	return backendUsage
}

// announce tells the demo where we listen.
func announce(ln net.Listener) { fmt.Println(ln.Addr().String()) }

// alwaysOK answers probes of a service that knows nothing of its
// shutdown, as most do.
func alwaysOK(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

// serveUntilKilled installs no signal handler: SIGTERM kills the process
// with every connection and request on it.
func serveUntilKilled(srv *http.Server, mux *http.ServeMux, ln net.Listener, logger *slog.Logger) int {
	mux.HandleFunc("/healthz", alwaysOK)
	mux.HandleFunc("/readyz", alwaysOK)
	mux.HandleFunc("/work", work)
	announce(ln)
	err := srv.Serve(ln)
	logger.Error("serve", "err", err)
	return backendFailure
}

// serveShutdown is the pattern most Go services use: on SIGTERM, call
// http.Server.Shutdown at once, which closes the listener and the idle
// connections and waits for the requests in flight.
func serveShutdown(srv *http.Server, mux *http.ServeMux, ln net.Listener, drain time.Duration, logger *slog.Logger) int {
	mux.HandleFunc("/healthz", alwaysOK)
	mux.HandleFunc("/readyz", alwaysOK)
	mux.HandleFunc("/work", work)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	announce(ln)
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		logger.Error("serve", "err", err)
		return backendFailure
	}
	logger.Info("SIGTERM: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Error("shutdown", "err", err)
		return backendForced
	}
	logger.Info("stopped")
	return backendDrained
}

// serveLameduck serves with a core.Lifecycle: readiness fails at SIGTERM,
// everything is served for the hold (with "Connection: close"), then the
// drain. ListenHTTP listens at once; Run serves, catches the signals and
// only then marks the backend ready. The options set the hold, fixed or
// adaptive, and the drain timeout; the lifecycle logs how long it held
// ("lameduck: hold ended held=…"), which the demo reads.
func serveLameduck(logger *slog.Logger, opts ...core.Option) int {
	lc, err := core.New(append(opts, core.WithLogger(logger))...)
	if err != nil {
		logger.Error("lifecycle", "err", err)
		return backendUsage
	}
	h, err := health.New(lc, health.WithLogger(logger))
	if err != nil {
		logger.Error("health", "err", err)
		return backendUsage
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/work", work)
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := lc.ListenHTTP(srv, h); err != nil { // h serves /healthz, /livez and /readyz
		logger.Error("listen", "err", err)
		return backendFailure
	}
	fmt.Println(srv.Addr) // announce: the demo then polls /readyz
	return exitCode(lc.Run(context.Background()))
}

// exitCode maps the result of core.Lifecycle.Run to an exit status.
func exitCode(err error) int {
	switch _, forced := err.(*core.ForcedError); {
	case err == nil:
		return backendDrained
	case errors.Is(err, core.ErrSecondSignal):
		return backendSignal
	case forced: // exactly a ForcedError: the drain timed out
		return backendForced
	}
	return backendFailure // a server failed
}

// work serves GET|POST /work?ms=N: it waits N milliseconds and answers
// 200 "ok", as the example services do.
func work(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	n, err := strconv.Atoi(r.URL.Query().Get("ms"))
	if err != nil || n < 0 || n > 3_600_000 {
		http.Error(w, "ms must be a whole number of milliseconds from 0 to 3600000", http.StatusBadRequest)
		return
	}
	if n > 0 {
		t := time.NewTimer(time.Duration(n) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}
