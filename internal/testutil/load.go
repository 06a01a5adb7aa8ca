package testutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LoadConfig configures [StartLoad]. Every field has a bounded default,
// so a zero LoadConfig with a URL is a valid load.
type LoadConfig struct {
	// URL is the base URL; requests go to URL+"/work?ms=N".
	URL string
	// Workers is the number of concurrent clients, each with its own
	// transport and one keep-alive connection. Default 8.
	Workers int
	// MaxRequests bounds the number of requests in all. Default 200000.
	MaxRequests int64
	// MaxDuration bounds how long the load runs. Default 60s.
	MaxDuration time.Duration
	// MaxWorkMS bounds the ms of a typical request, drawn from
	// [0, MaxWorkMS]. Default 20. One request in 20 is slow, 5 to 15
	// times that, so that some requests are in flight across the phases
	// of a shutdown.
	MaxWorkMS int
	// Seed seeds the random choices of the workers.
	Seed uint64
	// RequestTimeout bounds each request. Default 10s.
	RequestTimeout time.Duration
}

// Load is a running load: workers sending GET and POST /work requests over
// keep-alive connections until [Load.Stop]. Half of the requests are POSTs
// with a body that the transport cannot replay: no Idempotency-Key and no
// GetBody, so net/http never retries them (GETs on a reused connection it
// may retry, as browsers do). A lost POST is a failure.
type Load struct {
	cfg   LoadConfig
	start time.Time
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	sent, ok atomic.Int64
	retried  atomic.Int64 // requests the transport sent twice (GETs only)
	closing  atomic.Int64 // successful responses with "Connection: close"
	okCh     chan struct{}

	mu       sync.Mutex
	failures []Failure
	byKind   map[string]int64
	result   *LoadResult
}

// Failure is one failed request.
type Failure struct {
	Worker  int
	Method  string
	MS      int
	Start   time.Time // when the request was sent
	At      time.Time // when it failed
	Kind    string    // such as "status 503" or "EOF"
	Detail  string    // the error or the start of the body
	Reused  bool      // sent on a connection reused from the pool
	IdleFor time.Duration
	Wrote   bool // the request had been fully written
	Local   string
}

func (f Failure) String() string {
	return fmt.Sprintf("%s worker=%d %s ms=%d sent=%s failed=%s reused=%v idle=%v wrote=%v local=%s: %s",
		f.Kind, f.Worker, f.Method, f.MS, f.Start.Format("15:04:05.000"), f.At.Format("15:04:05.000"),
		f.Reused, f.IdleFor.Round(time.Millisecond), f.Wrote, f.Local, f.Detail)
}

// LoadResult counts what a load did.
type LoadResult struct {
	Requests int64            // requests sent
	OK       int64            // 200 "ok\n"
	Failed   int64            // everything else
	Retried  int64            // requests the transport sent again (not failures)
	Closing  int64            // successful responses that carried "Connection: close"
	ByKind   map[string]int64 // failures by kind
	First    []Failure        // the first failures, in order
	Duration time.Duration
}

func (r LoadResult) String() string {
	kinds := make([]string, 0, len(r.ByKind))
	for k, n := range r.ByKind {
		kinds = append(kinds, fmt.Sprintf("%q: %d", k, n))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d requests in %v: %d ok (%d with Connection: close), %d failed {%s}, %d retried by the transport",
		r.Requests, r.Duration.Round(time.Millisecond), r.OK, r.Closing, r.Failed, strings.Join(kinds, ", "), r.Retried)
}

const maxFailuresKept = 20

// NewLoad checks cfg, fills in its defaults and starts the workers. The
// load stops at [Load.Stop], after MaxRequests or after MaxDuration,
// whichever comes first. It needs no *testing.T, so that programs such as
// a demo can use it; tests use [StartLoad].
func NewLoad(cfg LoadConfig) (*Load, error) {
	switch {
	case !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://"):
		return nil, fmt.Errorf("testutil: load URL must start with http:// or https://, got %q", cfg.URL)
	case cfg.Workers < 0, cfg.MaxRequests < 0, cfg.MaxDuration < 0, cfg.MaxWorkMS < 0, cfg.RequestTimeout < 0:
		return nil, fmt.Errorf("testutil: load bounds must not be negative: %+v", cfg)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if cfg.MaxRequests == 0 {
		cfg.MaxRequests = 200000
	}
	if cfg.MaxDuration == 0 {
		cfg.MaxDuration = time.Minute
	}
	if cfg.MaxWorkMS == 0 {
		cfg.MaxWorkMS = 20
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	l := &Load{cfg: cfg, start: time.Now(), stop: make(chan struct{}), okCh: make(chan struct{}, 1), byKind: map[string]int64{}}
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
	return l, nil
}

// StartLoad is [NewLoad] for tests: a bad cfg fails the test, and the
// load is stopped when the test ends.
func StartLoad(t testing.TB, cfg LoadConfig) *Load {
	t.Helper()
	l, err := NewLoad(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

// WaitOK waits until n requests have succeeded, or the timeout. It
// reports whether they did.
func (l *Load) WaitOK(n int64, timeout time.Duration) bool {
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

// Snapshot returns the counts so far without stopping the load.
func (l *Load) Snapshot() LoadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snapshotLocked()
}

func (l *Load) snapshotLocked() LoadResult {
	byKind := make(map[string]int64, len(l.byKind))
	var failed int64
	for k, n := range l.byKind {
		byKind[k] = n
		failed += n
	}
	return LoadResult{
		Requests: l.sent.Load(), OK: l.ok.Load(), Failed: failed, Retried: l.retried.Load(), Closing: l.closing.Load(),
		ByKind: byKind, First: append([]Failure(nil), l.failures...), Duration: time.Since(l.start),
	}
}

// Stop stops the workers, waits for their requests in flight and returns
// the result. Later calls return the same result.
func (l *Load) Stop() LoadResult {
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

func (l *Load) worker(ctx context.Context, id int) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: l.cfg.RequestTimeout}
	rng := rand.New(rand.NewPCG(l.cfg.Seed, uint64(id)))
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if l.sent.Add(1) > l.cfg.MaxRequests {
			l.sent.Add(-1)
			return
		}
		ms := rng.IntN(l.cfg.MaxWorkMS + 1)
		if rng.IntN(20) == 0 {
			ms = l.cfg.MaxWorkMS * (5 + rng.IntN(11))
		}
		method := http.MethodGet
		if rng.IntN(2) == 0 {
			method = http.MethodPost
		}
		l.one(c, id, method, ms)
	}
}

// one sends one request and records its outcome. The request does not
// use the load's context: a request in flight when the load stops is
// finished, not cancelled, so a stop is never counted as a failure.
func (l *Load) one(c *http.Client, id int, method string, ms int) {
	f := Failure{Worker: id, Method: method, MS: ms, Start: time.Now()}
	var (
		conns int         // GotConn runs on this goroutine
		wrote atomic.Bool // WroteRequest runs on the transport's writer
	)
	trace := &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			conns++
			f.Reused, f.IdleFor = i.Reused, i.IdleTime
			f.Local = i.Conn.LocalAddr().String()
			wrote.Store(false)
		},
		WroteRequest: func(i httptrace.WroteRequestInfo) { wrote.Store(i.Err == nil) },
	}
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"order":"` + fmt.Sprint(f.Start.UnixNano()) + `"}`)
	}
	url := fmt.Sprintf("%s/work?ms=%d", l.cfg.URL, ms)
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, url, body)
	if err != nil {
		l.fail(f, "request", err.Error())
		return
	}
	// Without GetBody the transport cannot resend the body, so it never
	// retries a POST, not even one it had not written at all.
	req.GetBody = nil
	resp, err := c.Do(req)
	f.Wrote = wrote.Load()
	if conns > 1 {
		l.retried.Add(1)
	}
	if err != nil {
		l.fail(f, errorKind(err), err.Error())
		return
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	switch {
	case err != nil:
		l.fail(f, "body: "+errorKind(err), err.Error())
	case resp.StatusCode != http.StatusOK:
		l.fail(f, fmt.Sprintf("status %d", resp.StatusCode), strings.TrimSpace(string(b)))
	case string(b) != "ok\n":
		l.fail(f, "body", fmt.Sprintf("%q", b))
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

func (l *Load) fail(f Failure, kind, detail string) {
	f.At, f.Kind = time.Now(), kind
	if len(detail) > 200 {
		detail = detail[:200]
	}
	f.Detail = detail
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byKind[kind]++
	if len(l.failures) < maxFailuresKept {
		l.failures = append(l.failures, f)
	}
}

// errorKind classifies a transport error by its text, which is all
// net/http offers for most of them.
func errorKind(err error) string {
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
