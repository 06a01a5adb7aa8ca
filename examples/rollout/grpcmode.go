package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/grpcadapter"
	"github.com/lameduck/lameduck/health"
)

// Protocols of -proto.
const (
	protoHTTP = "http"
	protoGRPC = "grpc"
)

// gRPC server behaviours on SIGTERM, in the order they are run with
// -proto grpc (exit and lameduck keep their names).
const behaviourGracefulStop = "gracefulstop" // grpc.Server.GracefulStop as soon as SIGTERM arrives

var allGRPCBehaviours = []string{behaviourExit, behaviourGracefulStop, behaviourLameduck}

// grpcBackendPrefix marks, in backendEnv, a gRPC backend: "grpc-exit".
const grpcBackendPrefix = "grpc-"

// The demo's gRPC service, written by hand so that no protoc step is
// needed (as examples/grpc does):
//
//	service lameduck.rollout.Demo {
//	  // Work waits the given milliseconds and answers "ok".
//	  rpc Work(google.protobuf.UInt32Value) returns (google.protobuf.StringValue);
//	}
const (
	grpcService    = "lameduck.rollout.Demo"
	grpcWorkMethod = "/" + grpcService + "/Work"
)

var grpcDesc = grpc.ServiceDesc{
	ServiceName: grpcService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Work",
		Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.UInt32Value)
			if err := dec(in); err != nil {
				return nil, err
			}
			if icpt == nil {
				return grpcWork(ctx, in)
			}
			info := &grpc.UnaryServerInfo{FullMethod: grpcWorkMethod}
			return icpt(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return grpcWork(ctx, req.(*wrapperspb.UInt32Value))
			})
		},
	}},
}

// grpcWork waits in.Value milliseconds and answers "ok".
func grpcWork(ctx context.Context, in *wrapperspb.UInt32Value) (*wrapperspb.StringValue, error) {
	if in.GetValue() > 3_600_000 {
		return nil, status.Errorf(codes.InvalidArgument, "ms must be at most 3600000, got %d", in.GetValue())
	}
	if d := time.Duration(in.GetValue()) * time.Millisecond; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return wrapperspb.String("ok"), nil
}

// grpcBackendMain is the life of one gRPC backend: it listens on
// 127.0.0.1:0, prints its address, serves the demo service and
// grpc.health.v1, and reacts to SIGTERM as the behaviour says.
func grpcBackendMain(behaviour string, hold, drain time.Duration, logger *slog.Logger) int {
	if behaviour == behaviourLameduck {
		return serveGRPCLameduck(logger, hold, drain)
	}
	if behaviour != behaviourExit && behaviour != behaviourGracefulStop {
		logger.Error("unknown behaviour")
		return backendUsage
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logger.Error("listen", "err", err)
		return backendFailure
	}
	srv := grpc.NewServer()
	srv.RegisterService(&grpcDesc, nil)
	hs := grpchealth.NewServer() // "" is SERVING until Shutdown
	healthpb.RegisterHealthServer(srv, hs)
	if behaviour == behaviourExit { // no handler: SIGTERM kills the process
		announce(ln)
		err := srv.Serve(ln)
		logger.Error("serve", "err", err)
		return backendFailure
	}
	// GracefulStop at SIGTERM: the common grpc-go pattern.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	announce(ln)
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		logger.Error("serve", "err", err)
		return backendFailure
	}
	logger.Info("SIGTERM: GracefulStop")
	hs.Shutdown()
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
		logger.Info("stopped")
		return backendDrained
	case <-time.After(drain):
		srv.Stop()
		logger.Error("GracefulStop timed out")
		return backendForced
	}
}

// serveGRPCLameduck serves with a core.Lifecycle and grpcadapter: at
// SIGTERM health turns NOT_SERVING, everything is served for the hold,
// then GracefulStop drains (at most the drain timeout).
func serveGRPCLameduck(logger *slog.Logger, hold, drain time.Duration) int {
	lc, err := core.New(core.WithHold(hold), core.WithDrainTimeout(drain), core.WithLogger(logger))
	if err != nil {
		logger.Error("lifecycle", "err", err)
		return backendUsage
	}
	h, err := health.New(lc, health.WithLogger(logger))
	if err != nil {
		logger.Error("health", "err", err)
		return backendUsage
	}
	srv, err := grpcadapter.Listen(lc, "127.0.0.1:0", h)
	if err != nil {
		logger.Error("listen", "err", err)
		return backendFailure
	}
	srv.RegisterService(&grpcDesc, nil)
	fmt.Println(srv.Addr.String()) // announce: the demo then polls grpc.health.v1
	return exitCode(lc.Run(context.Background()))
}

// waitReadyGRPC polls grpc.health.v1 Check("") until it answers SERVING.
func (b *backend) waitReadyGRPC(ctx context.Context, timeout time.Duration) error {
	cc, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rollout: gRPC backend %s not SERVING within %v", b.addr, timeout)
		}
		select {
		case <-tick.C:
		case <-b.done:
			return fmt.Errorf("rollout: gRPC backend %s exited before it was ready (%v)", b.addr, b.state)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Kinds of outcome of an RPC, in the counts of a -proto grpc result.
const (
	grpcKindOK          = iota
	grpcKindUnavailable // codes.Unavailable: no connection, or it broke
	grpcKindDeadline    // no answer within -request-timeout
	grpcKindOther       // any other code
	numGRPCKinds
)

var grpcKindNames = [numGRPCKinds]string{"ok", "Unavailable", "DeadlineExceeded", "other"}

// grpcLoadConfig is what the gRPC clients do; identical for every run.
type grpcLoadConfig struct {
	Target     string // host:port of the balancer
	Conns      int    // pick_first channels, shared by the workers
	Workers    int
	Rate       int   // RPCs per second, in all
	Requests   int64 // at most, in all
	MSMin      int
	MSMax      int
	Seed       uint64
	ReqTimeout time.Duration
}

// grpcLoad is a running gRPC load: workers sending paced unary Work RPCs
// over a few pick_first channels with grpc-go's defaults (no retry
// policy, no wait-for-ready), until stop.
type grpcLoad struct {
	cfg   grpcLoadConfig
	t0    time.Time
	conns []*grpc.ClientConn
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	sent  atomic.Int64
	mu    sync.Mutex
	outs  [][]outcome
	first map[int]string
}

func startGRPCLoad(cfg grpcLoadConfig, t0 time.Time) (*grpcLoad, error) {
	l := &grpcLoad{cfg: cfg, t0: t0, stop: make(chan struct{}), outs: make([][]outcome, cfg.Workers), first: map[int]string{}}
	for range cfg.Conns {
		// pick_first is the default: each channel stays on the one
		// backend the balancer gave its connection, until it breaks.
		cc, err := grpc.NewClient(cfg.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			l.closeConns()
			return nil, err
		}
		cc.Connect()
		l.conns = append(l.conns, cc)
	}
	for w := range cfg.Workers {
		l.wg.Go(func() { l.worker(w) })
	}
	return l, nil
}

func (l *grpcLoad) closeConns() {
	for _, cc := range l.conns {
		_ = cc.Close()
	}
}

// Stop stops the workers, lets the RPCs in flight finish, closes the
// channels and returns every outcome.
func (l *grpcLoad) Stop() []outcome {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.closeConns()
	var all []outcome
	for _, o := range l.outs {
		all = append(all, o...)
	}
	return all
}

// Examples returns one error text for each kind of failure seen.
func (l *grpcLoad) Examples() map[int]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[int]string, len(l.first))
	for k, v := range l.first {
		m[k] = v
	}
	return m
}

func (l *grpcLoad) worker(id int) {
	cc := l.conns[id%len(l.conns)]
	rng := rand.New(rand.NewPCG(l.cfg.Seed, uint64(id)+1))
	// Each worker sends Rate/Workers RPCs a second, starting at a
	// random phase; a slow RPC delays the next one, no more.
	every := time.Duration(float64(time.Second) * float64(l.cfg.Workers) / float64(l.cfg.Rate))
	next := time.Now().Add(time.Duration(rng.Int64N(int64(every) + 1)))
	for {
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-l.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		select {
		case <-l.stop:
			return
		default:
		}
		if l.sent.Add(1) > l.cfg.Requests {
			return
		}
		next = next.Add(every)
		if now := time.Now(); next.Before(now) {
			next = now
		}
		ms := l.cfg.MSMin + rng.IntN(l.cfg.MSMax-l.cfg.MSMin+1)
		l.outs[id] = append(l.outs[id], l.one(cc, ms))
	}
}

// one sends one Work RPC. A request in flight when the load stops is
// finished, not cancelled.
func (l *grpcLoad) one(cc *grpc.ClientConn, ms int) outcome {
	o := outcome{start: time.Since(l.t0)}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.ReqTimeout)
	defer cancel()
	out := new(wrapperspb.StringValue)
	err := cc.Invoke(ctx, grpcWorkMethod, wrapperspb.UInt32(uint32(ms)), out)
	var detail string
	switch code := status.Code(err); {
	case err == nil && out.GetValue() == "ok":
		o.kind = grpcKindOK
	case err == nil:
		o.kind, detail = grpcKindOther, fmt.Sprintf("answer %q", out.GetValue())
	case code == codes.Unavailable:
		o.kind, detail = grpcKindUnavailable, err.Error()
	case code == codes.DeadlineExceeded:
		o.kind, detail = grpcKindDeadline, err.Error()
	default:
		o.kind, detail = grpcKindOther, err.Error()
	}
	o.end = time.Since(l.t0)
	if o.kind != grpcKindOK {
		l.mu.Lock()
		if _, ok := l.first[int(o.kind)]; !ok {
			l.first[int(o.kind)] = detail
		}
		l.mu.Unlock()
	}
	return o
}

// runGRPC does one rolling restart of a pool of gRPC backends behind the
// L4 balancer under paced unary load, as run does for HTTP.
func (rn *runner) runGRPC(ctx context.Context, behaviour string) (*result, error) {
	mode := modeL4
	ctx, cancel := context.WithTimeoutCause(ctx, rn.cfg.RunTimeout,
		fmt.Errorf("rollout: the gRPC %s run took longer than -run-timeout %v", behaviour, rn.cfg.RunTimeout))
	defer cancel()
	sp := &spawner{exe: rn.exe, behaviour: grpcBackendPrefix + behaviour, logs: rn.logs,
		args: []string{"-hold", rn.cfg.Hold.String(), "-drain-timeout", rn.cfg.DrainTimeout.String()}}
	lb, err := newL4()
	if err != nil {
		return nil, err
	}
	defer lb.Close()

	var all []*backend
	defer func() {
		for _, b := range all {
			b.kill()
		}
	}()
	startReady := func() (*backend, error) {
		b, err := sp.start(ctx)
		if err != nil {
			return nil, err
		}
		all = append(all, b)
		return b, b.waitReadyGRPC(ctx, 10*time.Second)
	}
	pool := make([]*backend, rn.cfg.Backends)
	for i := range pool {
		if pool[i], err = startReady(); err != nil {
			return nil, err
		}
		lb.Endpoints().Add(pool[i].addr)
	}

	res := &result{behaviour: behaviour, mode: mode}
	t0 := time.Now()
	ld, err := startGRPCLoad(grpcLoadConfig{
		Target: lb.ln.Addr().String(), Conns: rn.cfg.GRPCConns, Workers: rn.cfg.Workers, Rate: rn.cfg.Rate,
		Requests: rn.cfg.Requests, MSMin: rn.cfg.MSMin, MSMax: rn.cfg.MSMax, Seed: rn.cfg.Seed, ReqTimeout: rn.cfg.ReqTimeout,
	}, t0)
	if err != nil {
		return nil, err
	}
	stopLoad := func() {
		res.outcomes = ld.Stop()
		res.examples = ld.Examples()
	}
	if err := sleep(ctx, rn.cfg.Settle); err != nil {
		stopLoad()
		return nil, err
	}
	rollStart := time.Now()
	for i, delay := range rn.delays() {
		st, err := rn.replace(ctx, lb, pool, i, delay, behaviour, startReady, t0)
		if err != nil {
			stopLoad()
			return nil, err
		}
		rn.say("  grpc %s/%s: backend %d/%d: ready %v, SIGTERM %v, removed %v (delay %v), held %v, exited %v (%s)",
			behaviour, mode, i+1, len(pool), ms(st.ready), ms(st.sigterm), ms(st.removed), ms(st.delay), ms(st.held), ms(st.exited), st.status)
		res.steps = append(res.steps, st)
	}
	res.rollout = time.Since(rollStart)
	err = sleep(ctx, rn.cfg.Settle)
	stopLoad()
	res.total = time.Since(t0)
	if err != nil {
		return nil, err
	}
	for _, o := range res.outcomes {
		res.counts[o.kind]++
	}
	return res, nil
}

// runAllGRPC runs every gRPC behaviour behind the L4 balancer.
func runAllGRPC(ctx context.Context, rn *runner, stdout io.Writer) ([]*result, error) {
	var results []*result
	for _, b := range rn.cfg.Behaviours {
		fmt.Fprintf(stdout, "  %-12s gRPC behind L4 ... ", b)
		res, err := rn.runGRPC(ctx, b)
		if err != nil {
			fmt.Fprintln(stdout, "failed")
			return results, err
		}
		fmt.Fprintf(stdout, "%d RPCs, %d failed\n", res.requests(), res.failed())
		results = append(results, res)
	}
	return results, nil
}

func printIntroGRPC(w io.Writer, c config) {
	fmt.Fprintf(w, "Rolling restart of %d gRPC backends under load (%d workers, %d RPC/s in all, over %d pick_first channels\n"+
		"through the L4 balancer; unary Work(%d-%d ms); grpc-go client defaults: no retry policy, no wait-for-ready).\n",
		c.Backends, c.Workers, c.Rate, c.GRPCConns, c.MSMin, c.MSMax)
	fmt.Fprintf(w, "Endpoint removal lands %v-%v after SIGTERM; lameduck holds %v (health NOT_SERVING), then GracefulStop;\n"+
		"drains for at most %v; seed %d.\n", c.DelayMin, c.DelayMax, c.Hold, c.DrainTimeout, c.Seed)
	if c.DelayMax >= c.Hold {
		fmt.Fprintf(w, "Note: -delay-max %v is not shorter than -hold %v: a channel that reconnects after lameduck's GOAWAY may\n"+
			"be sent back to the old backend, whose listener is closed, and its RPCs fail.\n", c.DelayMax, c.Hold)
	}
}

// printTableGRPC prints one line per gRPC run, then what the columns mean.
func printTableGRPC(w io.Writer, results []*result) {
	head := []string{"behaviour", "LB", "RPCs", "ok", "failed"}
	for k := grpcKindOK + 1; k < numGRPCKinds; k++ {
		head = append(head, grpcKindNames[k])
	}
	head = append(head, "holds", "rollout", "per backend", "old exit")
	rows := [][]string{head}
	for _, r := range results {
		row := []string{r.behaviour, strings.ToUpper(r.mode), fmt.Sprint(r.requests()), fmt.Sprint(r.counts[grpcKindOK]), fmt.Sprint(r.failed())}
		for k := grpcKindOK + 1; k < numGRPCKinds; k++ {
			row = append(row, fmt.Sprint(r.counts[k]))
		}
		var statuses, holds []string
		for _, s := range r.steps {
			statuses = append(statuses, s.status)
			if s.held > 0 {
				holds = append(holds, fmt.Sprintf("%.1f", s.held.Seconds()))
			}
		}
		if len(holds) == 0 {
			holds = []string{"-"}
		}
		per := time.Duration(0)
		if len(r.steps) > 0 {
			per = r.rollout / time.Duration(len(r.steps))
		}
		row = append(row, strings.Join(holds, " "), fmt.Sprintf("%.1fs", r.rollout.Seconds()), fmt.Sprintf("%.1fs", per.Seconds()),
			strings.Join(statuses, " "))
		rows = append(rows, row)
	}
	printColumns(w, rows)

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Unavailable: the channel's connection broke under the RPC (killed process), or the channel could not connect")
	fmt.Fprintln(w, "  (the balancer sent it to a backend that no longer listens) and the RPC, without wait-for-ready, failed fast.")
	fmt.Fprintln(w, "holds: how long each replaced backend held, in seconds (from its log line \"lameduck: hold ended held=…\").")
	fmt.Fprintln(w, "rollout: from the first replacement's start until the last old process had exited and its endpoint was removed.")
	fmt.Fprintln(w, "old exit: how each replaced process ended (TERM: killed by the signal).")
	var shown bool
	for _, r := range results {
		for k := grpcKindOK + 1; k < numGRPCKinds; k++ {
			if ex, ok := r.examples[k]; ok {
				if !shown {
					fmt.Fprintln(w, "\nFirst failure of each kind:")
					shown = true
				}
				fmt.Fprintf(w, "  %s/%s %s: %s\n", r.behaviour, strings.ToUpper(r.mode), grpcKindNames[k], truncate(ex, 110))
			}
		}
	}
}
