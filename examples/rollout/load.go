package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Kinds of outcome of a request. The order is the order of the table.
const (
	kindOK      = iota
	kindRefused // the backend refused the connection (no one listening)
	kindReset   // the connection broke mid-request: reset, EOF, broken pipe
	kindLB      // the L7 balancer answered 502 or 503 itself
	kindBackend // the backend answered 5xx (or anything but 200 "ok")
	kindTimeout // no answer within -request-timeout
	numKinds
)

var kindNames = [numKinds]string{"ok", "refused", "reset/EOF", "LB 502/503", "backend 5xx", "timeout"}

// outcome is one finished request, in time since the run started.
type outcome struct {
	start, end time.Duration
	kind       uint8
	post       bool
}

// loadConfig is what the clients do; identical for every run.
type loadConfig struct {
	URL        string
	Workers    int
	Requests   int64 // at most, in all
	MSMin      int
	MSMax      int
	PostRatio  float64
	NewConns   int // the first NewConns workers open a new connection per request
	Seed       uint64
	ReqTimeout time.Duration
	// RefusedConn tells, for a connection that failed, whether the L4
	// balancer closed it because the backend refused it.
	RefusedConn func(clientAddr string) bool
}

// load is a running load: workers sending GET and POST /work requests,
// each over its own keep-alive connection or a new connection per
// request, until stop.
type load struct {
	cfg   loadConfig
	t0    time.Time
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	sent  atomic.Int64
	mu    sync.Mutex
	outs  [][]outcome // per worker
	first map[int]string
}

// startLoad starts the workers; t0 is the origin of the outcomes' times.
func startLoad(cfg loadConfig, t0 time.Time) *load {
	l := &load{cfg: cfg, t0: t0, stop: make(chan struct{}), outs: make([][]outcome, cfg.Workers), first: map[int]string{}}
	for w := range cfg.Workers {
		l.wg.Go(func() { l.worker(w) })
	}
	return l
}

// Stop stops the workers, lets the requests in flight finish and returns
// every outcome.
func (l *load) Stop() []outcome {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	var all []outcome
	for _, o := range l.outs {
		all = append(all, o...)
	}
	return all
}

// Examples returns one error text for each kind of failure seen.
func (l *load) Examples() map[int]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[int]string, len(l.first))
	for k, v := range l.first {
		m[k] = v
	}
	return m
}

func (l *load) worker(id int) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		DisableKeepAlives:   id < l.cfg.NewConns,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: l.cfg.ReqTimeout}
	rng := rand.New(rand.NewPCG(l.cfg.Seed, uint64(id)+1))
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		if l.sent.Add(1) > l.cfg.Requests {
			return
		}
		ms := l.cfg.MSMin + rng.IntN(l.cfg.MSMax-l.cfg.MSMin+1)
		post := rng.Float64() < l.cfg.PostRatio
		l.outs[id] = append(l.outs[id], l.one(c, id, post, ms))
	}
}

// one sends one request. It does not use the load's stop: a request in
// flight when the load stops is finished, not cancelled.
func (l *load) one(c *http.Client, id int, post bool, ms int) outcome {
	o := outcome{start: time.Since(l.t0), post: post}
	var local string
	trace := &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { local = i.Conn.LocalAddr().String() },
	}
	method, body := http.MethodGet, io.Reader(nil)
	if post {
		// A body with no GetBody and no Idempotency-Key: net/http never
		// resends it, and neither should anyone (an order, a payment).
		method = http.MethodPost
		body = strings.NewReader(fmt.Sprintf(`{"order":"w%d-%d"}`, id, o.start))
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
		method, fmt.Sprintf("%s/work?ms=%d", l.cfg.URL, ms), body)
	if err != nil {
		panic(err) // the URL is ours
	}
	req.GetBody = nil
	resp, err := c.Do(req)
	var detail string
	switch {
	case err != nil:
		o.kind, detail = l.classify(err, local), err.Error()
		if o.kind == kindRefused && !errors.Is(err, syscall.ECONNREFUSED) && !strings.Contains(err.Error(), "dial") {
			detail = "the backend refused the balancer's connection; the L4 balancer reset the client's: " + detail
		}
	default:
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch {
		case rerr != nil:
			o.kind, detail = l.classify(rerr, local), rerr.Error()
		case resp.Header.Get(lbHeader) != "":
			o.kind, detail = kindLB, fmt.Sprintf("%d from the balancer: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		case resp.StatusCode != http.StatusOK || string(b) != "ok\n":
			o.kind, detail = kindBackend, fmt.Sprintf("%d from the backend: %q", resp.StatusCode, b)
		default:
			o.kind = kindOK
		}
	}
	o.end = time.Since(l.t0)
	if o.kind != kindOK {
		l.mu.Lock()
		if _, ok := l.first[int(o.kind)]; !ok {
			l.first[int(o.kind)] = fmt.Sprintf("%s %s", method, detail)
		}
		l.mu.Unlock()
	}
	return o
}

// classify sorts a transport error into a kind.
func (l *load) classify(err error, local string) uint8 {
	var (
		ne net.Error
		op *net.OpError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return kindRefused
	case errors.As(err, &op) && op.Op == "dial":
		// The L4 balancer accepted, could not reach the backend and
		// reset, before the client's connect had even returned.
		return kindRefused
	case local != "" && l.cfg.RefusedConn != nil && l.cfg.RefusedConn(local):
		return kindRefused
	}
	return kindReset
}
