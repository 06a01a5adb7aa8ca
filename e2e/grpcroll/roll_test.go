package grpcroll_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking for round_robin
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/lameduck/lameduck/internal/testutil"
)

// The budget of a rollout. The hold is longer than the slowest removal,
// the drain timeout far longer than the slowest RPC (30ms); hold + drain
// timeout + core's margin (max(2s, 10% of grace)) fits in the grace
// period, as core.CheckBudget requires.
const (
	pool         = 3 // instances, replaced one by one
	channels     = 4 // client channels
	hold         = 3 * time.Second
	drainTimeout = 5 * time.Second
	grace        = 15 * time.Second
	minDelay     = 300 * time.Millisecond // removal delays are drawn from [minDelay, maxDelay)
	maxDelay     = 2 * time.Second
	latency      = 2 * time.Millisecond // l4_latency, each way

	workers = 16
	rate    = 400 // RPCs per second, all workers together
	shortMS = 5
	longMS  = 30
	tickMS  = 50

	runs = 3 // rollouts per model

	pkg  = "./examples/grpc"
	hang = 30 * time.Second // bounds waits that only a bug makes long
)

type modelKind int

const (
	haproxyTCP modelKind = iota
	l4Latency
	roundRobin
)

func (k modelKind) String() string {
	return [...]string{"haproxy_tcp", "l4_latency", "round_robin"}[k]
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

func TestGRPCRollingRestart(t *testing.T) {
	testutil.HAProxyPath(t) // skip, or fail under CI=true, before anything runs
	s := seed(t)
	t.Logf("seed %d (replay with LAMEDUCK_SEED=%d); hold %v, removal %v–%v after SIGTERM, %d instances, %d runs per model",
		s, s, hold, minDelay, maxDelay, pool, runs)
	exampleBinary(t) // built before the clocks start

	cases := []struct {
		name    string
		model   modelKind
		hold    time.Duration
		control bool
	}{
		{"haproxy_tcp", haproxyTCP, hold, false},
		{"l4_latency", l4Latency, hold, false},
		{"round_robin", roundRobin, hold, false},
		// GracefulStop at SIGTERM: the balancer still sends new
		// connections to the stopped instance until its removal.
		{"control_hold0_l4_latency", l4Latency, 0, true},
	}
	type row struct {
		name string
		result
	}
	var rows []row
	// One after another: each rollout loads both cores.
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for run := range runs {
				t.Run(fmt.Sprintf("run%d", run+1), func(t *testing.T) {
					r := rollout(t, c.model, c.hold, s+uint64(100*i+run))
					rows = append(rows, row{c.name + "/run" + strconv.Itoa(run+1), r})
					switch {
					case !c.control && r.failed != 0:
						t.Errorf("%d of %d RPCs failed during the rolling restart, want 0", r.failed, r.rpcs)
					case c.control && r.failed == 0:
						t.Errorf("the control failed no RPC out of %d: the test cannot see failures", r.rpcs)
					}
					if !c.control && r.streamFailed != 0 {
						t.Errorf("%d streams failed, want 0", r.streamFailed)
					}
				})
			}
		})
	}
	for _, r := range rows {
		t.Logf("%-32s %v", r.name, r.result)
	}
}

// balancer is a model of how the clients reach the instances.
type balancer interface {
	// dial returns a client channel through the balancer.
	dial(t *testing.T) *grpc.ClientConn
	// add sends new connections or RPCs to the instance at addr too.
	add(t *testing.T, addr string)
	// remove stops sending new connections (or RPCs) to addr.
	remove(addr string) error
}

func newBalancer(t *testing.T, k modelKind) balancer {
	switch k {
	case haproxyTCP:
		return &haproxyBalancer{h: testutil.StartHAProxy(t, testutil.HAProxyConfig{Mode: testutil.HAProxyTCP, Slots: 2 * pool}),
			slots: map[string]string{}}
	case l4Latency:
		return &proxyBalancer{p: startProxy(t, latency)}
	default:
		return &rrBalancer{}
	}
}

func dialOpts(extra ...grpc.DialOption) []grpc.DialOption {
	return append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, extra...)
}

func newClient(t *testing.T, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target, dialOpts(opts...)...)
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type haproxyBalancer struct {
	h     *testutil.HAProxy
	mu    sync.Mutex
	slots map[string]string // addr → slot
}

func (b *haproxyBalancer) dial(t *testing.T) *grpc.ClientConn {
	return newClient(t, "passthrough:///"+b.h.Addr)
}

func (b *haproxyBalancer) add(t *testing.T, addr string) {
	slot, err := b.h.AddServer(addr, 10*time.Second)
	if err != nil {
		t.Fatalf("haproxy: adding %s: %v\n%s", addr, err, b.h.Stderr())
	}
	b.mu.Lock()
	b.slots[addr] = slot
	b.mu.Unlock()
}

func (b *haproxyBalancer) remove(addr string) error {
	b.mu.Lock()
	slot, ok := b.slots[addr]
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("haproxy: no slot for %s", addr)
	}
	return b.h.RemoveServer(slot)
}

type proxyBalancer struct{ p *l4Proxy }

func (b *proxyBalancer) dial(t *testing.T) *grpc.ClientConn {
	return newClient(t, "passthrough:///"+b.p.addr)
}
func (b *proxyBalancer) add(_ *testing.T, addr string) { b.p.add(addr) }
func (b *proxyBalancer) remove(addr string) error      { b.p.remove(addr); return nil }

// rrBalancer is a headless Service: every channel resolves the
// endpoints itself (a manual resolver each) and balances round_robin with
// client-side health checking.
type rrBalancer struct {
	mu        sync.Mutex
	endpoints []string
	resolvers []*manual.Resolver
}

const rrServiceConfig = `{"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":""}}`

func (b *rrBalancer) state() resolver.State {
	var s resolver.State
	for _, e := range b.endpoints {
		s.Addresses = append(s.Addresses, resolver.Address{Addr: e})
	}
	return s
}

func (b *rrBalancer) dial(t *testing.T) *grpc.ClientConn {
	b.mu.Lock()
	r := manual.NewBuilderWithScheme("grpcroll")
	r.InitialState(b.state())
	b.resolvers = append(b.resolvers, r)
	b.mu.Unlock()
	return newClient(t, "grpcroll:///demo", grpc.WithResolvers(r), grpc.WithDefaultServiceConfig(rrServiceConfig))
}

func (b *rrBalancer) update() {
	s := b.state()
	for _, r := range b.resolvers {
		r.UpdateState(s)
	}
}

func (b *rrBalancer) add(_ *testing.T, addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.endpoints = append(b.endpoints, addr)
	b.update()
}

func (b *rrBalancer) remove(addr string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.endpoints = slices.DeleteFunc(b.endpoints, func(e string) bool { return e == addr })
	b.update()
	return nil
}

// exampleBinary returns examples/grpc built from this checkout, or the
// binary named by LAMEDUCK_GRPC_BIN: another build of the example to
// measure with the same harness (an older commit, say).
func exampleBinary(t *testing.T) string {
	if bin := os.Getenv("LAMEDUCK_GRPC_BIN"); bin != "" {
		return bin
	}
	return testutil.BuildBinary(t, pkg)
}

// instance is one examples/grpc process.
type instance struct {
	p    *testutil.Process
	addr string
}

// startInstance starts examples/grpc with the given hold and waits until
// grpc.health.v1 reports it SERVING, on a channel of its own.
func startInstance(t *testing.T, hold time.Duration) instance {
	t.Helper()
	// A binary built with -race sleeps 1s in os.Exit by default
	// (atexit_sleep_ms); nothing to measure there.
	p := testutil.Start(t, exampleBinary(t), []string{"GORACE=atexit_sleep_ms=0"},
		"-addr", "127.0.0.1:0", "-hold", hold.String(),
		"-drain-timeout", drainTimeout.String(), "-grace", grace.String())
	addr := p.Addr(hang)
	conn, err := grpc.NewClient("passthrough:///"+addr, dialOpts()...)
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(hang)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return instance{p: p, addr: addr}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not SERVING within %v: %v %v; stderr:\n%s", addr, hang, r.GetStatus(), err, p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type event struct {
	at   time.Time
	what string
}

// rollout replaces the pool of instances behind the model's balancer
// under load and returns what the load saw.
func rollout(t *testing.T, k modelKind, hold time.Duration, seed uint64) result {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := newBalancer(t, k)
	olds := make([]instance, pool)
	for i := range olds {
		olds[i] = startInstance(t, hold)
		b.add(t, olds[i].addr)
	}
	conns := make([]*grpc.ClientConn, channels)
	for i := range conns {
		conns[i] = b.dial(t)
	}
	l := startLoad(loadConfig{conns: conns, workers: workers, rate: rate, shortMS: shortMS, longMS: longMS,
		tickMS: tickMS, seed: seed, maxDuration: 60 * time.Second, maxRPCs: 60 * rate, rpcTimeout: 10 * time.Second})
	t.Cleanup(func() { l.finish() })
	t0 := l.start
	// Warm up: every channel connected, every stream ticking, nothing
	// failed, or the set-up is broken.
	if !l.waitOK(200, 20*time.Second) || !l.waitTicks(t0, 20*time.Second) {
		t.Fatalf("warm-up: %v", l.finish())
	}
	if l.failedSoFar() > 0 {
		t.Fatalf("failures before the rollout: %v", l.finish())
	}

	events := make(chan event, 8*pool)
	var timers sync.WaitGroup
	for _, old := range olds {
		n := startInstance(t, hold)
		b.add(t, n.addr)
		events <- event{time.Now(), fmt.Sprintf("new %s ready and added", n.addr)}
		delay := minDelay + time.Duration(rng.Int64N(int64(maxDelay-minDelay)))
		old.p.Signal(syscall.SIGTERM)
		events <- event{time.Now(), fmt.Sprintf("old %s SIGTERM, removal in %v", old.addr, delay.Round(time.Millisecond))}
		timers.Add(1)
		time.AfterFunc(delay, func() {
			defer timers.Done()
			err := b.remove(old.addr)
			what := fmt.Sprintf("old %s removed", old.addr)
			if err != nil {
				what += ": " + err.Error()
			}
			events <- event{time.Now(), what}
		})
	}
	timers.Wait()
	var (
		exitMu   sync.Mutex
		lastExit time.Time
		watchers sync.WaitGroup
	)
	for _, old := range olds {
		watchers.Go(func() {
			<-old.p.Done() // closed at the latest when the test's cleanup kills it
			now := time.Now()
			exitMu.Lock()
			lastExit = now
			exitMu.Unlock()
			events <- event{now, fmt.Sprintf("old %s exited", old.addr)}
		})
	}
	for _, old := range olds {
		code := old.p.Wait(hold + drainTimeout + hang)
		if code != 0 {
			t.Errorf("old %s exit code %d, want 0; stderr:\n%s", old.addr, code, old.p.Stderr())
		}
		if !strings.Contains(old.p.Stderr(), "drained=true") {
			t.Errorf("old %s did not log drained=true:\n%s", old.addr, old.p.Stderr())
		}
	}
	// The new pool serves on its own, and every stream ticks on it.
	if !l.waitOK(l.ok.Load()+200, 20*time.Second) {
		t.Errorf("the new pool did not serve 200 RPCs within 20s")
	}
	watchers.Wait()
	if hold > 0 && !l.waitTicks(lastExit, 10*time.Second) {
		t.Errorf("not every stream was reopened on the new pool within 10s")
	}
	r := l.finish()

	close(events)
	var evs []event
	for e := range events {
		evs = append(evs, e)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	var tl strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&tl, "  +%dms %s\n", e.at.Sub(t0).Milliseconds(), e.what)
	}
	if p, ok := b.(*proxyBalancer); ok {
		pinned, refused := p.p.stats()
		fmt.Fprintf(&tl, "  proxy: connections pinned per endpoint %v, refused by the backend %d\n", pinned, refused)
	}
	t.Logf("%v\ntimeline (from the load's start):\n%s", r, tl.String())
	if len(r.first) > 0 {
		var fs strings.Builder
		for _, f := range r.first {
			fmt.Fprintf(&fs, "  %s\n", f.rel(t0))
		}
		t.Logf("first failures:\n%s", fs.String())
	}
	if hold > 0 && r.moved < channels {
		// Each channel's stream started on an old instance, whose drain
		// ended it: fewer means the drains were not exercised.
		t.Errorf("%d streams were ended by a drain and reopened, want at least %d (one per channel)", r.moved, channels)
	}
	return r
}
