// Package haproxy_test runs rolling restarts of the example services
// behind a real load balancer, HAProxy from Debian's packages, under
// load, and counts the requests that fail.
//
// The model is a Kubernetes rolling update with maxSurge 1 and
// maxUnavailable 0 over a pool of backends: for each old backend a new one
// is started and registered; once it is up, the old one gets SIGTERM and,
// at the same moment, its removal from the load balancer starts, arriving
// after a random propagation delay shorter than the hold (the endpoints
// controller → kube-proxy/ingress path). HAProxy runs on loopback in two
// modes:
//
//   - l7: mode http, keep-alive to the backends with connection reuse,
//     active health checks on /readyz every 200ms, no retries, no
//     redispatch: a request that fails on a backend fails for the client.
//   - l4: mode tcp, no health checks: HAProxy only stops opening new
//     connections to a removed backend, and established connections (the
//     clients' keep-alive connections) stay on their backend.
//
// The load is GETs and POSTs that net/http cannot retry, over keep-alive
// connections. A lameduck service must lose none of them, and every old
// process must exit 0. The control, a server that exits on SIGTERM, must
// lose some, which proves the test can fail.
package haproxy_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// The lameduck services' budget: the hold is longer than the slowest
// propagation delay, the drain timeout longer than the slowest request.
const (
	hold         = 1500 * time.Millisecond
	drainTimeout = 5 * time.Second
	grace        = 10 * time.Second
	pool         = 3 // backends behind the load balancer
	minDelay     = 100 * time.Millisecond
	maxDelay     = hold / 2 // propagation delays are drawn from [minDelay, maxDelay)
)

// backend is a kind of server under test.
type backend struct {
	name    string
	pkg     string        // main package, relative to the module root
	example bool          // an example of the contract, run with hold, drain timeout and grace
	hold    time.Duration // the example's -hold
	control bool          // a control, expected to lose requests
	// mustLose lists the modes in which the control loses requests in
	// every run, which the test asserts; in the others it only reports.
	mustLose []testutil.HAProxyMode
}

// backends returns the servers under test: the HTTP examples that exist,
// and the controls. The exit-on-SIGTERM server is the control the issue
// asks for. chi with -hold 0 is a second one: it drains gracefully but
// stops accepting at SIGTERM, before the load balancer has converged,
// which shows that the drain alone is not enough and the hold is what
// makes the difference.
func backends(t *testing.T) []backend {
	root := testutil.ModuleRoot(t)
	var bs []backend
	for _, name := range []string{"chi", "gin"} {
		if _, err := os.Stat(filepath.Join(root, "examples", name, "main.go")); err == nil {
			bs = append(bs, backend{name: name, pkg: "./examples/" + name, example: true, hold: hold})
		} else if name == "chi" {
			t.Fatalf("examples/chi: %v", err)
		}
	}
	return append(bs,
		// In l4 mode chi without hold loses requests only when a client
		// reconnects while haproxy still routes to the old backend, or
		// sends on an idle connection as the drain closes it: most runs,
		// not all, so the test asserts its loss in l7 mode only.
		backend{name: "chi_without_hold", pkg: "./examples/chi", example: true, hold: 0, control: true,
			mustLose: []testutil.HAProxyMode{testutil.HAProxyHTTP}},
		// It cuts off the requests in flight on each old backend, two or
		// three per SIGTERM, and haproxy sends it more until it is removed
		// (l4) or a health check fails (l7).
		backend{name: "exit_on_sigterm", pkg: "./e2e/haproxy/testdata/exitserver", control: true,
			mustLose: []testutil.HAProxyMode{testutil.HAProxyHTTP, testutil.HAProxyTCP}})
}

// seed returns the seed of the random choices: LAMEDUCK_SEED to replay a
// run, or a new one, logged.
func seed(t *testing.T) uint64 {
	if s := os.Getenv("LAMEDUCK_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LAMEDUCK_SEED=%q: %v", s, err)
		}
		return n
	}
	return rand.Uint64()
}

func TestRollingRestart(t *testing.T) {
	testutil.HAProxyPath(t)
	s := seed(t)
	t.Logf("seed %d (replay with LAMEDUCK_SEED=%d)", s, s)
	bs := backends(t)
	for _, b := range bs {
		testutil.BuildBinary(t, b.pkg) // before the clocks start
	}
	// Subtests run one after another: each one loads both cores (HAProxy,
	// the load, up to six backends built with -race), and in parallel
	// they would measure the machine rather than the shutdown.
	type result struct {
		name string
		testutil.LoadResult
	}
	var results []result
	for m, mode := range []testutil.HAProxyMode{testutil.HAProxyHTTP, testutil.HAProxyTCP} {
		for i, b := range bs {
			name := modeName(mode) + "/" + b.name
			t.Run(name, func(t *testing.T) {
				r := rollingRestart(t, mode, b, s+uint64(100*m+i))
				results = append(results, result{name, r})
				if !b.control && r.Failed != 0 {
					t.Errorf("%d of %d requests failed during the rolling restart, want 0", r.Failed, r.Requests)
				}
				if slices.Contains(b.mustLose, mode) && r.Failed == 0 {
					t.Errorf("the control lost no request out of %d: the test cannot see failures", r.Requests)
				}
			})
		}
	}
	for _, r := range results {
		t.Logf("%-22s %v", r.name, r.LoadResult)
	}
}

func modeName(m testutil.HAProxyMode) string {
	if m == testutil.HAProxyHTTP {
		return "l7"
	}
	return "l4"
}

// instance is one backend process registered in HAProxy.
type instance struct {
	p    *testutil.Process
	addr string
	slot string
}

func start(t *testing.T, b backend, h *testutil.HAProxy) instance {
	t.Helper()
	bin := testutil.BuildBinary(t, b.pkg)
	var p *testutil.Process
	if b.example {
		p = testutil.Start(t, bin, nil, "-addr", "127.0.0.1:0", "-hold", b.hold.String(),
			"-drain-timeout", drainTimeout.String(), "-grace", grace.String())
	} else {
		// A binary built with -race sleeps 1s in os.Exit by default
		// (atexit_sleep_ms), serving on meanwhile: that would be a hold.
		p = testutil.Start(t, bin, []string{"GORACE=atexit_sleep_ms=0"}, "-addr", "127.0.0.1:0")
	}
	addr := p.Addr(30 * time.Second)
	if b.example {
		p.WaitLog("lameduck: serving", 10*time.Second)
	}
	slot, err := h.AddServer(addr, 10*time.Second)
	if err != nil {
		t.Fatalf("registering %s: %v\nhaproxy:\n%s", addr, err, h.Stderr())
	}
	return instance{p: p, addr: addr, slot: slot}
}

// event is a moment of the rolling restart, for the timeline logged.
type event struct {
	at   time.Time
	what string
}

// rollingRestart replaces every backend of a pool under load and returns
// what the load saw.
func rollingRestart(t *testing.T, mode testutil.HAProxyMode, b backend, seed uint64) testutil.LoadResult {
	h := testutil.StartHAProxy(t, testutil.HAProxyConfig{Mode: mode, Slots: 2 * pool})
	rng := rand.New(rand.NewPCG(seed, 0))

	olds := make([]instance, pool)
	for i := range olds {
		olds[i] = start(t, b, h)
	}
	t0 := time.Now()
	load := testutil.StartLoad(t, testutil.LoadConfig{URL: h.URL, Seed: seed, MaxDuration: 45 * time.Second, MaxRequests: 100000})
	// Warm up: every worker has a keep-alive connection, and nothing
	// fails before the first SIGTERM, or the test set-up is broken.
	if !load.WaitOK(300, 20*time.Second) {
		t.Fatalf("warm-up: %v", load.Stop())
	}
	if r := load.Snapshot(); r.Failed != 0 {
		t.Fatalf("failures before the rolling restart: %v\n%s", r, failures(r, t0, len(r.First)))
	}

	events := make(chan event, 4*pool)
	type removal struct {
		slot   string
		err    error
		served int64 // sessions HAProxy sent it between SIGTERM and removal
	}
	removed := make(chan removal, pool)
	var watchers sync.WaitGroup
	for _, old := range olds {
		n := start(t, b, h)
		events <- event{time.Now(), fmt.Sprintf("%s up at %s (new)", n.slot, n.addr)}
		delay := minDelay + time.Duration(rng.Int64N(int64(maxDelay-minDelay)))
		before, err := sessions(h, old.slot)
		if err != nil {
			t.Fatal(err)
		}
		old.p.Signal(syscall.SIGTERM)
		events <- event{time.Now(), fmt.Sprintf("%s SIGTERM, removal in %v", old.slot, delay.Round(time.Millisecond))}
		watchers.Go(func() {
			<-old.p.Done() // closed at the latest when the test's cleanup kills it
			events <- event{time.Now(), old.slot + " exited"}
		})
		time.AfterFunc(delay, func() {
			r := removal{slot: old.slot, err: h.RemoveServer(old.slot)}
			events <- event{time.Now(), old.slot + " removed from haproxy"}
			if after, err := sessions(h, old.slot); err != nil {
				r.err = errors.Join(r.err, err)
			} else {
				r.served = after - before
			}
			removed <- r
		})
	}
	var served int64
	for range olds {
		r := <-removed
		if r.err != nil {
			t.Errorf("removing %s: %v", r.slot, r.err)
		}
		served += r.served
	}
	t.Logf("between their SIGTERM and their removal, haproxy sent the old backends %d new sessions", served)
	if !b.control && mode == testutil.HAProxyHTTP && served == 0 {
		// With about 100 requests a second per backend and windows of at
		// least 100ms, this means the load did not reach the window that
		// the hold covers: zero failures would prove nothing. (In l4 mode
		// the sessions are connections; the check is on the responses.)
		t.Errorf("haproxy sent the old backends no request between SIGTERM and removal: the hold was not exercised")
	}
	for _, old := range olds {
		code := old.p.Wait(hold + drainTimeout + 10*time.Second)
		if b.example {
			if code != 0 {
				t.Errorf("%s (%s) exit code %d, want 0", old.slot, old.addr, code)
			}
			if !strings.Contains(old.p.Stderr(), "drained=true") {
				t.Errorf("%s (%s) did not log drained=true:\n%s", old.slot, old.addr, old.p.Stderr())
			}
		}
	}
	// The new pool serves on its own for a while.
	after := load.Snapshot().OK + 300
	if !load.WaitOK(after, 20*time.Second) {
		t.Errorf("the new pool did not serve 300 requests within 20s")
	}
	r := load.Stop()
	if !b.control && mode == testutil.HAProxyTCP && r.Closing == 0 {
		// In l4 mode the clients' connections reach the backends: those on
		// an old backend must have been told to reconnect during the hold.
		t.Errorf("no response had Connection: close: the clients' connections to the old backends were not exercised")
	}
	watchers.Wait()
	close(events)
	var evs []event
	for e := range events {
		evs = append(evs, e)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	var timeline strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&timeline, "  %7s %s\n", rel(e.at, t0), e.what)
	}
	t.Logf("%v\ntimeline (from the load's start):\n%s", r, timeline.String())
	switch {
	case r.Failed > 0 && !b.control:
		t.Logf("%s", failures(r, t0, len(r.First)))
		t.Logf("haproxy log:\n%s", h.Stderr())
	case r.Failed > 0:
		t.Logf("%s", failures(r, t0, 3))
	}
	return r
}

// sessions returns the number of sessions HAProxy has sent the server in
// slot so far: requests in l7 mode, connections in l4 mode.
func sessions(h *testutil.HAProxy, slot string) (int64, error) {
	stats, err := h.Stats()
	if err != nil {
		return 0, err
	}
	for _, s := range stats {
		if s.Name == slot {
			return strconv.ParseInt(s.Total, 10, 64)
		}
	}
	return 0, fmt.Errorf("haproxy has no server %s", slot)
}

func rel(at, t0 time.Time) string {
	return fmt.Sprintf("%dms", at.Sub(t0).Milliseconds())
}

func failures(r testutil.LoadResult, t0 time.Time, n int) string {
	var s strings.Builder
	fmt.Fprintf(&s, "first failures (times from the load's start):\n")
	for _, f := range r.First[:min(n, len(r.First))] {
		fmt.Fprintf(&s, "  sent %s failed %s: %v\n", rel(f.Start, t0), rel(f.At, t0), f)
	}
	return s.String()
}
