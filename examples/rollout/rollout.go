package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"syscall"
	"time"
)

// step is the replacement of one backend, in time since the run started.
type step struct {
	ready   time.Duration // the replacement answered /readyz 200
	sigterm time.Duration // SIGTERM sent to the old backend
	delay   time.Duration // drawn delay of the endpoint removal
	removed time.Duration // the old endpoint left the balancer
	exited  time.Duration // the old process was reaped
	held    time.Duration // how long it held (lameduck, adaptive), from its log; 0 otherwise
	status  string        // how it ended: exit code or signal
}

// holdEnd is when the old backend's hold ended, if it held.
func (s step) holdEnd() (time.Duration, bool) { return s.sigterm + s.held, s.held > 0 }

// result is one run: one behaviour behind one balancer mode.
type result struct {
	behaviour, mode string
	outcomes        []outcome
	counts          [numKinds]int64
	steps           []step
	rollout         time.Duration // first replacement started → last step done
	total           time.Duration // the whole run, load included
	examples        map[int]string
}

func (r *result) requests() int64 { return int64(len(r.outcomes)) }
func (r *result) failed() int64   { return r.requests() - r.counts[kindOK] }

// runner runs the rollouts of a config.
type runner struct {
	cfg  config
	exe  string
	logs io.Writer // backends' stderr, or nil
	say  func(format string, args ...any)
}

// delays returns the removal delays of a run: the same for every run.
func (rn *runner) delays() []time.Duration {
	rng := rand.New(rand.NewPCG(rn.cfg.Seed, 0x5eed))
	out := make([]time.Duration, rn.cfg.Backends)
	for i := range out {
		out[i] = rn.cfg.DelayMin
		if span := rn.cfg.DelayMax - rn.cfg.DelayMin; span > 0 {
			out[i] += time.Duration(rng.Int64N(int64(span) + 1))
		}
	}
	return out
}

// run does one rolling restart of the whole pool under load. Every
// process it starts has been reaped when it returns.
func (rn *runner) run(ctx context.Context, behaviour, mode string) (*result, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, rn.cfg.RunTimeout,
		fmt.Errorf("rollout: the %s/%s run took longer than -run-timeout %v", behaviour, mode, rn.cfg.RunTimeout))
	defer cancel()
	sp := &spawner{exe: rn.exe, behaviour: behaviour, logs: rn.logs,
		args: []string{"-hold", rn.cfg.Hold.String(), "-drain-timeout", rn.cfg.DrainTimeout.String()}}
	if behaviour == behaviourAdaptive {
		sp.args = append(sp.args, "-hold-quiet", rn.cfg.HoldQuiet.String(), "-hold-max", rn.cfg.HoldMax.String())
	}
	lb, err := newBalancer(mode)
	if err != nil {
		return nil, err
	}
	defer lb.Close()

	var all []*backend
	defer func() { // on every path: no process outlives the run
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
		return b, b.waitReady(ctx, 10*time.Second)
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
	ld := startLoad(loadConfig{
		URL: lb.URL(), Workers: rn.cfg.Workers, Requests: rn.cfg.Requests,
		MSMin: rn.cfg.MSMin, MSMax: rn.cfg.MSMax, PostRatio: rn.cfg.PostRatio,
		NewConns: int(float64(rn.cfg.Workers)*rn.cfg.NewConnRatio + 0.5),
		Seed:     rn.cfg.Seed, ReqTimeout: rn.cfg.ReqTimeout, RefusedConn: lb.RefusedConn,
	}, t0)
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
		rn.say("  %s/%s: backend %d/%d: ready %v, SIGTERM %v, removed %v (delay %v), held %v, exited %v (%s)",
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

// replace replaces pool[i] the way a rolling update does: start the new
// backend, wait until it is ready and add its endpoint; then delete the
// old pod: SIGTERM to the process and, at the same moment, the endpoint
// removal that reaches the balancer only after delay. It returns when the
// old process has exited and its endpoint is gone.
func (rn *runner) replace(ctx context.Context, lb balancer, pool []*backend, i int, delay time.Duration,
	behaviour string, startReady func() (*backend, error), t0 time.Time,
) (step, error) {
	var st step
	nb, err := startReady()
	if err != nil {
		return st, err
	}
	lb.Endpoints().Add(nb.addr)
	st.ready = time.Since(t0)

	old := pool[i]
	pool[i] = nb
	st.delay = delay
	removed := lb.Endpoints().RemoveAfter(old.addr, delay)
	// Taken before the kill: a process killed by it may be reaped before
	// kill returns, and its exit must not come before its SIGTERM.
	st.sigterm = time.Since(t0)
	if err := old.signal(syscall.SIGTERM); err != nil {
		return st, fmt.Errorf("rollout: SIGTERM to backend %s: %w", old.addr, err)
	}

	// The kubelet's SIGKILL, in case the process outlives its budget.
	kill := time.NewTimer(rn.cfg.longestHold(behaviour) + rn.cfg.DrainTimeout + 5*time.Second)
	defer kill.Stop()
	exited := old.done
	for removed != nil || exited != nil {
		select {
		case at := <-removed:
			removed, st.removed = nil, at.Sub(t0) // a nil channel blocks: not selected again
		case <-exited:
			exited, st.exited = nil, old.exit.Sub(t0)
			st.status = old.exitStatus()
			st.held = old.held()
		case <-kill.C:
			rn.say("  backend %s outlived hold + drain timeout + 5s: SIGKILL", old.addr)
			_ = old.signal(syscall.SIGKILL)
		case <-ctx.Done():
			return st, context.Cause(ctx)
		}
	}
	return st, nil
}

// sleep waits for d or ctx, whichever ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// ms rounds d for printing.
func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
