package health_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// The readiness of a service through its life: not ready while starting,
// ready once Run serves, not ready again from the shutdown on, while
// liveness keeps passing.
func Example() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	lc, err := core.New(core.WithSignals(), core.WithHold(0), core.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	h, err := health.New(lc, health.WithLogger(quiet),
		health.WithReadinessChecks(health.NamedCheck("db", func(ctx context.Context) error {
			return nil // e.g. db.PingContext(ctx)
		})))
	if err != nil {
		panic(err)
	}

	probe := func(target string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		fmt.Printf("%s %d\n%s\n", target, rec.Code, rec.Body)
	}
	probe("/readyz")
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- lc.Run(ctx) }()
	<-lc.Reached(core.Serving)
	probe("/readyz")
	probe("/readyz?verbose")
	cancel() // the shutdown starts, as on SIGTERM
	if err := <-res; err != nil {
		panic(err)
	}
	probe("/readyz/shutdown")
	probe("/healthz")
	// Output:
	// /readyz 503
	// [-]shutdown failed: reason withheld
	// [+]db ok
	// readyz check failed
	//
	// /readyz 200
	// ok
	// /readyz?verbose 200
	// [+]shutdown ok
	// [+]db ok
	// readyz check passed
	//
	// /readyz/shutdown 503
	// [-]shutdown failed: reason withheld
	// readyz check failed
	//
	// /healthz 200
	// ok
}

// A check's error is logged, never served.
func ExampleNamedCheck() {
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // deterministic output
			}
			return a
		},
	}))
	lc, err := core.New(core.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		panic(err)
	}
	h, err := health.New(lc, health.WithLogger(log),
		health.WithReadinessChecks(health.NamedCheck("db", func(ctx context.Context) error {
			return errors.New("dial tcp 10.0.0.7:5432: connection refused")
		})))
	if err != nil {
		panic(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz/db", nil))
	fmt.Print(rec.Code, "\n", rec.Body)
	// Output:
	// level=WARN msg="health: check failed" check=db kind=readiness err="dial tcp 10.0.0.7:5432: connection refused"
	// 503
	// [-]db failed: reason withheld
	// readyz check failed
}

// The paths a Health serves: the three probes and one path per check.
// Any other path is 404, and a method other than GET and HEAD gets 405.
func ExampleHealth_ServeHTTP() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	lc, err := core.New(core.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	h, err := health.New(lc, health.WithLogger(quiet),
		health.WithReadinessChecks(health.NamedCheck("db", func(context.Context) error { return nil })),
		health.WithLivenessChecks(health.NamedCheck("worker", func(context.Context) error { return nil })))
	if err != nil {
		panic(err)
	}
	for _, path := range []string{
		"/healthz", "/livez", "/readyz", // /readyz fails: the lifecycle is not serving yet
		"/readyz/shutdown", "/readyz/db",
		"/healthz/ping", "/healthz/worker", "/livez/ping", "/livez/worker",
		"/readyz/worker", "/ops/readyz",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, path, nil))
		fmt.Println(path, rec.Code)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/readyz", nil))
	fmt.Println("POST /readyz", rec.Code, rec.Header().Get("Allow"))
	// Output:
	// /healthz 200
	// /livez 200
	// /readyz 503
	// /readyz/shutdown 503
	// /readyz/db 200
	// /healthz/ping 200
	// /healthz/worker 200
	// /livez/ping 200
	// /livez/worker 200
	// /readyz/worker 404
	// /ops/readyz 404
	// POST /readyz 405 GET, HEAD
}

// A service passes its Health to ListenHTTP, which serves the probe
// paths from it, untracked and never refused, before the service's
// router sees the request: the router's catch-all does not swallow them.
func ExampleHealth_ServeHTTP_listenHTTP() {
	lc, err := core.New()
	if err != nil {
		panic(err)
	}
	h, err := health.New(lc, health.WithReadinessChecks(health.NamedCheck("db", func(context.Context) error {
		return nil // e.g. db.PingContext(ctx)
	})))
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello") })
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := lc.ListenHTTP(srv, h); err != nil { // a port in use fails here
		panic(err)
	}
	if err := lc.Run(context.Background()); err != nil { // until SIGTERM, then hold and drain
		os.Exit(1)
	}
}

// Ready is what gRPC health reports: the lifecycle is serving and every
// readiness check passes.
func ExampleHealth_Ready() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	lc, err := core.New(core.WithSignals(), core.WithHold(0), core.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	var dbDown atomic.Bool
	h, err := health.New(lc, health.WithLogger(quiet),
		health.WithTimeout(200*time.Millisecond),
		health.WithReadinessChecks(health.NamedCheck("db", func(context.Context) error {
			if dbDown.Load() {
				return errors.New("db down")
			}
			return nil
		})))
	if err != nil {
		panic(err)
	}
	fmt.Println("starting:", h.Ready(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- lc.Run(ctx) }()
	<-lc.Reached(core.Serving)
	fmt.Println("serving:", h.Ready(context.Background()))
	dbDown.Store(true)
	fmt.Println("serving, db down:", h.Ready(context.Background()))
	fmt.Println("live:", h.Live(context.Background()))
	cancel()
	if err := <-res; err != nil {
		panic(err)
	}
	// Output:
	// starting: false
	// serving: true
	// serving, db down: false
	// live: true
}
