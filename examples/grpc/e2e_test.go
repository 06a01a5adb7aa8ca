// End-to-end tests of the gRPC example: the real binary, real signals,
// the real grpc-health-probe and a Go client, on loopback.
package main_test

import (
	"context"
	"errors"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lameduck/lameduck/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

const (
	pkg         = "./examples/grpc"
	workMethod  = "/lameduck.demo.Demo/Work"
	ticksMethod = "/lameduck.demo.Demo/Ticks"

	exitDrained = 0
	exitForced  = 1
	exitUsage   = 2
	exitSignal  = 3
	exitFailure = 4

	// hang bounds waits that only a bug makes long.
	hang = 30 * time.Second
)

// grpc-health-probe's exit statuses.
const (
	probeServing    = 0
	probeRPCFailure = 3
	probeUnhealthy  = 4
)

// start runs the example on a kernel-chosen port and waits until it is
// ready; it returns the process and its address.
func start(t *testing.T, env []string, flags ...string) (*testutil.Process, string) {
	t.Helper()
	bin := testutil.BuildBinary(t, pkg)
	p := testutil.Start(t, bin, env, append([]string{"-addr", "127.0.0.1:0"}, flags...)...)
	addr := p.Addr(hang)
	p.WaitLog("lameduck: waiting for signals", hang) // a signal before this kills the process
	p.WaitLog("lameduck: serving", hang)             // a signal before this skips the hold
	return p, addr
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// work calls Work(ms) in a goroutine and delivers its result.
func work(conn *grpc.ClientConn, ms uint32) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		out := new(wrapperspb.StringValue)
		err := conn.Invoke(ctx, workMethod, wrapperspb.UInt32(ms), out)
		if err == nil && out.GetValue() != "ok" {
			err = errors.New("Work answered " + out.GetValue())
		}
		done <- err
	}()
	return done
}

// probeBinary finds grpc-health-probe on PATH or where go install puts
// it. Without it the test is skipped, except under CI=true.
func probeBinary(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"grpc-health-probe", "grpc_health_probe"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		if p := filepath.Join(build.Default.GOPATH, "bin", name); fileExists(p) {
			return p
		}
	}
	const msg = "grpc-health-probe not found on PATH nor in GOPATH/bin; install it with: go install github.com/grpc-ecosystem/grpc-health-probe@v0.4.62"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// probe runs grpc-health-probe against addr for service and returns its
// exit status and output.
func probe(t *testing.T, bin, addr, service string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hang)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-addr", addr, "-service", service,
		"-connect-timeout", "5s", "-rpc-timeout", "5s").CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("grpc-health-probe: %v\n%s", err, out)
	return -1, ""
}

// TestProbe: grpc-health-probe, the client the kubelet's native gRPC
// probe mirrors, sees SERVING before the signal and NOT_SERVING right
// after it, while liveness stays SERVING.
func TestProbe(t *testing.T) {
	t.Parallel()
	bin := probeBinary(t)
	const hold = 5 * time.Second
	p, addr := start(t, nil, "-hold", hold.String(), "-drain-timeout", "10s")
	for _, c := range []struct {
		service string
		want    int
	}{
		{"", probeServing},
		{"liveness", probeServing},
		{"lameduck.demo.Demo", probeServing},
		{"no.such.Service", probeRPCFailure}, // NOT_FOUND
	} {
		if got, out := probe(t, bin, addr, c.service); got != c.want {
			t.Errorf("before the signal: probe -service %q exited %d (%s), want %d", c.service, got, strings.TrimSpace(out), c.want)
		}
	}

	p.Signal(syscall.SIGTERM)
	signalled := time.Now()
	p.WaitLog("lameduck: holding", hang)
	for _, c := range []struct {
		service string
		want    int
	}{
		{"", probeUnhealthy},
		{"lameduck.demo.Demo", probeUnhealthy},
		{"liveness", probeServing},
	} {
		if got, out := probe(t, bin, addr, c.service); got != c.want {
			t.Errorf("in the hold: probe -service %q exited %d (%s), want %d", c.service, got, strings.TrimSpace(out), c.want)
		}
	}
	if time.Since(signalled) >= hold {
		t.Fatalf("the probes took %v, longer than the hold: too slow to prove anything", time.Since(signalled))
	}
	if code := p.Wait(hang); code != exitDrained {
		t.Errorf("exit code %d, want %d", code, exitDrained)
	}
}

// TestWatch: a Watch stream opened before the signal gets NOT_SERVING at
// once, then ends with UNAVAILABLE at the drain, and does not delay the
// exit: the process exits right after the hold, not at the drain timeout.
func TestWatch(t *testing.T) {
	t.Parallel()
	const hold, drainTimeout = time.Second, 20 * time.Second
	p, addr := start(t, nil, "-hold", hold.String(), "-drain-timeout", drainTimeout.String())
	conn := dial(t, addr)
	ctx, cancel := context.WithTimeout(t.Context(), hang)
	defer cancel()
	w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch before the signal = %v, %v; want SERVING", r.GetStatus(), err)
	}
	ticks, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, ticksMethod)
	if err != nil {
		t.Fatalf("Ticks: %v", err)
	}
	if err := ticks.SendMsg(wrapperspb.UInt32(50)); err != nil {
		t.Fatalf("Ticks send: %v", err)
	}
	if err := ticks.RecvMsg(new(wrapperspb.UInt32Value)); err != nil {
		t.Fatalf("first tick: %v", err)
	}

	p.Signal(syscall.SIGTERM)
	signalled := time.Now()
	r, err := w.Recv()
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after the signal = %v, %v; want NOT_SERVING", r.GetStatus(), err)
	}
	if d := time.Since(signalled); d >= hold {
		t.Errorf("NOT_SERVING arrived %v after the signal, not within the hold of %v", d, hold)
	}
	if _, err := w.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Watch at the drain ended with %v, want Unavailable", err)
	}
	for {
		err := ticks.RecvMsg(new(wrapperspb.UInt32Value))
		if err == nil {
			continue // ticks go on during the hold
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Ticks at the drain ended with %v, want Unavailable", err)
		}
		break
	}
	if code := p.Wait(hang); code != exitDrained {
		t.Fatalf("exit code %d, want %d", code, exitDrained)
	}
	// Neither stream held the drain: the exit follows the hold, far from
	// the 20 s drain timeout (the margin is for a loaded machine).
	if d := time.Since(signalled); d > hold+5*time.Second {
		t.Errorf("exited %v after the signal, want about the hold (%v)", d, hold)
	}
}

// TestInFlight: a unary RPC started before the signal, still running when
// the drain starts, completes OK, and the process exits 0 right after.
func TestInFlight(t *testing.T) {
	t.Parallel()
	p, addr := start(t, nil, "-hold", "1s", "-drain-timeout", "20s")
	conn := dial(t, addr)
	if err := within(t, "Work(0)", work(conn, 0)); err != nil {
		t.Fatalf("Work before the signal: %v", err)
	}
	inflight := work(conn, 2500) // across the 1 s hold and into the drain
	p.Signal(syscall.SIGTERM)
	if n := p.LogValue("lameduck: draining", "in_flight", hang); n != "1" {
		t.Fatalf("in flight at the drain: got %s, want 1", n)
	}
	if err := within(t, "in-flight Work", inflight); err != nil {
		t.Errorf("in-flight Work = %v, want OK", err)
	}
	done := time.Now()
	if code := p.Wait(hang); code != exitDrained {
		t.Fatalf("exit code %d, want %d", code, exitDrained)
	}
	// GracefulStop returns as soon as the RPC is done: far from the 20 s
	// drain timeout (the margin is for a loaded machine).
	if lag := time.Since(done); lag > 5*time.Second {
		t.Errorf("exited %v after the last RPC, want well under the drain timeout", lag)
	}
}

// TestStuck: an RPC that outlives the drain timeout makes the process
// exit 1 at the timeout, with the RPC reported abandoned.
func TestStuck(t *testing.T) {
	t.Parallel()
	p, addr := start(t, nil, "-hold", "1s", "-drain-timeout", "1s")
	conn := dial(t, addr)
	stuck := work(conn, 600_000) // reaches the server during the hold
	p.Signal(syscall.SIGTERM)
	signalled := time.Now()
	if n := p.LogValue("lameduck: draining", "in_flight", hang); n != "1" {
		t.Fatalf("in flight at the drain: got %s, want 1", n)
	}
	if code := p.Wait(hang); code != exitForced {
		t.Fatalf("exit code %d, want %d", code, exitForced)
	}
	if d := time.Since(signalled); d > 10*time.Second {
		t.Errorf("exited %v after the signal, want about the hold plus the 1 s drain timeout", d)
	}
	if err := within(t, "stuck Work", stuck); err == nil {
		t.Error("stuck Work succeeded, want an error")
	}
	if !strings.Contains(p.Stderr(), "abandoned=1") {
		t.Errorf("stderr does not report 1 abandoned RPC:\n%s", p.Stderr())
	}
}

// TestSecondSignal: a second signal during the hold exits promptly with
// the second-signal status.
func TestSecondSignal(t *testing.T) {
	t.Parallel()
	p, _ := start(t, nil, "-hold", "20s", "-drain-timeout", "5s")
	p.Signal(syscall.SIGTERM)
	p.WaitLog("lameduck: holding", hang)
	p.Signal(syscall.SIGINT)
	signalled := time.Now()
	if code := p.Wait(hang); code != exitSignal {
		t.Errorf("exit code %d, want %d", code, exitSignal)
	}
	if d := time.Since(signalled); d > 5*time.Second {
		t.Errorf("exited %v after the second signal, want promptly", d)
	}
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	bin := testutil.BuildBinary(t, pkg)
	cases := []struct {
		name, want string
		args       []string
	}{
		{"negative_hold", "-hold must not be negative", []string{"-hold", "-1s"}},
		{"zero_drain_timeout", "-drain-timeout must be positive", []string{"-drain-timeout", "0s"}},
		{"over_grace", "exceeds the grace period 30s", []string{"-hold", "20s", "-drain-timeout", "15s", "-grace", "30s"}},
		{"no_margin_left", "margin 2.6s", []string{"-hold", "10s", "-drain-timeout", "15s", "-grace", "26s"}},
		{"not_a_duration", "invalid value", []string{"-hold", "soon"}},
		{"unknown_flag", "not defined", []string{"-nope"}},
		{"hold_max_below_hold", "-hold-max 2s is shorter than -hold 3s", []string{"-hold", "3s", "-hold-max", "2s"}},
		{"zero_hold_quiet", "-hold-quiet must be positive", []string{"-hold", "1s", "-hold-max", "5s", "-hold-quiet", "0s"}},
		{"negative_hold_quiet", "-hold-quiet must be positive", []string{"-hold-quiet", "-1s"}},
		// The budget counts the hold's maximum: 1s would fit, 20s does not.
		{"hold_max_over_grace", "-hold-max, -drain-timeout and -grace: lameduck: hold 20s + drain timeout 15s + margin 3s = 38s exceeds the grace period 30s",
			[]string{"-hold", "1s", "-hold-max", "20s", "-drain-timeout", "15s", "-grace", "30s"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testutil.Start(t, bin, nil, append([]string{"-addr", "127.0.0.1:0"}, tc.args...)...)
			if code := p.Wait(hang); code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if !strings.Contains(p.Stderr(), tc.want) || strings.Contains(p.Stderr(), "msg=listening") {
				t.Errorf("stderr %q: want %q and no listening", p.Stderr(), tc.want)
			}
		})
	}
}

// TestFixedHold: without -hold-max the hold is fixed at -hold, whatever
// -hold says (the default of -hold-max follows it).
func TestFixedHold(t *testing.T) {
	t.Parallel()
	p, _ := start(t, nil, "-hold", "400ms", "-drain-timeout", "5s")
	p.Signal(syscall.SIGTERM)
	if why := p.LogValue("lameduck: hold ended", "ended_by", hang); why != "min" {
		t.Errorf("fixed hold ended_by=%s, want min", why)
	}
	if code := p.Wait(hang); code != exitDrained {
		t.Errorf("exit code %d, want %d", code, exitDrained)
	}
	if strings.Contains(p.Stderr(), "hold_max=") {
		t.Errorf("a fixed hold logged an adaptive one:\n%s", p.Stderr())
	}
}

// TestAdaptiveHold: with -hold-max above -hold and no RPCs, the hold ends
// after its minimum and -hold-quiet, far before -hold-max.
func TestAdaptiveHold(t *testing.T) {
	t.Parallel()
	const holdMax = 3 * time.Second
	p, _ := start(t, nil, "-hold", "100ms", "-hold-max", holdMax.String(), "-hold-quiet", "400ms", "-drain-timeout", "5s")
	p.Signal(syscall.SIGTERM)
	if why := p.LogValue("lameduck: hold ended", "ended_by", hang); why != "quiet" {
		t.Errorf("adaptive hold ended_by=%s, want quiet:\n%s", why, p.Stderr())
	}
	held, err := time.ParseDuration(p.LogValue("lameduck: hold ended", "held", hang))
	if err != nil || held < 400*time.Millisecond || held > holdMax/2 {
		t.Errorf("adaptive hold held %v (%v), want at least the 400ms quiet time (over the 100ms minimum) and well before -hold-max %v", held, err, holdMax)
	}
	if !strings.Contains(p.Stderr(), "hold_quiet=400ms hold_max=3s") {
		t.Errorf("the holding line lacks the adaptive hold's settings:\n%s", p.Stderr())
	}
	if code := p.Wait(hang); code != exitDrained {
		t.Errorf("exit code %d, want %d", code, exitDrained)
	}
}

// TestPortInUse: a second copy on the port of a running one exits 4 at
// once, saying why, and is never ready (issue 12: a listen error must not
// be swallowed); the first copy goes on serving.
func TestPortInUse(t *testing.T) {
	t.Parallel()
	first, addr := start(t, nil, "-hold", "0s", "-drain-timeout", "5s")
	second := testutil.Start(t, testutil.BuildBinary(t, pkg), nil, "-addr", addr, "-hold", "0s", "-drain-timeout", "5s")
	if code := second.Wait(hang); code != exitFailure {
		t.Errorf("second copy on %s: exit code %d, want %d", addr, code, exitFailure)
	}
	log := second.Stderr()
	if !strings.Contains(log, "address already in use") {
		t.Errorf("second copy's stderr lacks the listen error:\n%s", log)
	}
	for _, never := range []string{"lameduck: serving", "lameduck: waiting for signals", "msg=listening"} {
		if strings.Contains(log, never) {
			t.Errorf("second copy logged %q despite the port in use:\n%s", never, log)
		}
	}
	if err := within(t, "Work(0) on the first copy", work(dial(t, addr), 0)); err != nil {
		t.Errorf("first copy: Work = %v, want OK", err)
	}
	first.Signal(syscall.SIGTERM)
	if code := first.Wait(hang); code != exitDrained {
		t.Errorf("first copy: exit code %d, want %d", code, exitDrained)
	}
}

// TestReadyAfterSignals: the service becomes ready ("lameduck: serving")
// only after it listens and catches its signals, and the demo service,
// registered after grpcadapter.Listen, answers SERVING as soon as it is.
func TestReadyAfterSignals(t *testing.T) {
	t.Parallel()
	p, addr := start(t, nil, "-hold", "0s", "-drain-timeout", "5s")
	log := p.Stderr()
	listening := strings.Index(log, "msg=listening")
	signals := strings.Index(log, "lameduck: waiting for signals")
	serving := strings.Index(log, "lameduck: serving")
	if listening < 0 || signals < 0 || serving < 0 || !(listening < serving && signals < serving) {
		t.Errorf("log order: listening at %d, waiting for signals at %d, serving at %d; want serving last:\n%s",
			listening, signals, serving, log)
	}
	ctx, cancel := context.WithTimeout(t.Context(), hang)
	defer cancel()
	hc := healthpb.NewHealthClient(dial(t, addr))
	for _, service := range []string{"", "lameduck.demo.Demo", "liveness"} {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) once ready = %v, %v; want SERVING", service, r.GetStatus(), err)
		}
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(hang); code != exitDrained {
		t.Errorf("exit code %d, want %d", code, exitDrained)
	}
}

// TestAdmin: with -admin-addr, GET /prestop on the admin listener starts
// the shutdown of the gRPC service; it answers when the hold is over, and
// with nothing in flight the process then drains and exits 0 by itself.
// (examples/prestop_test.go checks that a SIGTERM during the drain joins
// the sequence.)
func TestAdmin(t *testing.T) {
	t.Parallel()
	const hold = time.Second
	p, addr := start(t, nil, "-admin-addr", "127.0.0.1:0", "-hold", hold.String(), "-drain-timeout", "5s")
	admin := "http://" + p.LogValue("admin listening", "admin_addr", hang)
	ctx, cancel := context.WithTimeout(t.Context(), hang)
	defer cancel()
	hc := healthpb.NewHealthClient(dial(t, addr))
	start := time.Now()
	r := testutil.Get(t, testutil.NewClient(t), admin+"/prestop")
	if r.Status != 200 || time.Since(start) < hold {
		t.Errorf("preStop = %d after %v, want 200 when the %v hold is over", r.Status, time.Since(start), hold)
	}
	if !strings.Contains(p.Stderr(), "trigger=prestop") {
		t.Errorf("log lacks trigger=prestop")
	}
	if res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
		t.Errorf("readiness after the preStop = SERVING, want NOT_SERVING or unavailable")
	}
	if code := p.Wait(hang); code != exitDrained {
		t.Errorf("exit code %d, want %d", code, exitDrained)
	}
	if n := strings.Count(p.Stderr(), "lameduck: holding"); n != 1 {
		t.Errorf("%d holds, want 1", n)
	}
}

// TestSpans: OTEL_TRACES_EXPORTER=console prints the shutdown spans to
// stdout before the exit.
func TestSpans(t *testing.T) {
	t.Parallel()
	p, _ := start(t, []string{"OTEL_TRACES_EXPORTER=console"}, "-hold", "0s", "-drain-timeout", "5s")
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(hang); code != exitDrained {
		t.Fatalf("exit code %d, want %d", code, exitDrained)
	}
	for _, name := range []string{`"lameduck.shutdown"`, `"lameduck.hold"`, `"lameduck.drain"`} {
		if !strings.Contains(p.Stdout(), name) {
			t.Errorf("stdout lacks span %s:\n%s", name, p.Stdout())
		}
	}
}

func within(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(hang):
		t.Fatalf("%s: no result within %v", what, hang)
		return nil
	}
}
