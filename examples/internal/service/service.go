// Package service holds what the example services share and what is not
// the library's business: the flags of the example contract, the /work
// handler, the OpenTelemetry SDK setup and the exit code.
package service

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
	"strconv"
	"time"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lameduck/lameduck/core"
)

// Exit codes of the example services.
const (
	ExitDrained  = 0 // every request finished
	ExitForced   = 1 // the drain timed out and work was abandoned
	ExitUsage    = 2 // bad flags; nothing was started
	ExitSignal   = 3 // a second signal cut the shutdown short
	ExitFailure  = 4 // the service could not start or serve
	maxWork      = time.Hour
	flushTimeout = 5 * time.Second
)

// Config is the example contract's command line.
type Config struct {
	Addr         string
	Hold         time.Duration
	DrainTimeout time.Duration
	Grace        time.Duration
	AdminAddr    string
}

// ParseFlags parses args (without the program name) into a Config,
// checking every value before anything starts. Every error has already
// been written to stderr when it returns (flag's own errors with the
// usage), so callers only exit with [ExitUsage].
func ParseFlags(name, defaultAddr string, args []string, stderr io.Writer) (Config, error) {
	c, err := parseFlags(name, defaultAddr, args, stderr)
	var bad badValue
	if errors.As(err, &bad) {
		fmt.Fprintln(stderr, err)
	}
	return c, err
}

// badValue is an error of a value that flag parsed but the contract
// rejects; flag itself reports the others.
type badValue struct{ error }

func parseFlags(name, defaultAddr string, args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", defaultAddr, "`address` to listen on (host:port; port 0 picks a free port, logged as addr=…)")
	fs.DurationVar(&c.Hold, "hold", 10*time.Second, "how long to keep serving after SIGTERM while load balancers converge (readiness fails at once)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 15*time.Second, "how long the drain may wait for in-flight requests before they are abandoned (exit 1)")
	fs.DurationVar(&c.Grace, "grace", 30*time.Second, "the pod's terminationGracePeriodSeconds: hold + drain-timeout must fit in it")
	fs.StringVar(&c.AdminAddr, "admin-addr", "", "`address` of an admin listener serving the preStop trigger at /prestop (off when empty; never expose it publicly)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of %s:\n\nA demo service that shuts down the lameduck way: on SIGTERM or SIGINT\n"+
			"readiness fails, requests are served for -hold, then in-flight work drains\n"+
			"for at most -drain-timeout. Exit 0: drained; 1: work abandoned; 3: second signal.\n\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, badValue{fmt.Errorf("%s: unexpected arguments: %q", name, fs.Args())}
	}
	switch {
	case c.Addr == "":
		return c, badValue{fmt.Errorf("%s: -addr must not be empty", name)}
	case c.Hold < 0:
		return c, badValue{fmt.Errorf("%s: -hold must not be negative, got %v", name, c.Hold)}
	case c.DrainTimeout <= 0:
		return c, badValue{fmt.Errorf("%s: -drain-timeout must be positive, got %v", name, c.DrainTimeout)}
	case c.Grace <= 0:
		return c, badValue{fmt.Errorf("%s: -grace must be positive, got %v", name, c.Grace)}
	case c.Hold+c.DrainTimeout > c.Grace:
		return c, badValue{fmt.Errorf("%s: -hold %v + -drain-timeout %v = %v exceeds -grace %v: the kubelet would SIGKILL mid-drain",
			name, c.Hold, c.DrainTimeout, c.Hold+c.DrainTimeout, c.Grace)}
	}
	return c, nil
}

// Options returns the lifecycle options for c.
func (c Config) Options(logger *slog.Logger) []core.Option {
	return []core.Option{
		core.WithHold(c.Hold),
		core.WithDrainTimeout(c.DrainTimeout),
		core.WithGracePeriod(c.Grace),
		core.WithLogger(logger),
	}
}

// Logger returns the examples' logger: text lines on stderr.
func Logger() *slog.Logger { return slog.New(slog.NewTextHandler(os.Stderr, nil)) }

// Work serves GET|POST /work?ms=N: it waits N milliseconds (or until the
// client goes away) and answers 200 "ok". A missing or bad N is a 400.
func Work(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	d, err := WorkDuration(r.URL.Query().Get("ms"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if d > 0 {
		t := time.NewTimer(d)
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

// WorkDuration parses the ms parameter of /work.
func WorkDuration(ms string) (time.Duration, error) {
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 || time.Duration(n)*time.Millisecond > maxWork {
		return 0, fmt.Errorf("ms must be a whole number of milliseconds from 0 to %d, got %q", maxWork.Milliseconds(), ms)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// ExitCode maps the result of [core.Lifecycle.Run] to the process's exit
// status.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitDrained
	case errors.Is(err, core.ErrSecondSignal):
		return ExitSignal
	default:
		return ExitForced
	}
}

// SetupTelemetry installs the OpenTelemetry SDK as the global providers,
// with exporters chosen by the standard environment variables through
// autoexport: OTEL_TRACES_EXPORTER=console prints spans to stdout,
// OTEL_EXPORTER_OTLP_ENDPOINT sends them to a collector. With none of
// them set it installs nothing, so a plain run never tries to reach a
// collector. The returned function flushes and stops the providers; call
// it before exiting, on every path.
func SetupTelemetry(ctx context.Context) (flush func(), err error) {
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
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
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

// ServeAdmin serves the preStop trigger ([core.Lifecycle.PreStopHandler])
// at /prestop on its own listener at addr, apart from the public routes:
// whoever reaches it can take the service down. An empty addr serves
// nothing. The returned function closes the listener.
func ServeAdmin(addr string, lc *core.Lifecycle, logger *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	logger.Info("admin listening", "admin_addr", ln.Addr().String())
	mux := http.NewServeMux()
	mux.Handle("GET /prestop", lc.PreStopHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin serve", "err", err)
		}
	}()
	return func() { srv.Close(); <-done }, nil
}
