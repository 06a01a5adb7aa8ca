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
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// The readiness of a service through its life: not ready while starting,
// ready once marked, not ready again from the shutdown on, while liveness
// keeps passing.
func Example() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	lc, err := core.New(core.WithHold(0), core.WithLogger(quiet))
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
	mux := http.NewServeMux()
	h.Install(mux)

	probe := func(target string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		fmt.Printf("%s %d\n%s\n", target, rec.Code, rec.Body)
	}
	probe("/readyz")
	lc.MarkReady()
	probe("/readyz")
	probe("/readyz?verbose")
	if err := lc.Shutdown(context.Background()); err != nil {
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
	lc, err := core.New(core.WithLogger(log))
	if err != nil {
		panic(err)
	}
	lc.MarkReady()
	h, err := health.New(lc, health.WithLogger(log),
		health.WithReadinessChecks(health.NamedCheck("db", func(ctx context.Context) error {
			return errors.New("dial tcp 10.0.0.7:5432: connection refused")
		})))
	if err != nil {
		panic(err)
	}
	rec := httptest.NewRecorder()
	h.ReadinessHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	fmt.Print(rec.Code, "\n", rec.Body)
	// Output:
	// level=INFO msg="lameduck: serving"
	// level=WARN msg="health: check failed" check=db kind=readiness err="dial tcp 10.0.0.7:5432: connection refused"
	// 503
	// [+]shutdown ok
	// [-]db failed: reason withheld
	// readyz check failed
}

// Results are what gRPC health serves: Ready for the overall status,
// CheckReadiness for the details.
func ExampleHealth_CheckReadiness() {
	lc, err := core.New(core.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		panic(err)
	}
	h, err := health.New(lc,
		health.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		health.WithTimeout(200*time.Millisecond),
		health.WithCacheTTL(time.Second),
		health.WithReadinessChecks(health.NamedCheck("cache", func(context.Context) error { return nil })))
	if err != nil {
		panic(err)
	}
	for _, r := range h.CheckReadiness(context.Background()) {
		fmt.Printf("%s: %v\n", r.Name, r.Err)
	}
	lc.MarkReady()
	fmt.Println("ready:", h.Ready(context.Background()))
	// Output:
	// shutdown: health: not ready yet (phase starting)
	// cache: <nil>
	// ready: true
}

// Routers without a Handle(pattern, handler) method, such as gin,
// register the routes one by one.
func ExampleHealth_Routes() {
	lc, err := core.New()
	if err != nil {
		panic(err)
	}
	h, err := health.New(lc,
		health.WithReadinessChecks(health.NamedCheck("db", func(context.Context) error { return nil })),
		health.WithLivenessChecks(health.NamedCheck("worker", func(context.Context) error { return nil })))
	if err != nil {
		panic(err)
	}
	for _, r := range h.Routes() {
		fmt.Println(r.Pattern) // e.g. engine.Any(r.Pattern, gin.WrapH(r.Handler))
	}
	// Output:
	// /healthz
	// /livez
	// /readyz
	// /readyz/shutdown
	// /readyz/db
	// /healthz/ping
	// /healthz/worker
	// /livez/ping
	// /livez/worker
}
