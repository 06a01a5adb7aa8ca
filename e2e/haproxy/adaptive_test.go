package haproxy_test

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/testutil"
)

// The adaptive hold's rolling restarts (issue 15): examples/chi behind
// HAProxy in L4 mode, whose endpoint removal lands 0.3-4 s after SIGTERM,
// longer than the minimum hold of 1 s.
const (
	adaptivePool     = 2 // instances behind the balancer
	adaptiveRestarts = 3 // times the pool is replaced
	adaptiveDrain    = 5 * time.Second
	adaptiveGrace    = 20 * time.Second // ≥ hold max 8s + drain 5s + margin 2s
	removalMin       = 300 * time.Millisecond
	removalMax       = 4 * time.Second
	// The load: 16 clients, each starting a request every 40ms, about
	// 400 requests a second; half open a new connection per request.
	adaptiveWorkers  = 16
	adaptiveInterval = 40 * time.Millisecond
	// How close to the balancer's convergence the adaptive hold must end:
	// within quiet + holdSlack of the moment the old instance went into
	// maintenance.
	holdSlack = 500 * time.Millisecond
)

// holdVariant is one way of running examples/chi.
type holdVariant struct {
	name    string
	hold    time.Duration // -hold: the hold, or the adaptive hold's minimum
	holdMax time.Duration // -hold-max; 0: not passed, a fixed hold
	quiet   time.Duration // -hold-quiet, with holdMax
	runs    int
}

func (v holdVariant) adaptive() bool { return v.holdMax > 0 }

func (v holdVariant) longest() time.Duration { return max(v.hold, v.holdMax) }

func (v holdVariant) args() []string {
	args := []string{"-addr", "127.0.0.1:0", "-hold", v.hold.String(),
		"-drain-timeout", adaptiveDrain.String(), "-grace", adaptiveGrace.String()}
	if v.adaptive() {
		args = append(args, "-hold-max", v.holdMax.String(), "-hold-quiet", v.quiet.String())
	}
	return args
}

func (v holdVariant) String() string {
	if v.adaptive() {
		return fmt.Sprintf("-hold %v -hold-max %v -hold-quiet %v", v.hold, v.holdMax, v.quiet)
	}
	return fmt.Sprintf("-hold %v", v.hold)
}

// holdStep is the replacement of one instance.
type holdStep struct {
	slot      string
	delay     time.Duration // drawn delay of the removal
	start     time.Time     // the replacement was started
	sigterm   time.Time     // SIGTERM sent to the old instance
	maintFrom time.Time     // "set server … state maint" sent
	maintAt   time.Time     // … and answered: haproxy routes no new connection to it
	exited    time.Time
	end       time.Time     // exited and removed
	held      time.Duration // the hold, from the instance's "hold ended" line
	endedBy   string
	lastNew   string // last_new_traffic_before_end
}

// holdEnd is when the hold ended, give or take the signal's delivery.
func (s holdStep) holdEnd() time.Time { return s.sigterm.Add(s.held) }

// afterMaint is how long after the balancer stopped routing to the old
// instance its hold ended (negative: before).
func (s holdStep) afterMaint() time.Duration { return s.holdEnd().Sub(s.maintAt) }

// holdRun is one rolling restart of one variant.
type holdRun struct {
	variant holdVariant
	run     int
	load    mixedResult
	steps   []holdStep
	rollout time.Duration // first replacement started → last old instance exited and removed
}

func (r holdRun) holds() time.Duration {
	var sum time.Duration
	for _, s := range r.steps {
		sum += s.held
	}
	return sum
}

func (r holdRun) name() string {
	if r.variant.runs > 1 {
		return fmt.Sprintf("%s/run%d", r.variant.name, r.run+1)
	}
	return r.variant.name
}

// removalDelays draws the removal delay of every step from [removalMin,
// removalMax): stratified, one in each of n equal parts of the range in
// a random order, so that every run covers the whole range and the runs'
// sums, which the comparison of the holds rests on, differ little.
func removalDelays(seed uint64, n int) []time.Duration {
	rng := rand.New(rand.NewPCG(seed, 0xde1a7))
	span := float64(removalMax - removalMin)
	out := make([]time.Duration, n)
	for i, part := range rng.Perm(n) {
		out[i] = removalMin + time.Duration((float64(part)+rng.Float64())/float64(n)*span)
	}
	return out
}

// TestAdaptiveHold is issue 15's end-to-end proof: rolling restarts of
// examples/chi behind HAProxy in L4 mode, endpoint removal 0.3-4 s after
// SIGTERM, under a load where half of the clients open a new connection
// per request and half keep theirs alive.
//
//   - -hold 1s, a fixed hold shorter than most removals, must lose
//     requests: the control, which shows the test can fail;
//   - -hold 1s -hold-max 8s -hold-quiet 500ms must lose none, in every
//     run, and each hold must end within quiet + 500ms of the moment the
//     balancer stopped routing to the old instance;
//   - -hold 5s, a fixed hold longer than every removal, must lose none.
//
// The adaptive holds must add up to at least 40% less than the fixed 5s
// ones, and the adaptive rollout must be at least 25% shorter. The
// adaptive variant runs three times (the first with the controls'
// removal delays, the others with delays of their own), the controls
// once: three runs of everything do not fit the test's time budget.
func TestAdaptiveHold(t *testing.T) {
	testutil.HAProxyPath(t)
	s := seed(t)
	t.Logf("seed %d (replay with LAMEDUCK_SEED=%d)", s, s)
	bin := testutil.BuildBinary(t, "./examples/chi") // before the clocks start
	requireHoldFlags(t, bin)

	fixed1 := holdVariant{name: "fixed_1s", hold: time.Second, runs: 1}
	fixed5 := holdVariant{name: "fixed_5s", hold: 5 * time.Second, runs: 1}
	adaptive := holdVariant{name: "adaptive", hold: time.Second, holdMax: 8 * time.Second, quiet: 500 * time.Millisecond, runs: 3}

	testStart := time.Now()
	var runs []holdRun
	for _, v := range []holdVariant{fixed1, fixed5, adaptive} {
		for i := range v.runs {
			name := v.name
			if v.runs > 1 {
				name = fmt.Sprintf("%s/run%d", v.name, i+1)
			}
			t.Run(name, func(t *testing.T) {
				r := adaptiveRollout(t, bin, v, i, s+uint64(i))
				runs = append(runs, r)
				checkHoldRun(t, r)
			})
		}
	}

	var fixed *holdRun
	for i := range runs {
		if runs[i].variant.name == fixed5.name {
			fixed = &runs[i]
		}
	}
	var summary strings.Builder
	fmt.Fprintf(&summary, "%-14s %-9s %-44s %8s %8s\n", "variant", "failed", "holds per step", "holds", "rollout")
	for _, r := range runs {
		var holds []string
		for _, st := range r.steps {
			holds = append(holds, fmt.Sprintf("%.2f", st.held.Seconds()))
		}
		fmt.Fprintf(&summary, "%-14s %-9s %-44s %7.2fs %7.2fs\n", r.name(), fmt.Sprintf("%d/%d", r.load.Failed, r.load.Requests),
			strings.Join(holds, " "), r.holds().Seconds(), r.rollout.Seconds())
	}
	for _, r := range runs {
		if r.variant.name != adaptive.name || fixed == nil || fixed.holds() == 0 || fixed.rollout == 0 {
			continue
		}
		holdCut := 1 - r.holds().Seconds()/fixed.holds().Seconds()
		rolloutCut := 1 - r.rollout.Seconds()/fixed.rollout.Seconds()
		fmt.Fprintf(&summary, "%s vs %s: holds %.1f%% less (want ≥ 40%%), rollout %.1f%% shorter (want ≥ 25%%)\n",
			r.name(), fixed.name(), 100*holdCut, 100*rolloutCut)
		if holdCut < 0.40 {
			t.Errorf("%s: the adaptive holds add up to %v, only %.1f%% less than the fixed ones' %v, want at least 40%%",
				r.name(), r.holds(), 100*holdCut, fixed.holds())
		}
		if rolloutCut < 0.25 {
			t.Errorf("%s: the adaptive rollout took %v, only %.1f%% less than the fixed one's %v, want at least 25%%",
				r.name(), r.rollout.Round(time.Millisecond), 100*rolloutCut, fixed.rollout.Round(time.Millisecond))
		}
	}
	if fixed == nil && !t.Failed() {
		t.Error("no fixed 5s run to compare the adaptive ones with")
	}
	t.Logf("summary (test took %v):\n%s", time.Since(testStart).Round(time.Second), summary.String())
}

// requireHoldFlags fails the test if the example lacks the flags of the
// adaptive hold (issue 15's example contract).
func requireHoldFlags(t *testing.T, bin string) {
	t.Helper()
	out, _ := exec.Command(bin, "-h").CombinedOutput() // -h exits 0 or 2, whatever the flags
	for _, f := range []string{"-hold-max", "-hold-quiet"} {
		if !strings.Contains(string(out), f) {
			t.Fatalf("examples/chi has no %s flag (issue 15's example contract); its usage:\n%s", f, out)
		}
	}
}

// checkHoldRun checks what every run of a variant must show.
func checkHoldRun(t *testing.T, r holdRun) {
	t.Helper()
	v := r.variant
	switch {
	case v.name == "fixed_1s":
		if r.load.Failed == 0 {
			t.Errorf("the control (%v) lost no request out of %d: the test cannot see failures", v, r.load.Requests)
		}
	case r.load.Failed != 0:
		t.Errorf("%v: %d of %d requests failed during the rolling restart, want 0", v, r.load.Failed, r.load.Requests)
	}
	if !v.adaptive() {
		return
	}
	for i, st := range r.steps {
		bound := v.quiet + holdSlack
		switch after := st.afterMaint(); {
		case st.holdEnd().Before(st.maintFrom):
			t.Errorf("step %d (%s): the hold ended (%v after SIGTERM, by %s) %v before the balancer stopped routing to the instance (%v after SIGTERM)",
				i+1, st.slot, st.held, st.endedBy, st.maintFrom.Sub(st.holdEnd()).Round(time.Millisecond), st.maintFrom.Sub(st.sigterm).Round(time.Millisecond))
		case after > bound:
			t.Errorf("step %d (%s): the hold ended %v after the balancer stopped routing to the instance (held %v, by %s, last new traffic %s before its end), want within quiet + %v = %v",
				i+1, st.slot, after.Round(time.Millisecond), st.held, st.endedBy, st.lastNew, holdSlack, bound)
		}
		if st.endedBy == "max" {
			t.Errorf("step %d (%s): the hold ran to its maximum %v", i+1, st.slot, v.holdMax)
		}
	}
}

// adaptiveRollout replaces the pool adaptiveRestarts times under the
// mixed load, one instance at a time: start the new one and register it,
// then SIGTERM the old one and put it in maintenance after the step's
// delay; the next step begins once the old one has exited and is out.
func adaptiveRollout(t *testing.T, bin string, v holdVariant, run int, seed uint64) holdRun {
	nSteps := adaptivePool * adaptiveRestarts
	h := testutil.StartHAProxy(t, testutil.HAProxyConfig{Mode: testutil.HAProxyTCP, Slots: adaptivePool + nSteps})
	delays := removalDelays(seed, nSteps)

	startOne := func() instance {
		t.Helper()
		// A binary built with -race sleeps 1s in os.Exit by default
		// (atexit_sleep_ms): that second is not the shutdown's.
		p := testutil.Start(t, bin, []string{"GORACE=atexit_sleep_ms=0"}, v.args()...)
		addr := p.Addr(30 * time.Second)
		p.WaitLog("lameduck: serving", 10*time.Second)
		slot, err := h.AddServer(addr, 10*time.Second)
		if err != nil {
			t.Fatalf("registering %s: %v\nhaproxy:\n%s", addr, err, h.Stderr())
		}
		return instance{p: p, addr: addr, slot: slot}
	}
	pool := make([]instance, adaptivePool)
	for i := range pool {
		pool[i] = startOne()
	}

	load := startMixedLoad(mixedLoadConfig{URL: h.URL, Workers: adaptiveWorkers, Interval: adaptiveInterval,
		Seed: seed, MaxDuration: 90 * time.Second})
	t.Cleanup(func() { load.Stop() })
	t0 := time.Now()
	if !load.waitOK(300, 20*time.Second) {
		t.Fatalf("warm-up: %v", load.Stop())
	}
	if r := load.snapshot(); r.Failed != 0 {
		t.Fatalf("failures before the rolling restart: %v\n%s", r, mixedFailures(r, t0))
	}

	res := holdRun{variant: v, run: run}
	type removal struct {
		from, at time.Time
		err      error
	}
	for i := range nSteps {
		st := holdStep{start: time.Now(), delay: delays[i]}
		n := startOne()
		old := pool[i%adaptivePool]
		pool[i%adaptivePool] = n
		st.slot = old.slot
		removed := make(chan removal, 1)
		st.sigterm = time.Now()
		old.p.Signal(syscall.SIGTERM)
		timer := time.AfterFunc(st.delay, func() {
			from := time.Now()
			err := h.RemoveServer(old.slot)
			removed <- removal{from: from, at: time.Now(), err: err}
		})
		code := old.p.Wait(v.longest() + adaptiveDrain + 10*time.Second)
		st.exited = time.Now()
		select {
		case rm := <-removed:
			if rm.err != nil {
				t.Fatalf("removing %s: %v", old.slot, rm.err)
			}
			st.maintFrom, st.maintAt = rm.from, rm.at
		case <-time.After(removalMax + 10*time.Second):
			timer.Stop()
			t.Fatalf("%s: not removed from haproxy within %v of its delay %v", old.slot, removalMax+10*time.Second, st.delay)
		}
		st.end = time.Now()
		stderr := old.p.Stderr()
		if code != 0 {
			t.Errorf("%s (%s) exit code %d, want 0", old.slot, old.addr, code)
		}
		if !strings.Contains(stderr, "drained=true") {
			t.Errorf("%s (%s) did not log drained=true:\n%s", old.slot, old.addr, stderr)
		}
		ended := logFields(stderr, "lameduck: hold ended")
		held, err := time.ParseDuration(ended["held"])
		if err != nil {
			t.Fatalf("%s: no held= in its \"hold ended\" line (%v):\n%s", old.slot, err, stderr)
		}
		st.held, st.endedBy, st.lastNew = held, ended["ended_by"], ended["last_new_traffic_before_end"]
		if v.adaptive() {
			holding := logFields(stderr, "lameduck: holding")
			if holding["hold_max"] != v.holdMax.String() || holding["hold_quiet"] != v.quiet.String() {
				t.Errorf("%s: the holding line says hold_max=%s hold_quiet=%s, want %v and %v: the adaptive hold is not on",
					old.slot, holding["hold_max"], holding["hold_quiet"], v.holdMax, v.quiet)
			}
		}
		res.steps = append(res.steps, st)
	}
	res.rollout = res.steps[len(res.steps)-1].end.Sub(res.steps[0].start)

	// The new pool serves on its own for a while.
	after := load.snapshot().OK + 300
	if !load.waitOK(after, 20*time.Second) {
		t.Errorf("the new pool did not serve 300 requests within 20s")
	}
	res.load = load.Stop()
	if res.load.Closing == 0 {
		t.Errorf("no response had Connection: close: the keep-alive clients' connections to the old instances were not exercised")
	}

	var steps strings.Builder
	fmt.Fprintf(&steps, "  step slot   start→SIGTERM  removal  maint   held   ended_by  last_new  hold end−maint  exited  step\n")
	for i, st := range res.steps {
		fmt.Fprintf(&steps, "  %4d %-5s %13s %8s %6s %6s %9s %9s %15s %7s %5s\n", i+1, st.slot,
			secs(st.sigterm.Sub(st.start)), secs(st.delay), secs(st.maintAt.Sub(st.sigterm)), secs(st.held), st.endedBy,
			st.lastNew, secs(st.afterMaint()), secs(st.exited.Sub(st.sigterm)), secs(st.end.Sub(st.start)))
	}
	t.Logf("%v (%s): %v\nholds %v in all, rollout %v (times after SIGTERM unless said):\n%s", v.name, v, res.load,
		res.holds(), res.rollout.Round(time.Millisecond), steps.String())
	if res.load.Failed > 0 {
		t.Logf("%s", mixedFailures(res.load, t0))
	}
	return res
}

// logFields returns the key=value fields of the last stderr line that
// contains marker.
func logFields(stderr, marker string) map[string]string {
	fields := map[string]string{}
	lines := strings.Split(stderr, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], marker) {
			continue
		}
		for _, f := range strings.Fields(lines[i]) {
			if k, v, ok := strings.Cut(f, "="); ok {
				fields[k] = strings.Trim(v, `"`)
			}
		}
		break
	}
	return fields
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

func mixedFailures(r mixedResult, t0 time.Time) string {
	var s strings.Builder
	fmt.Fprintf(&s, "first failures (times from the load's start):\n")
	for _, f := range r.First {
		conn := "keep-alive"
		if f.NewConn {
			conn = "new-conn"
		}
		fmt.Fprintf(&s, "  sent %s failed %s: %s worker=%d (%s) %s: %s\n", rel(f.Start, t0), rel(f.At, t0), f.Kind, f.Worker, conn, f.Method, f.Detail)
	}
	return s.String()
}
