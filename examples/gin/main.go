// Command gin is a gin service that shuts down without losing a request.
// It behaves exactly like examples/chi; only the router differs.
//
// It follows the example contract of DESIGN.md section 5:
//
//	go run ./examples/gin -addr :8080 -hold 10s -drain-timeout 15s -grace 30s
//
// Routes: GET /healthz, GET /livez, GET /readyz (with ?verbose, ?exclude=,
// /readyz/<check>) and GET|POST /work?ms=N, which waits N ms and answers
// "ok", over HTTP/1.1 and h2c (HTTP/2 with prior knowledge) on the same
// port. On SIGTERM or SIGINT readiness fails at once, every request is
// still served for -hold (HTTP/1 responses with "Connection: close"),
// then the listener closes (HTTP/2 connections get a graceful GOAWAY)
// and in-flight requests drain for at most -drain-timeout. With
// -hold-max above -hold the hold is adaptive: after -hold it ends as soon
// as no new traffic has come for -hold-quiet, at most at -hold-max:
//
//	go run ./examples/gin -hold 1s -hold-max 8s -hold-quiet 500ms
//
// With -admin-addr, GET /prestop on that separate listener is the
// Kubernetes preStop trigger. Exit status: 0 drained, 1 drain timed out
// and work was abandoned, 2 bad flags, 3 a second signal forced the
// exit, 4 the service could not listen or a server failed. With
// OTEL_TRACES_EXPORTER=console the shutdown spans are printed to stdout.
//
// Everything is in this file, top to bottom, using only the public API:
// copy it. The engine is served through the lifecycle, never by
// engine.Run, which nothing can shut down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/ginadapter"
	"github.com/lameduck/lameduck/health"
)

// Exit statuses of the example contract.
const (
	exitDrained = 0 // every request finished
	exitForced  = 1 // the drain timed out and work was abandoned
	exitUsage   = 2 // bad flags; nothing was started
	exitSignal  = 3 // a second signal cut the shutdown short
	exitFailure = 4 // the service could not listen, or a server failed
)

func main() { os.Exit(run()) }

func run() int {
	addr := flag.String("addr", ":8080", "`address` to listen on, serving HTTP/1.1 and h2c (HTTP/2 with prior knowledge) on the same port (host:port; port 0 picks a free port, logged as addr=…)")
	hold := flag.Duration("hold", 10*time.Second, "how long to keep serving after SIGTERM while load balancers converge (readiness fails at once); with -hold-max, the hold's minimum")
	holdMax := flag.Duration("hold-max", 0, "the adaptive hold's maximum (default: equal to -hold, a fixed hold); larger than -hold turns the adaptive hold on: after -hold it ends once no new traffic has come for -hold-quiet, at the latest after -hold-max")
	holdQuiet := flag.Duration("hold-quiet", time.Second, "with -hold-max: the adaptive hold ends after this long without new traffic (a non-probe request on a connection opened during the hold)")
	drain := flag.Duration("drain-timeout", 15*time.Second, "how long the drain may wait for in-flight requests before they are abandoned (exit 1)")
	grace := flag.Duration("grace", 30*time.Second, "the pod's terminationGracePeriodSeconds: the longest hold (-hold-max) + drain-timeout + margin must fit in it")
	adminAddr := flag.String("admin-addr", "", "`address` of an admin listener serving the preStop trigger at /prestop (off when empty; never expose it publicly)")
	flag.Usage = usage
	flag.Parse() // exits 2 on a bad flag
	fail := func(code int, err error) int {
		fmt.Fprintln(os.Stderr, "gin:", err)
		return code
	}
	if !flagSet("hold-max") {
		*holdMax = *hold // the default follows -hold: a fixed hold
	}
	if err := checkFlags(*addr, *hold, *holdMax, *holdQuiet, *drain, *grace); err != nil {
		return fail(exitUsage, err) // before anything listens
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	flush, err := setupTelemetry(context.Background())
	if err != nil {
		return fail(exitUsage, err)
	}
	defer flush() // every return below flushes the spans

	opts := []core.Option{core.WithHold(*hold), core.WithDrainTimeout(*drain), core.WithGracePeriod(*grace), core.WithLogger(logger)}
	if *holdMax > *hold {
		// At least -hold, then until no new traffic for -hold-quiet, at
		// most -hold-max: the hold ends when the load balancers are done.
		opts = append(opts, core.WithAdaptiveHold(*holdQuiet, *holdMax))
	}
	lc, err := core.New(opts...)
	if err != nil {
		return fail(exitUsage, err)
	}
	h, err := health.New(lc, health.WithLogger(logger))
	if err != nil {
		return fail(exitUsage, err)
	}

	// Release mode: gin's debug output goes to stdout, which carries the
	// spans of OTEL_TRACES_EXPORTER=console. It must precede gin.New.
	// gin.New, not gin.Default: gin's Logger would print every request to
	// stdout too; the example logs phase changes only, with slog.
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true // 405 for PUT /work, as chi answers
	e.Use(gin.Recovery())
	e.GET("/work", gin.WrapF(work))
	e.POST("/work", gin.WrapF(work))
	// Listen now: a port in use is an error here, before anything is ready.
	// The probes (/healthz, /livez, /readyz) are served by h, untracked.
	bound, err := ginadapter.Listen(lc, *addr, e, h)
	if err != nil {
		return fail(exitFailure, err)
	}
	logger.Info("listening", "addr", bound.String())

	if *adminAddr != "" {
		// The preStop trigger takes the service down: only on a listener
		// of its own, which no Service exposes.
		mux := http.NewServeMux()
		mux.Handle("GET /prestop", lc.PreStopHandler())
		admin := &http.Server{Addr: *adminAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		if err := lc.ListenHTTP(admin, nil); err != nil {
			return fail(exitFailure, err)
		}
		logger.Info("admin listening", "admin_addr", admin.Addr)
	}

	// Run serves, catches SIGTERM and SIGINT, only then marks the service
	// ready, and returns when it has shut down.
	return exitCode(lc.Run(context.Background()))
}

func usage() {
	fmt.Fprint(flag.CommandLine.Output(), "Usage of gin:\n\nA demo service that shuts down the lameduck way: on SIGTERM or SIGINT\n"+
		"readiness fails, requests are served for -hold (with -hold-max: until no new\n"+
		"traffic for -hold-quiet, at most -hold-max), then in-flight work drains for\n"+
		"at most -drain-timeout. HTTP/1.1 and h2c on one port. Exit 0: drained;\n"+
		"1: work abandoned; 2: bad flags; 3: second signal; 4: could not listen.\n\n")
	flag.PrintDefaults()
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// checkFlags checks the flags before anything listens.
func checkFlags(addr string, hold, holdMax, holdQuiet, drain, grace time.Duration) error {
	switch {
	case flag.NArg() > 0:
		return fmt.Errorf("unexpected arguments: %q", flag.Args())
	case addr == "":
		return errors.New("-addr must not be empty")
	case hold < 0:
		return fmt.Errorf("-hold must not be negative, got %v", hold)
	case holdMax < hold:
		return fmt.Errorf("-hold-max %v is shorter than -hold %v, the hold's minimum", holdMax, hold)
	case holdQuiet <= 0:
		return fmt.Errorf("-hold-quiet must be positive, got %v", holdQuiet)
	case drain <= 0:
		return fmt.Errorf("-drain-timeout must be positive, got %v", drain)
	case grace <= 0:
		return fmt.Errorf("-grace must be positive, got %v", grace)
	}
	// The rule core.New applies with WithGracePeriod: the longest hold +
	// drain timeout + margin ≤ grace, or the kubelet would SIGKILL
	// mid-drain.
	longest, names := hold, "-hold"
	if holdMax > hold {
		longest, names = holdMax, "-hold-max"
	}
	if err := core.CheckBudget(grace, longest, drain); err != nil {
		return fmt.Errorf("%s, -drain-timeout and -grace: %w", names, err)
	}
	return nil
}

// exitCode maps the result of Run to the exit status.
func exitCode(err error) int {
	switch _, forced := err.(*core.ForcedError); {
	case err == nil:
		return exitDrained
	case errors.Is(err, core.ErrSecondSignal):
		return exitSignal
	case forced: // exactly a ForcedError: the drain timed out, nothing else failed
		return exitForced
	}
	return exitFailure // a server failed (its error may be joined with a ForcedError)
}

// work serves GET|POST /work?ms=N: it waits N milliseconds (or until the
// client goes away) and answers 200 "ok". A missing or bad N is a 400.
func work(w http.ResponseWriter, r *http.Request) {
	const maxMS = 3_600_000 // an hour
	n, err := strconv.ParseInt(r.URL.Query().Get("ms"), 10, 64)
	if err != nil || n < 0 || n > maxMS {
		http.Error(w, fmt.Sprintf("ms must be a whole number of milliseconds from 0 to %d", maxMS), http.StatusBadRequest)
		return
	}
	t := time.NewTimer(time.Duration(n) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// setupTelemetry installs the OpenTelemetry SDK as the global providers,
// with exporters chosen by the standard environment variables through
// autoexport: OTEL_TRACES_EXPORTER=console prints spans to stdout,
// OTEL_EXPORTER_OTLP_ENDPOINT sends them to a collector. With none of
// them set it installs nothing, so a plain run never tries to reach a
// collector. The returned function flushes and stops the providers.
func setupTelemetry(ctx context.Context) (flush func(), err error) {
	var stops []func(context.Context) error
	if configured("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("traces exporter: %w", err)
		}
		if !autoexport.IsNoneSpanExporter(exp) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
			otel.SetTracerProvider(tp)
			stops = append(stops, tp.Shutdown)
		}
	}
	if configured("OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
		r, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, fmt.Errorf("metrics exporter: %w", err)
		}
		if !autoexport.IsNoneMetricReader(r) {
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
			otel.SetMeterProvider(mp)
			stops = append(stops, mp.Shutdown)
		}
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, stop := range stops {
			if err := stop(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "telemetry flush: %v\n", err)
			}
		}
	}, nil
}

// configured reports whether the exporter variable or an OTLP endpoint is
// set in the environment.
func configured(exporterVar, endpointVar string) bool {
	for _, k := range []string{exporterVar, endpointVar, "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if os.Getenv(k) != "" {
			return true
		}
	}
	return false
}
