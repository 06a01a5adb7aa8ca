package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"
)

// admission is the outcome of [Lifecycle.admit].
type admission uint8

const (
	untracked admission = iota // a probe path: serve it untracked
	tracked                    // serve the request, then call End
	refused                    // the drain has started; a 503 has been written
)

// admit is the request-path logic of the handler that
// [Lifecycle.ListenHTTP] serves:
//
//   - probe paths ([isProbePath]) are never tracked nor refused, because
//     the kubelet keeps probing during termination;
//   - other requests are tracked with [Lifecycle.Begin];
//   - during the hold the response carries "Connection: close", so that
//     clients on persistent connections, which bypass the load balancer's
//     endpoint list, reconnect elsewhere (for HTTP/2, net/http turns it
//     into a GOAWAY);
//   - a request that still arrives after the drain began is refused with
//     503, "Connection: close" and "Retry-After: 1".
//
// It does not allocate while the service is serving.
func (l *Lifecycle) admit(w http.ResponseWriter, r *http.Request) admission {
	if isProbePath(r.URL.Path) {
		return untracked
	}
	// Begin, with the phase read once for both decisions.
	l.inflight.Add(1)
	if p := Phase(l.phase.Load()); p >= Holding {
		h := w.Header()
		h.Set("Connection", "close")
		if p >= Draining {
			l.End()
			h.Set("Retry-After", "1")
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return refused
		}
	}
	return tracked
}

// handler is what [Lifecycle.ListenHTTP] serves: the probes at their
// paths, untracked, and everything else through next, tracked.
type handler struct {
	l      *Lifecycle
	next   http.Handler
	probes http.Handler // nil: next serves the probe paths too
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch h.l.admit(w, r) {
	case refused:
		return
	case tracked:
		defer h.l.End()
	case untracked:
		if h.probes != nil && r.URL.Path[1] != 'm' { // /metrics is the service's
			h.probes.ServeHTTP(w, r)
			return
		}
	}
	h.next.ServeHTTP(w, r)
}

// isProbePath reports whether path is a health or metrics endpoint that is
// neither tracked nor refused: /healthz, /livez, /readyz (and their
// per-check sub-paths) and /metrics.
func isProbePath(path string) bool {
	// Most paths are rejected by their second byte.
	if len(path) < 6 || path[0] != '/' {
		return false
	}
	switch path[1] {
	case 'h':
		return path == "/healthz" || strings.HasPrefix(path, "/healthz/")
	case 'l':
		return path == "/livez" || strings.HasPrefix(path, "/livez/")
	case 'r':
		return path == "/readyz" || strings.HasPrefix(path, "/readyz/")
	case 'm':
		return path == "/metrics"
	}
	return false
}

// NewConnGrace is how long, once the drain has started, a connection that
// was accepted but has not yet sent a complete request head may still send
// one before it is closed. Counted from the connection's accept, so a
// slow client that trickles its headers does not delay the drain longer.
// A client that opens a connection and sends nothing (Go's Transport and
// browsers open spare connections) holds the drain, and the listeners,
// for up to NewConnGrace.
const NewConnGrace = time.Second

// idleGrace is how long a connection may stay idle during the drain before
// it is closed. An HTTP/1 connection closes by itself right after turning
// idle once the drain began, so this is for HTTP/2: its server reports
// idle when the last frame is queued, not yet written, so closing it then
// would cut the last answer off. After the drain's GOAWAY the HTTP/2
// server closes the connection itself once it is idle and flushed (or
// when the client hangs up, as Go's does at once); the grace, its own
// goAwayTimeout, only bounds connections that missed the GOAWAY
// (golang/go#81153).
const idleGrace = time.Second

// ListenHTTP listens on srv.Addr now, and adds srv to the lifecycle
// (see [Lifecycle.Add]), which serves it from [Lifecycle.Run] on and
// drains it exactly:
//
//   - srv's handler (or [net/http.DefaultServeMux]) serves every request
//     but the probes, tracked with [Lifecycle.Begin] (a panic does not
//     leak the count); during the hold each response carries
//     "Connection: close", and a request that arrives after the drain
//     began is answered 503 with "Retry-After: 1";
//   - probes serves /healthz, /livez and /readyz and their sub-paths
//     (a *health.Health does), neither tracked nor refused, whatever
//     srv's handler routes; /metrics goes to srv's handler, untracked.
//     With a nil probes, srv's handler serves those paths, untracked;
//   - at the drain, keep-alives stop and its listener and idle
//     connections are closed (HTTP/2 connections get a GOAWAY), as
//     [net/http.Server.Shutdown] does, but the drain finishes the moment
//     the last response has been written, driven by connection-state
//     events rather than a poll;
//   - a connection accepted just before the drain that has not sent its
//     request head yet may still send it and get an answer; the listener
//     closes once no such connection is left, [NewConnGrace] after the
//     drain at most;
//   - a connection that stays idle during the drain is closed after a
//     second; one still waiting for its first request head is closed
//     NewConnGrace after its accept;
//   - on Linux, a connection closed once the shutdown has started keeps
//     its socket until the client has acknowledged every byte written
//     (the send queue, SIOCOUTQ, is empty), and the drain finishes only
//     then: in Kubernetes the pod's network goes away once its process
//     has exited, and what was still queued would be lost;
//   - at the drain timeout, [net/http.Server.Close] closes what is left.
//
// With srv.TLSConfig holding a certificate (Certificates or
// GetCertificate), srv serves TLS (and HTTP/2, as net/http does). An empty
// srv.Addr means ":http", or ":https" with TLS. ListenHTTP wraps
// srv.Handler and sets srv.ConnState (chaining one already set); change
// neither afterwards: the drain detects a replaced ConnState and then
// falls back to [net/http.Server.Shutdown]'s poll, with a warning.
//
// A hijacked connection is not waited for, but its request stays tracked
// while the handler runs: a handler that holds it and ignores
// [Lifecycle.Reached]([Draining]) is abandoned at the drain timeout.
//
// ListenHTTP returns the listen error (a port in use, say), an error for a
// nil srv, or [ErrShuttingDown] once the shutdown has started.
func (l *Lifecycle) ListenHTTP(srv *http.Server, probes http.Handler) error {
	if srv == nil {
		return errors.New("lameduck: ListenHTTP of a nil *http.Server")
	}
	tls := srv.TLSConfig != nil && (len(srv.TLSConfig.Certificates) > 0 || srv.TLSConfig.GetCertificate != nil || srv.TLSConfig.GetConfigForClient != nil)
	addr := srv.Addr
	if addr == "" {
		addr = ":http"
		if tls {
			addr = ":https"
		}
	}
	if l.Phase() >= Holding {
		return ErrShuttingDown
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("lameduck: %w", err)
	}
	ln = l.sendq.listener(ln)
	next := srv.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	b := &httpServer{
		srv: srv, ln: ln, tls: tls, log: l.log,
		next: srv.ConnState, conns: make(map[net.Conn]connInfo), wake: make(chan struct{}, 1),
	}
	srv.Handler = &handler{l: l, next: next, probes: probes}
	srv.ConnState = b.connState
	b.own = reflect.ValueOf(srv.ConnState).Pointer()
	if err := l.Add(b); err != nil {
		srv.Handler, srv.ConnState = next, b.next
		ln.Close()
		return err
	}
	srv.Addr = ln.Addr().String()
	l.log.Info("lameduck: listening", "addr", srv.Addr)
	return nil
}

type connInfo struct {
	state http.ConnState
	since time.Time // of the accept for StateNew, else of the last change
}

// httpServer is the [Server] for an *http.Server.
type httpServer struct {
	srv  *http.Server
	ln   net.Listener
	tls  bool
	log  *slog.Logger
	own  uintptr // of srv.ConnState as set by ListenHTTP
	next func(net.Conn, http.ConnState)
	wake chan struct{} // pinged on every connection change while draining

	mu       sync.Mutex
	conns    map[net.Conn]connInfo
	draining bool
}

func (b *httpServer) connState(c net.Conn, s http.ConnState) {
	b.mu.Lock()
	switch s {
	case http.StateNew, http.StateActive, http.StateIdle:
		b.conns[c] = connInfo{state: s, since: time.Now()}
	default: // hijacked, closed
		delete(b.conns, c)
	}
	draining := b.draining
	b.mu.Unlock()
	if draining {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	if b.next != nil {
		b.next(c, s)
	}
}

// Hold does nothing: "Connection: close" during the hold is sent per
// response by the middleware. Turning keep-alives off here with
// SetKeepAlivesEnabled(false) would also close idle connections at once,
// racing clients that are sending a request on them right now: a POST
// lost that way cannot be retried.
func (b *httpServer) Hold() {}

// Serve serves srv on the listener of ListenHTTP. [net/http.ErrServerClosed]
// is the end of a drain or a close, not an error.
func (b *httpServer) Serve() error {
	var err error
	if b.tls {
		err = b.srv.ServeTLS(b.ln, "", "")
	} else {
		err = b.srv.Serve(b.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (b *httpServer) Drain(ctx context.Context) error {
	if reflect.ValueOf(b.srv.ConnState).Pointer() != b.own {
		// Its connections are invisible to the binding: wait the way
		// Shutdown does, by polling, which sees them.
		b.log.Warn("lameduck: srv.ConnState was replaced after ListenHTTP; draining with http.Server.Shutdown's poll")
		err := b.srv.Shutdown(ctx)
		b.ln.Close()
		return err
	}
	b.mu.Lock()
	b.draining = true
	b.mu.Unlock()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	wait := func(d time.Duration) error {
		timer.Reset(d)
		select {
		case <-b.wake:
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}

	// net/http drops, unanswered, a request whose head it reads after
	// Shutdown. So first stop keep-alives (idle connections close now,
	// busy ones after their response) and let connections accepted just
	// before the drain send their first request, which the middleware
	// then refuses with a 503: an answer, not an EOF. This waits only
	// while such a connection exists, and NewConnGrace at the most.
	b.srv.SetKeepAlivesEnabled(false)
	deadline := time.Now().Add(NewConnGrace)
	for {
		now := time.Now()
		left := b.newConnWait(now)
		if left <= 0 || !now.Before(deadline) {
			break
		}
		if err := wait(min(left, deadline.Sub(now))); err != nil {
			return err
		}
	}

	// Shutdown with a context that is already done runs one pass: it
	// closes the listeners, starts the HTTP/2 GOAWAYs, closes idle
	// connections and returns without polling.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	_ = b.srv.Shutdown(done)
	b.ln.Close() // in case Serve was never called

	for {
		busy, next := b.sweep(time.Now())
		if !busy {
			return nil
		}
		if next <= 0 {
			next = time.Hour // only events can end the wait
		}
		if err := wait(next); err != nil {
			return err
		}
	}
}

// newConnWait returns how long until the youngest connection still waiting
// for its first request head is past its grace; zero if there is none.
func (b *httpServer) newConnWait(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var longest time.Duration
	for _, ci := range b.conns {
		if ci.state == http.StateNew {
			longest = max(longest, ci.since.Add(NewConnGrace).Sub(now))
		}
	}
	return longest
}

// sweep closes the new and idle connections past their grace. It reports
// whether a connection is still busy and, if one is within its grace, how
// long until that ends.
func (b *httpServer) sweep(now time.Time) (busy bool, next time.Duration) {
	var closing []net.Conn
	b.mu.Lock()
	for c, ci := range b.conns {
		grace := NewConnGrace
		switch ci.state {
		case http.StateActive:
			busy = true
			continue
		case http.StateIdle:
			grace = idleGrace
		}
		if left := ci.since.Add(grace).Sub(now); left > 0 {
			busy = true
			if next == 0 || left < next {
				next = left
			}
		} else {
			closing = append(closing, c)
		}
	}
	b.mu.Unlock()
	for _, c := range closing {
		c.Close() // its StateClosed event removes it
	}
	return busy, next
}

func (b *httpServer) Close() error {
	err := b.srv.Close()
	b.ln.Close() // in case Serve was never called
	return err
}
