// Package chiadapter serves a chi router through a [core.Lifecycle], with
// the probes of a [health.Health]:
//
//	package main
//
//	import (
//		"context"
//		"net/http"
//		"os"
//
//		"github.com/go-chi/chi/v5"
//
//		"github.com/lameduck/lameduck/chiadapter"
//		"github.com/lameduck/lameduck/core"
//		"github.com/lameduck/lameduck/health"
//	)
//
//	func main() {
//		lc, err := core.New() // SIGTERM and SIGINT start the shutdown
//		if err != nil {
//			panic(err)
//		}
//		h, err := health.New(lc)
//		if err != nil {
//			panic(err)
//		}
//		r := chi.NewRouter()
//		r.Get("/hello", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello\n")) })
//		if _, err := chiadapter.Listen(lc, ":8080", r, h); err != nil { // a port in use fails here
//			panic(err)
//		}
//		if err := lc.Run(context.Background()); err != nil { // ready, then hold and drain on SIGTERM
//			os.Exit(1)
//		}
//	}
//
// chi needs no middleware of its own: the lifecycle's HTTP server (see
// [core.Lifecycle.ListenHTTP]) serves and tracks every request the router
// gets, in every phase (a panic does not leak the count): a request that
// reaches an accepted connection is served, and refusing new work is left
// to the protocols (the closed listener at the drain, "Connection: close"
// on HTTP/1 responses from the hold on, the graceful GOAWAY of HTTP/2). It serves /healthz, /livez and /readyz (and their per-check
// paths) from h at the root, before the router sees the request, so the
// probes are never tracked whatever the router's layout: a catch-all
// route does not swallow them, and routes under r.Route("/api", ...) or
// r.Mount are tracked like any other.
//
// The server speaks HTTP/1.1 and h2c (HTTP/2 with prior knowledge) on the
// same port; see [Listen].
package chiadapter

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// Listen listens on addr now and adds to lc an *http.Server that serves r
// and the probes of h (see [core.Lifecycle.ListenHTTP]); [core.Lifecycle.Run]
// serves it. It returns the bound address (with the chosen port when addr
// has port 0). The server's ReadHeaderTimeout is 10 seconds.
//
// The server speaks HTTP/1.1 and unencrypted HTTP/2 with prior knowledge
// (h2c) on the same port, through [net/http.Server.Protocols]: an HTTP/2
// client needs a transport that allows unencrypted HTTP/2 (for Go, an
// [net/http.Transport] whose Protocols has SetUnencryptedHTTP2), and
// HTTP/1.1 clients are served as ever. The "Upgrade: h2c" dance of
// HTTP/1.1 is not supported. From the hold on, HTTP/1 responses carry
// "Connection: close" and HTTP/2 responses do not: HTTP/2 connections get
// a GOAWAY that refuses no stream instead, as
// [core.Lifecycle.ListenHTTP] says.
//
// With a nil h, r serves the probe paths itself, still untracked. Listen
// returns an error for a nil lc or r, the listen error (a port in use,
// say), or [core.ErrShuttingDown] once the shutdown has started.
func Listen(lc *core.Lifecycle, addr string, r chi.Router, h *health.Health) (net.Addr, error) {
	if lc == nil {
		return nil, errors.New("chiadapter: Listen with a nil *core.Lifecycle")
	}
	if m, ok := r.(*chi.Mux); r == nil || ok && m == nil {
		return nil, errors.New("chiadapter: Listen with a nil chi.Router")
	}
	var probes http.Handler // a nil h must stay a nil interface
	if h != nil {
		probes = h
	}
	srv := &http.Server{Addr: addr, Handler: r, ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge, on the same port
	if err := lc.ListenHTTP(srv, probes); err != nil {
		return nil, err
	}
	return net.ResolveTCPAddr("tcp", srv.Addr) // ListenHTTP set it to the bound address
}
