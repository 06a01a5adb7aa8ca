package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"time"
)

// endpoints is the load balancer's current list of backend addresses, the
// part of a Service's EndpointSlice that has reached it. Picks go round
// robin (as kube-proxy's IPVS mode does). It is safe for concurrent use.
type endpoints struct {
	mu    sync.Mutex
	addrs []string
	next  int
	wg    sync.WaitGroup // scheduled removals
	stop  chan struct{}
}

func newEndpoints() *endpoints { return &endpoints{stop: make(chan struct{})} }

// Add adds addr to the list.
func (e *endpoints) Add(addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !slices.Contains(e.addrs, addr) {
		e.addrs = append(e.addrs, addr)
	}
}

// Remove removes addr from the list. Connections already made to it are
// not touched: that is the job of whoever owns them.
func (e *endpoints) Remove(addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.addrs = slices.DeleteFunc(e.addrs, func(a string) bool { return a == addr })
}

// RemoveAfter removes addr once delay has passed, as an endpoint change
// reaches a load balancer some time after the pod was deleted. The
// returned channel receives the time of the removal. A removal still
// pending at Close is dropped.
func (e *endpoints) RemoveAfter(addr string, delay time.Duration) <-chan time.Time {
	done := make(chan time.Time, 1)
	e.wg.Go(func() {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
			e.Remove(addr)
			done <- time.Now()
		case <-e.stop:
		}
	})
	return done
}

// Pick returns the next address, or false when the list is empty.
func (e *endpoints) Pick() (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.addrs) == 0 {
		return "", false
	}
	e.next %= len(e.addrs)
	a := e.addrs[e.next]
	e.next++
	return a, true
}

// List returns a copy of the current list.
func (e *endpoints) List() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.addrs)
}

// Close drops pending removals and waits for their goroutines.
func (e *endpoints) Close() {
	close(e.stop)
	e.wg.Wait()
}

// balancer is an in-process load balancer listening on 127.0.0.1:0.
type balancer interface {
	// URL is the base URL clients use.
	URL() string
	// Endpoints is the list the balancer picks from.
	Endpoints() *endpoints
	// RefusedConn reports, for an L4 balancer, whether the client
	// connection from clientAddr was closed because the backend refused
	// it, and forgets it. It is for the demo's report only: the client
	// would have seen "connection refused" through kube-proxy's NAT.
	RefusedConn(clientAddr string) bool
	// Close stops the balancer and closes every connection it holds.
	Close() error
}

func newBalancer(mode string) (balancer, error) {
	switch mode {
	case modeL4:
		return newL4()
	case modeL7:
		return newL7()
	}
	return nil, errors.New("rollout: unknown load balancer mode " + mode)
}

// l4 is a TCP proxy in the manner of kube-proxy: the backend is chosen
// from the current endpoint list once, when the client connection is
// accepted, and the two connections are then spliced for life
// (conntrack). Removing an endpoint does not touch established
// connections. A FIN from either side is passed on as a half-close and a
// reset as a reset. It knows nothing of HTTP.
type l4 struct {
	ln   net.Listener
	eps  *endpoints
	wg   sync.WaitGroup
	mu   sync.Mutex
	live map[net.Conn]struct{}
	// refused records client connections closed because the backend
	// refused the connection (diagnostics only).
	refused map[string]struct{}
	closed  bool
}

func newL4() (*l4, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &l4{ln: ln, eps: newEndpoints(), live: map[net.Conn]struct{}{}, refused: map[string]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

func (p *l4) URL() string           { return "http://" + p.ln.Addr().String() }
func (p *l4) Endpoints() *endpoints { return p.eps }

func (p *l4) RefusedConn(clientAddr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.refused[clientAddr]
	delete(p.refused, clientAddr)
	return ok
}

func (p *l4) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Go(func() { p.handle(c) })
	}
}

// track adds c to the live connections, unless the proxy is closed.
func (p *l4) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.live[c] = struct{}{}
	return true
}

func (p *l4) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.live, c)
	}
}

func (p *l4) handle(client net.Conn) {
	defer p.untrack(client)
	addr, ok := p.eps.Pick()
	if !ok {
		reset(client) // no endpoints: kube-proxy rejects with a reset
		return
	}
	backend, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		p.mu.Lock()
		p.refused[client.RemoteAddr().String()] = struct{}{}
		p.mu.Unlock()
		reset(client)
		return
	}
	if !p.track(backend) {
		backend.Close()
		client.Close()
		return
	}
	defer p.untrack(backend)
	var wg sync.WaitGroup
	wg.Go(func() { relay(backend, client) })
	relay(client, backend)
	wg.Wait()
	client.Close()
	backend.Close()
}

// relay copies from src to dst until src ends. A clean end (FIN) is passed
// on as a half-close; an error (a reset) resets dst, as a NAT would let
// the peer's reset through.
func relay(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err != nil {
		reset(dst)
		src.Close()
		return
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// reset closes c with a TCP reset rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

func (p *l4) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.live {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	p.eps.Close()
	return err
}

// lbHeader marks the responses that the L7 balancer wrote itself (its
// 502 and 503), so that the report can tell them from the backends'.
const lbHeader = "X-Rollout-Lb"

type upstreamKey struct{}

// l7 is an HTTP reverse proxy in the manner of an ingress controller: it
// picks a backend for every request from the current endpoint list and
// keeps its own pool of keep-alive connections to the backends. It adds
// no retries: a request that fails upstream is a 502 to the client (only
// net/http's own retry of an idempotent request on a reused connection
// that died before a byte came back remains, as in any Go proxy).
type l7 struct {
	ln  net.Listener
	eps *endpoints
	srv *http.Server
	tr  *http.Transport
	wg  sync.WaitGroup
}

func newL7() (*l7, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &l7{ln: ln, eps: newEndpoints()}
	p.tr = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64, // an ingress keeps upstream connections alive
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: r.In.Context().Value(upstreamKey{}).(string)})
		},
		Transport: p.tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.Header().Set(lbHeader, "1")
			http.Error(w, "bad gateway: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			addr, ok := p.eps.Pick()
			if !ok {
				w.Header().Set(lbHeader, "1")
				http.Error(w, "no endpoints", http.StatusServiceUnavailable)
				return
			}
			rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), upstreamKey{}, addr)))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	p.wg.Go(func() { _ = p.srv.Serve(ln) })
	return p, nil
}

func (p *l7) URL() string             { return "http://" + p.ln.Addr().String() }
func (p *l7) Endpoints() *endpoints   { return p.eps }
func (p *l7) RefusedConn(string) bool { return false }

func (p *l7) Close() error {
	err := p.srv.Close()
	p.wg.Wait()
	p.tr.CloseIdleConnections()
	p.eps.Close()
	return err
}
