package grpcroll_test

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// l4Proxy is the model of a ClusterIP Service: kube-proxy's DNAT with
// conntrack. Each client connection is pinned, when it is accepted, to a
// backend chosen round-robin among the current endpoints, and stays there
// until one side closes it, whatever happens to the endpoint list later.
// Every chunk forwarded, in either direction, is delayed by latency: the
// network between pods. Without it, a GOAWAY reaches the client within
// microseconds and the races of a shutdown are too narrow to show.
type l4Proxy struct {
	addr    string
	latency time.Duration
	ln      net.Listener

	mu        sync.Mutex
	endpoints []string
	next      int
	conns     map[net.Conn]struct{}
	closed    bool
	accepted  map[string]int // connections pinned to each endpoint
	refused   int            // connections whose backend refused the dial

	wg sync.WaitGroup
}

// startProxy listens on a loopback port and forwards to the endpoints
// set with setEndpoints. It is closed when the test ends.
func startProxy(t testing.TB, latency time.Duration) *l4Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &l4Proxy{addr: ln.Addr().String(), latency: latency, ln: ln,
		conns: map[net.Conn]struct{}{}, accepted: map[string]int{}}
	p.wg.Go(p.serve)
	t.Cleanup(p.close)
	return p
}

// add adds an endpoint.
func (p *l4Proxy) add(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endpoints = append(p.endpoints, addr)
}

// remove removes an endpoint: no new connection goes to it; those pinned
// to it stay.
func (p *l4Proxy) remove(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endpoints = slices.DeleteFunc(p.endpoints, func(e string) bool { return e == addr })
}

// stats returns the connections pinned to each endpoint so far and the
// ones whose backend refused.
func (p *l4Proxy) stats() (map[string]int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]int, len(p.accepted))
	for k, v := range p.accepted {
		m[k] = v
	}
	return m, p.refused
}

func (p *l4Proxy) pick() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.endpoints) == 0 {
		return "", false
	}
	e := p.endpoints[p.next%len(p.endpoints)]
	p.next++
	return e, true
}

// track adds c to the open connections; it reports false once the proxy
// is closed.
func (p *l4Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *l4Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *l4Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Go(func() {
			defer p.untrack(c)
			defer c.Close()
			p.forward(c)
		})
	}
}

// forward pins c to an endpoint and copies both ways until both are done.
// A backend that refuses the connection gets the client's connection
// closed, as a DNAT to a closed port resets it.
func (p *l4Proxy) forward(c net.Conn) {
	ep, ok := p.pick()
	if !ok {
		return
	}
	b, err := net.DialTimeout("tcp", ep, 2*time.Second)
	p.mu.Lock()
	if err != nil {
		p.refused++
	} else {
		p.accepted[ep]++
	}
	p.mu.Unlock()
	if err != nil {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // an RST, like a refused DNAT
		}
		return
	}
	if !p.track(b) {
		b.Close()
		return
	}
	defer p.untrack(b)
	defer b.Close()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(b, c) })
	wg.Go(func() { p.pipe(c, b) })
	wg.Wait()
}

// chunk is data read at a time, to be written latency later.
type chunk struct {
	data []byte
	at   time.Time
}

// pipe copies src to dst, each chunk latency after it was read, keeping
// the order and not limiting the throughput: a reader and a writer
// joined by a queue. At src's EOF it half-closes dst once the queue is
// written; on any error it closes both, which ends the other direction.
func (p *l4Proxy) pipe(dst, src net.Conn) {
	q := make(chan chunk, 4096)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{buf[:n], time.Now()}
			}
			if err != nil {
				return
			}
		}
	})
	failed := false
	for ch := range q {
		if failed {
			continue // drain the queue so that the reader can end
		}
		if d := time.Until(ch.at.Add(p.latency)); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(ch.data); err != nil {
			failed = true
			dst.Close()
			src.Close()
		}
	}
	wg.Wait()
	if !failed {
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		} else {
			dst.Close()
		}
	}
}

// close stops accepting, closes every connection and waits for the
// forwarding goroutines.
func (p *l4Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
