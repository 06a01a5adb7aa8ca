package chiadapter_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/go-chi/chi/v5"

	"github.com/lameduck/lameduck/chiadapter"
	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// A chi service: Listen serves the router and the probes through the
// lifecycle, which tracks every request; Run serves until SIGTERM, then
// holds and drains. Routes under a prefix need nothing special.
func Example() {
	lc, err := core.New()
	if err != nil {
		slog.Error("lifecycle", "err", err)
		os.Exit(2)
	}
	h, err := health.New(lc, health.WithReadinessChecks(health.NamedCheck("db", func(ctx context.Context) error {
		return nil // e.g. db.PingContext(ctx)
	})))
	if err != nil {
		slog.Error("health", "err", err)
		os.Exit(2)
	}
	r := chi.NewRouter()
	r.Get("/hello", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello") })
	r.Route("/api", func(r chi.Router) {
		r.Get("/items", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "[]") })
	})
	addr, err := chiadapter.Listen(lc, ":8080", r, h) // a port in use fails here, before anything is ready
	if err != nil {
		slog.Error("listen", "err", err)
		os.Exit(1)
	}
	slog.Info("listening", "addr", addr)
	if err := lc.Run(context.Background()); err != nil { // forced, or a server failed
		slog.Error("shutdown", "err", err)
		os.Exit(1)
	}
}
