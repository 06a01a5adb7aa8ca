package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// handler is what [Lifecycle.ListenHTTP] serves: the probes at their
// paths, untracked, and everything else through next, tracked.
type handler struct {
	l      *Lifecycle
	next   http.Handler
	probes http.Handler // nil: next serves the probe paths too
}

// ServeHTTP serves every request, in every phase: a request that reached
// an accepted connection is work the client has already sent, and
// refusing it at this level (with a 503, say) would only make the client
// guess whether to retry. Refusing new work is left to the protocol,
// whose refusals clients retry safely: the closed listener, and for
// HTTP/1 "Connection: close" on every response from the hold on, for
// HTTP/2 the graceful GOAWAY (see [httpServer.Hold]).
//
//   - probe paths ([isProbePath]) are never tracked, because the kubelet
//     keeps probing during termination;
//   - other requests are tracked with the in-flight count the drain
//     waits for, and during the hold those on connections accepted after
//     it began count as new traffic for the adaptive hold;
//   - an HTTP/2 response never carries "Connection: close": net/http
//     turns it into an immediate GOAWAY that refuses the streams the
//     client sent in the same round trip, which it cannot retry when
//     their body is not replayable (see [httpServer.Hold] instead).
//
// It does not allocate.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l := h.l
	probe := isProbePath(r.URL.Path)
	if !probe {
		l.inflight.Add(1)
		defer l.End()
	}
	// Deferred after End, so it runs first: in between, a request cut
	// off by the drain timeout is counted twice rather than not at all.
	ci := connOf(r)
	if ci != nil {
		ci.running.Add(1)
		defer ci.running.Add(-1)
		if ci.h2 != nil && ci.h2.tls != nil && r.TLS == nil {
			r.TLS = ci.h2.state() // lameduck terminates TLS itself
		}
	}
	if p := Phase(l.phase.Load()); p >= Holding && !probe {
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		if p == Holding && ci != nil {
			l.Arrived(ci.accepted)
		}
	}
	if probe && h.probes != nil && r.URL.Path[1] != 'm' { // /metrics is the service's
		h.probes.ServeHTTP(w, r)
		return
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

// idleGrace is how long an HTTP/2 connection may stay idle during the
// drain before it is closed (an idle HTTP/1 one is closed at once): its
// server reports idle when the last frame is queued, not yet written, so
// closing it then would cut the last answer off. A client told to go away
// closes the connection itself, Go's as soon as its last stream ends; the
// grace bounds the others.
const idleGrace = time.Second

// ListenHTTP listens on srv.Addr now, and adds srv to the lifecycle
// (see [Lifecycle.Add]), which serves it from [Lifecycle.Run] on and
// drains it exactly:
//
//   - srv's handler (or [net/http.DefaultServeMux]) serves every request
//     but the probes, in every phase, tracked for the drain (a panic
//     does not leak the count); from the hold on each HTTP/1 response
//     carries "Connection: close", so that clients on keep-alive
//     connections, which bypass the load balancer's endpoint list,
//     reconnect elsewhere; each HTTP/2 connection accepted before the
//     hold gets, once, a GOAWAY that refuses no stream (RFC 9113 §6.8's
//     first step: the highest stream id, and a PING), and the client
//     sends its next requests over a new connection, which is left alone
//     until the drain;
//   - probes serves /healthz, /livez and /readyz and their sub-paths
//     (a *health.Health does), neither tracked nor refused, whatever
//     srv's handler routes; /metrics goes to srv's handler, untracked.
//     With a nil probes, srv's handler serves those paths, untracked;
//   - at the drain the listener accepts what the kernel has already
//     queued and closes; a connection accepted before that may still
//     send its request, which is served, within [NewConnGrace] of its
//     accept;
//   - then every HTTP/2 connection that has not had it gets the GOAWAY
//     of the hold, and the drain waits (a second at most) for each
//     client to acknowledge it;
//   - from then on each connection is closed once it is idle, an HTTP/1
//     one at once, an HTTP/2 one after a second (a client told to go
//     away closes it itself, Go's as soon as its last stream ends), and
//     one still waiting for its first request head NewConnGrace after
//     its accept; the drain finishes the moment the last response has
//     been written, driven by connection-state events rather than
//     [net/http.Server.Shutdown]'s poll. Shutdown is called last, when
//     no connection is left, so that neither its GOAWAY, which names
//     the last stream net/http has seen, nor keep-alives turned off
//     refuse a stream still on its way; functions registered with
//     [net/http.Server.RegisterOnShutdown] run then;
//   - on Linux, a connection closed once the shutdown has started keeps
//     its socket until the client has acknowledged every byte written
//     (the send queue, SIOCOUTQ, is empty), and the drain finishes only
//     then: in Kubernetes the pod's network goes away once its process
//     has exited, and what was still queued would be lost;
//   - at the drain timeout, [net/http.Server.Close] closes what is left.
//
// With srv.TLSConfig holding a certificate (Certificates, GetCertificate
// or GetConfigForClient), srv serves TLS, and HTTP/2 unless srv.Protocols
// leaves it out, offered through ALPN as [net/http.Server.ServeTLS] does.
// lameduck terminates the TLS itself, so that it can write the GOAWAY
// frames inside the encryption, and net/http serves the decrypted
// connection: srv.Protocols is set to HTTP/1 and unencrypted HTTP/2 (what
// net/http sees), [net/http.Request.TLS] is set as usual, and a hijacked
// connection or the one srv.ConnContext is given is lameduck's, whose
// NetConn method returns the *tls.Conn. Cleartext HTTP/2 (h2c) is served
// when srv.Protocols includes unencrypted HTTP/2.
//
// An empty srv.Addr means ":http", or ":https" with TLS. ListenHTTP wraps
// srv.Handler and sets srv.ConnState and srv.ConnContext (chaining those
// already set); change neither afterwards: the drain detects a replaced
// ConnState and then falls back to [net/http.Server.Shutdown]'s poll,
// with a warning.
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
	useTLS := srv.TLSConfig != nil && (len(srv.TLSConfig.Certificates) > 0 || srv.TLSConfig.GetCertificate != nil || srv.TLSConfig.GetConfigForClient != nil)
	addr := srv.Addr
	if addr == "" {
		addr = ":http"
		if useTLS {
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
	acc := newAcceptor(ln, l.sendq.listener(ln))
	next := srv.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	b := &httpServer{
		srv: srv, ln: acc, serve: acc, log: l.log,
		next: srv.ConnState, conns: make(map[net.Conn]*connInfo), wake: make(chan struct{}, 1),
	}
	protocols := srv.Protocols
	if useTLS {
		// Served as cleartext to net/http, which then lets lameduck
		// write the frames of the graceful GOAWAY (see [h2Conn]).
		p := serverProtocols(srv)
		cfg := srv.TLSConfig.Clone()
		cfg.NextProtos = nextProtos(cfg.NextProtos, p)
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(p.HTTP1())
		srv.Protocols.SetUnencryptedHTTP2(p.HTTP2())
		b.serve = &h2Listener{Listener: acc, tls: cfg}
	} else if srv.Protocols != nil && srv.Protocols.UnencryptedHTTP2() {
		b.serve = &h2Listener{Listener: acc}
	}
	srv.Handler = &handler{l: l, next: next, probes: probes}
	b.nextCtx = srv.ConnContext
	srv.ConnContext = b.connContext
	srv.ConnState = b.connState
	b.own = reflect.ValueOf(srv.ConnState).Pointer()
	if err := l.Add(b); err != nil {
		srv.Handler, srv.ConnState, srv.ConnContext, srv.Protocols = next, b.next, b.nextCtx, protocols
		ln.Close()
		return err
	}
	srv.Addr = ln.Addr().String()
	l.log.Info("lameduck: listening", "addr", srv.Addr)
	return nil
}

type connInfo struct {
	state    http.ConnState
	since    time.Time // of the accept for StateNew, else of the last change
	accepted time.Time
	h2       *h2Conn // nil: a connection that cannot speak HTTP/2
	// running counts the handlers running on the connection. An active
	// connection with none has a request head read but not yet handed to
	// the handler (net/http reports StateActive before it checks for
	// Shutdown, and drops the request if Shutdown came first), or a
	// response whose handler has returned but whose last bytes are still
	// to be written.
	running atomic.Int32
}

// connKey is the context key of a connection's *connInfo.
type connKey struct{}

// connOf returns the *connInfo of r's connection, nil if it has none.
func connOf(r *http.Request) *connInfo {
	ci, _ := r.Context().Value(connKey{}).(*connInfo)
	return ci
}

// httpServer is the [Server] for an *http.Server.
type httpServer struct {
	srv     *http.Server
	ln      *acceptor
	serve   net.Listener // ln, or an *h2Listener over it
	log     *slog.Logger
	own     uintptr // of srv.ConnState as set by ListenHTTP
	next    func(net.Conn, http.ConnState)
	nextCtx func(context.Context, net.Conn) context.Context
	wake    chan struct{} // pinged on every connection change while draining

	mu       sync.Mutex
	conns    map[net.Conn]*connInfo
	draining bool
}

// connContext registers c as it is accepted, before its StateNew event,
// and gives its requests the connection's *connInfo.
func (b *httpServer) connContext(ctx context.Context, c net.Conn) context.Context {
	if b.nextCtx != nil {
		ctx = b.nextCtx(ctx, c)
	}
	now := time.Now()
	ci := &connInfo{state: http.StateNew, since: now, accepted: now}
	ci.h2, _ = c.(*h2Conn)
	b.mu.Lock()
	b.conns[c] = ci
	b.mu.Unlock()
	return context.WithValue(ctx, connKey{}, ci)
}

func (b *httpServer) connState(c net.Conn, s http.ConnState) {
	b.mu.Lock()
	switch s {
	case http.StateNew, http.StateActive, http.StateIdle:
		ci := b.conns[c]
		if ci == nil { // ConnContext was replaced
			ci = &connInfo{}
			b.conns[c] = ci
		}
		if s != http.StateNew || ci.since.IsZero() {
			ci.since = time.Now()
		}
		ci.state = s
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

// Hold asks each HTTP/2 client to open no more streams on its
// connection, with a GOAWAY that refuses none (see [h2Conn]): its next
// request opens a new connection, through the load balancer. That is the
// HTTP/2 twin of the "Connection: close" the handler sets on HTTP/1
// responses. Connections accepted during the hold are left alone until
// the drain. Turning keep-alives off here with SetKeepAlivesEnabled(false)
// would close idle HTTP/1 connections at once, racing clients that are
// sending a request on them right now (a POST lost that way cannot be
// retried), and give HTTP/2 connections net/http's one-step GOAWAY.
func (b *httpServer) Hold() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ci := range b.conns {
		if ci.h2 != nil {
			ci.h2.goAway()
		}
	}
}

// goAwayWait bounds how long the drain waits for HTTP/2 clients to
// acknowledge the first step of the graceful GOAWAY: a round trip, for
// clients that answer PINGs.
const goAwayWait = time.Second

// goAway sends the first step of the graceful GOAWAY to every HTTP/2
// connection that has not had it, and returns once every client has
// acknowledged it (or closed its connection), goAwayWait at most, or
// ctx's error: from then on the clients open no new streams.
func (b *httpServer) goAway(ctx context.Context) error {
	var conns []*h2Conn
	b.mu.Lock()
	for _, ci := range b.conns {
		if ci.h2 != nil && ci.h2.h2.Load() {
			ci.h2.goAway()
			conns = append(conns, ci.h2)
		}
	}
	b.mu.Unlock()
	if len(conns) == 0 {
		return nil
	}
	timer := time.NewTimer(goAwayWait)
	defer timer.Stop()
wait:
	for _, c := range conns {
		select {
		case <-c.acked:
		case <-c.closed:
		case <-timer.C:
			break wait
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// An idle connection is closed idleGrace after this at the earliest,
	// so that a stream the client sends just after its acknowledgement
	// (see [h2Conn]) finds it open.
	now := time.Now()
	b.mu.Lock()
	for _, ci := range b.conns {
		if ci.h2 != nil && ci.state == http.StateIdle {
			ci.since = now
		}
	}
	b.mu.Unlock()
	return nil
}

// Serve serves srv on the listener of ListenHTTP. [net/http.ErrServerClosed]
// is the end of a drain or a close, not an error.
func (b *httpServer) Serve() error {
	err := b.srv.Serve(b.serve)
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
		if err := b.goAway(ctx); err != nil {
			return err
		}
		err := b.srv.Shutdown(ctx)
		b.ln.Close() // in case Serve was never called
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
	// Shutdown, and its HTTP/2 GOAWAY refuses the streams on their way;
	// so do keep-alives turned off, to an HTTP/2 connection that turns
	// idle. lameduck calls neither while a connection is open. First it
	// stops accepting: the listener accepts what the kernel has already
	// queued, then closes, so that a client that has connected is not
	// reset. Every connection accepted so far may send its first request
	// (or HTTP/2 preface); one that sends nothing within NewConnGrace of
	// its accept is closed. Then the HTTP/2 clients get the graceful
	// GOAWAY, and from then on each connection is closed once it is idle:
	// an HTTP/1 one at once (its responses have carried "Connection:
	// close" since the hold, so one that is idle now has been since
	// before it), an HTTP/2 one after idleGrace (Go's client, told to go
	// away, closes it itself as soon as its last stream ends). A stream
	// that Go's client had numbered before it read the GOAWAY may still
	// come after the acknowledgements (it numbers a stream and writes it
	// in two steps): it is served like the others.
	if err := b.ln.stop(ctx); err != nil {
		return err
	}
	for {
		left := b.closeSilent(time.Now())
		if left <= 0 {
			break
		}
		if err := wait(left); err != nil {
			return err
		}
	}
	if err := b.goAway(ctx); err != nil {
		return err
	}
	defer func() {
		// Nothing is left open: Shutdown only ends Serve.
		done, cancel := context.WithCancel(context.Background())
		cancel()
		_ = b.srv.Shutdown(done)
	}()
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

// closeSilent closes the connections still waiting for their first
// request head NewConnGrace after their accept, and returns how long
// until the youngest of the others is past its grace; zero if there is
// none left.
func (b *httpServer) closeSilent(now time.Time) time.Duration {
	var closing []net.Conn
	var longest time.Duration
	b.mu.Lock()
	for c, ci := range b.conns {
		switch {
		case ci.state == http.StateNew:
			if left := ci.since.Add(NewConnGrace).Sub(now); left > 0 {
				longest = max(longest, left)
			} else {
				closing = append(closing, c)
			}
		case ci.state == http.StateActive && ci.running.Load() == 0:
			// A head read, its handler not called yet, or a response
			// being finished: wait for it, NewConnGrace after its last
			// change at most (a bad request that net/http answers
			// itself, a slow reader).
			if left := ci.since.Add(NewConnGrace).Sub(now); left > 0 {
				longest = max(longest, min(left, time.Millisecond))
			}
		}
	}
	b.mu.Unlock()
	for _, c := range closing {
		c.Close() // its StateClosed event removes it
	}
	return longest
}

// sweep closes the new and idle connections past their grace: NewConnGrace
// for a new one, idleGrace for an idle HTTP/2 one, none for an idle HTTP/1
// one. It reports whether a connection is still busy and, if one is
// within its grace, how long until that ends.
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
			grace = 0
			if ci.h2 != nil && ci.h2.h2.Load() {
				grace = idleGrace
			}
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

// unfinished counts the connections still busy with a request that no
// handler is running for: a response whose handler has returned but whose
// last bytes are not written yet (a final flush, an HTTP/2 stream waiting
// for its flow-control window, net/http reading what is left of a slow
// upload before it answers), or a request head read but not yet handed to
// the handler. Closing them cuts those requests off, as much as closing
// one whose handler still runs.
func (b *httpServer) unfinished() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for _, ci := range b.conns {
		if ci.state == http.StateActive && ci.running.Load() == 0 {
			n++
		}
	}
	return n
}

func (b *httpServer) Close() error {
	err := b.srv.Close()
	b.ln.Close() // in case Serve was never called
	return err
}

// acceptStopWait bounds how long [acceptor.stop] waits for the Serve loop
// to notice; Serve may never have been called.
const acceptStopWait = 100 * time.Millisecond

// acceptor is the listener an HTTP server accepts from. Its stop makes the
// Serve loop accept the connections the kernel has already queued, and
// only then close the listening socket: closing it at once would reset
// clients whose connection the kernel had already accepted.
type acceptor struct {
	net.Listener                  // what Accept reads: tcp, possibly wrapped
	tcp          *net.TCPListener // nil if ln is not TCP

	stopping  atomic.Bool
	closeOnce sync.Once
	closed    chan struct{}
}

func newAcceptor(tcp, ln net.Listener) *acceptor {
	a := &acceptor{Listener: ln, closed: make(chan struct{})}
	a.tcp, _ = tcp.(*net.TCPListener)
	return a
}

// Accept returns the next connection. Once stopping, it takes what is
// queued without waiting more than a millisecond for it, then closes.
func (a *acceptor) Accept() (net.Conn, error) {
	for {
		armed := a.stopping.Load() && a.tcp != nil
		if armed {
			_ = a.tcp.SetDeadline(time.Now().Add(time.Millisecond))
		}
		c, err := a.Listener.Accept()
		if err == nil || !a.stopping.Load() {
			return c, err
		}
		if !armed && errors.Is(err, os.ErrDeadlineExceeded) {
			continue // woken by stop: now take what is queued
		}
		a.Close()
		return nil, net.ErrClosed
	}
}

// Close closes the listening socket once.
func (a *acceptor) Close() error {
	var err error
	a.closeOnce.Do(func() {
		err = a.Listener.Close()
		close(a.closed)
	})
	return err
}

// stop stops accepting and returns once the listening socket is closed,
// or ctx's error.
func (a *acceptor) stop(ctx context.Context) error {
	if a.tcp == nil {
		return a.Close()
	}
	freezeAccepts(a.tcp)
	a.stopping.Store(true)
	_ = a.tcp.SetDeadline(time.Now()) // wake the Serve loop
	t := time.NewTimer(acceptStopWait)
	defer t.Stop()
	select {
	case <-a.closed:
	case <-t.C:
		a.Close() // not serving
	case <-ctx.Done():
		a.Close()
		return ctx.Err()
	}
	return nil
}
