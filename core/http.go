package core

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Admission is the outcome of [Lifecycle.AdmitHTTP].
type Admission uint8

const (
	// Untracked: a probe path; serve it without tracking.
	Untracked Admission = iota
	// Tracked: serve the request, then call [Lifecycle.End].
	Tracked
	// Refused: the drain has started; a 503 has been written. Do not
	// serve the request and do not call End.
	Refused
)

// AdmitHTTP is the request-path logic shared by every HTTP middleware:
//
//   - probe paths ([IsProbePath]) are never tracked nor refused, because
//     the kubelet keeps probing during termination;
//   - other requests are tracked with [Lifecycle.Begin];
//   - during the hold the response carries "Connection: close", so that
//     clients on persistent connections, which bypass the load balancer's
//     endpoint list, reconnect elsewhere (for HTTP/2, net/http turns it
//     into a GOAWAY);
//   - a request that still arrives after the drain began is refused with
//     503, "Connection: close" and "Retry-After: 1".
//
// It does not allocate while the service is serving. Middleware for
// frameworks other than net/http call it; see [Lifecycle.Middleware].
func (l *Lifecycle) AdmitHTTP(w http.ResponseWriter, r *http.Request) Admission {
	if IsProbePath(r.URL.Path) {
		return Untracked
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
			return Refused
		}
	}
	return Tracked
}

// Middleware returns next wrapped with the request tracking of
// [Lifecycle.AdmitHTTP]. A handler that panics still ends its tracking.
// Its signature is that of chi and net/http middleware.
func (l *Lifecycle) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch l.AdmitHTTP(w, r) {
		case Refused:
			return
		case Tracked:
			defer l.End()
		}
		next.ServeHTTP(w, r)
	})
}

// IsProbePath reports whether path is a health or metrics endpoint that is
// neither tracked nor refused: /healthz, /livez, /readyz (and their
// per-check sub-paths) and /metrics.
func IsProbePath(path string) bool {
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

// BindHTTP registers srv with the lifecycle, so that the drain stops it
// exactly:
//
//   - at the drain, keep-alives stop and its listeners are closed, and
//     its idle connections too (HTTP/2 connections get a GOAWAY), as
//     [http.Server.Shutdown] does, but the drain then finishes the moment
//     the last response has been written, driven by srv.ConnState events
//     rather than a poll;
//   - a connection accepted just before the drain that has not sent its
//     request head yet may still send it, and gets an answer (503 from
//     the middleware) rather than being dropped; the listeners close once
//     no such connection is left, [NewConnGrace] after the drain at most;
//   - a connection that stays idle during the drain is closed after a
//     second (HTTP/1 ones close at once by themselves; HTTP/2 ones close
//     after the GOAWAY, once their last frames are written);
//   - a connection still waiting for its first request head is closed
//     [NewConnGrace] after its accept;
//   - at the drain timeout, [http.Server.Close] closes what is left.
//
// BindHTTP chains any ConnState hook already set on srv; set srv.ConnState
// before calling it, not after. Use [Lifecycle.Middleware] (or an adapter)
// as well: it tracks requests and sends "Connection: close" during the
// hold. A hijacked connection is not waited for, but its request stays
// tracked while the handler runs: a handler that holds it and ignores
// [Lifecycle.Draining] is abandoned at the drain timeout; one that hands
// it to a goroutine and returns is not waited for.
//
// BindHTTP returns [ErrShuttingDown] once the drain has started.
func (l *Lifecycle) BindHTTP(srv *http.Server) error {
	b := &httpServer{srv: srv, next: srv.ConnState, conns: make(map[net.Conn]connInfo), wake: make(chan struct{}, 1)}
	srv.ConnState = b.connState
	if err := l.Register(b); err != nil {
		srv.ConnState = b.next
		return err
	}
	return nil
}

type connInfo struct {
	state http.ConnState
	since time.Time // of the accept for StateNew, else of the last change
}

// httpServer is the [Server] for an *http.Server.
type httpServer struct {
	srv  *http.Server
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

func (b *httpServer) Drain(ctx context.Context) error {
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

func (b *httpServer) Close() error { return b.srv.Close() }
