package haproxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// mixedLoadConfig configures startMixedLoad.
type mixedLoadConfig struct {
	URL string
	// Workers is the number of clients; the even ones open a new
	// connection for every request, the odd ones keep theirs alive.
	Workers int
	// Interval paces every worker: it starts a request at most every
	// Interval (Workers/Interval requests a second in all).
	Interval    time.Duration
	Seed        uint64
	MaxDuration time.Duration // bounds the load
}

// mixedLoad is a paced load of GET and POST /work requests from two kinds
// of clients: short-lived ones (other pods' clients, scripts, batch jobs)
// that open a new connection per request, which a load balancer in L4
// mode routes anew every time, and long-lived ones that keep one
// connection alive and reconnect only when told to. As in testutil's load,
// half of the requests are POSTs that net/http never resends: a lost
// request is a failure.
type mixedLoad struct {
	cfg   mixedLoadConfig
	start time.Time
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	sent, ok, closing, retried atomic.Int64
	okCh                       chan struct{}

	mu     sync.Mutex
	byKind map[string]int64
	first  []mixedFailure
	result *mixedResult
}

// mixedFailure is one failed request.
type mixedFailure struct {
	Worker  int
	NewConn bool // a worker that opens a connection per request
	Method  string
	Start   time.Time
	At      time.Time
	Kind    string
	Detail  string
}

// mixedResult counts what a mixed load did.
type mixedResult struct {
	Requests, OK, Failed, Closing, Retried int64
	FailedNewConn, FailedKeepAlive         int64
	ByKind                                 map[string]int64
	First                                  []mixedFailure
	Duration                               time.Duration
}

func (r mixedResult) String() string {
	kinds := make([]string, 0, len(r.ByKind))
	for k, n := range r.ByKind {
		kinds = append(kinds, fmt.Sprintf("%q: %d", k, n))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d requests in %v (%.0f/s): %d ok (%d with Connection: close), %d failed (%d new-connection, %d keep-alive) {%s}, %d retried by the transport",
		r.Requests, r.Duration.Round(time.Millisecond), float64(r.Requests)/r.Duration.Seconds(), r.OK, r.Closing,
		r.Failed, r.FailedNewConn, r.FailedKeepAlive, strings.Join(kinds, ", "), r.Retried)
}

const mixedFailuresKept = 10

func startMixedLoad(cfg mixedLoadConfig) *mixedLoad {
	l := &mixedLoad{cfg: cfg, start: time.Now(), stop: make(chan struct{}), okCh: make(chan struct{}, 1), byKind: map[string]int64{}}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.MaxDuration)
	for w := range cfg.Workers {
		l.wg.Go(func() { l.worker(ctx, w) })
	}
	l.wg.Go(func() {
		select {
		case <-ctx.Done():
			l.once.Do(func() { close(l.stop) })
		case <-l.stop:
		}
		cancel()
	})
	return l
}

// waitOK waits until n requests have succeeded, or the timeout.
func (l *mixedLoad) waitOK(n int64, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for l.ok.Load() < n {
		select {
		case <-l.okCh:
		case <-l.stop:
			return l.ok.Load() >= n
		case <-deadline.C:
			return false
		}
	}
	return true
}

func (l *mixedLoad) snapshot() mixedResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snapshotLocked()
}

func (l *mixedLoad) snapshotLocked() mixedResult {
	r := mixedResult{
		Requests: l.sent.Load(), OK: l.ok.Load(), Closing: l.closing.Load(), Retried: l.retried.Load(),
		ByKind: make(map[string]int64, len(l.byKind)), First: append([]mixedFailure(nil), l.first...),
		Duration: time.Since(l.start),
	}
	for k, n := range l.byKind {
		r.ByKind[k] = n
		r.Failed += n
		if strings.HasPrefix(k, "new-conn ") {
			r.FailedNewConn += n
		} else {
			r.FailedKeepAlive += n
		}
	}
	return r
}

// Stop stops the workers, lets their requests in flight finish and
// returns the result; later calls return the same result.
func (l *mixedLoad) Stop() mixedResult {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.result == nil {
		r := l.snapshotLocked()
		l.result = &r
	}
	return *l.result
}

func (l *mixedLoad) worker(ctx context.Context, id int) {
	newConn := id%2 == 0
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		DisableKeepAlives:   newConn,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	rng := rand.New(rand.NewPCG(l.cfg.Seed, uint64(id)))
	// A worker late after a slow request catches up by sending the next
	// ones back to back, up to maxLag behind its schedule, so that the
	// rate stays Workers/Interval.
	maxLag := 10 * l.cfg.Interval
	// Spread the workers' first requests over one interval.
	next := time.Now().Add(time.Duration(rng.Int64N(int64(l.cfg.Interval))))
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		if d := time.Until(next); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			}
		} else {
			select {
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			if late := -d; late > maxLag {
				next = time.Now().Add(-maxLag) // far behind: catch up a little, not in a burst
			}
		}
		next = next.Add(l.cfg.Interval)
		ms := rng.IntN(21) // as testutil's load: 0-20ms, one in 20 slow
		if rng.IntN(20) == 0 {
			ms = 20 * (5 + rng.IntN(11))
		}
		method := http.MethodGet
		if rng.IntN(2) == 0 {
			method = http.MethodPost
		}
		l.sent.Add(1)
		l.one(c, id, newConn, method, ms)
	}
}

// one sends one request and records its outcome; it does not use the
// load's context, so that stopping the load fails nothing.
func (l *mixedLoad) one(c *http.Client, id int, newConn bool, method string, ms int) {
	f := mixedFailure{Worker: id, NewConn: newConn, Method: method, Start: time.Now()}
	conns := 0
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }}
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(fmt.Sprintf(`{"order":"%d-%d"}`, id, f.Start.UnixNano()))
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method,
		fmt.Sprintf("%s/work?ms=%d", l.cfg.URL, ms), body)
	if err != nil {
		l.fail(f, "request", err)
		return
	}
	req.GetBody = nil // never resent
	resp, err := c.Do(req)
	if conns > 1 {
		l.retried.Add(1)
	}
	if err != nil {
		l.fail(f, errKind(err), err)
		return
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	switch {
	case err != nil:
		l.fail(f, "body: "+errKind(err), err)
	case resp.StatusCode != http.StatusOK || string(b) != "ok\n":
		l.fail(f, fmt.Sprintf("status %d", resp.StatusCode), fmt.Errorf("%q", b))
	default:
		if resp.Close {
			l.closing.Add(1)
		}
		l.ok.Add(1)
		select {
		case l.okCh <- struct{}{}:
		default:
		}
	}
}

func (l *mixedLoad) fail(f mixedFailure, kind string, err error) {
	f.At, f.Kind, f.Detail = time.Now(), kind, err.Error()
	if len(f.Detail) > 160 {
		f.Detail = f.Detail[:160]
	}
	prefix := "keep-alive "
	if f.NewConn {
		prefix = "new-conn "
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byKind[prefix+kind]++
	if len(l.first) < mixedFailuresKept {
		l.first = append(l.first, f)
	}
}

// errKind classifies a transport error by its text.
func errKind(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "EOF"
	}
	s := err.Error()
	for _, k := range []string{"connection reset", "connection refused", "broken pipe", "EOF", "timeout", "deadline exceeded", "closed"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	return "transport error"
}
