// Package examples_test checks the example contract (DESIGN.md section 5)
// against every HTTP example binary: real processes, real signals, real
// clients on loopback.
package examples_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// httpExamples are the binaries that must behave identically.
var httpExamples = []struct{ name, pkg string }{
	{"chi", "./examples/chi"},
	{"gin", "./examples/gin"},
}

// Exit codes of the contract.
const (
	exitDrained = 0
	exitForced  = 1
	exitUsage   = 2
	exitFailure = 4
)

// startExample runs the example with flags on a kernel-chosen port, waits
// until it is ready and returns it with its base URL.
func startExample(t *testing.T, pkg string, env []string, flags ...string) (*testutil.Process, string) {
	t.Helper()
	bin := testutil.BuildBinary(t, pkg)
	p := testutil.Start(t, bin, env, append([]string{"-addr", "127.0.0.1:0"}, flags...)...)
	base := "http://" + p.Addr(30*time.Second)
	p.WaitLog("lameduck: serving", 10*time.Second)
	p.WaitLog("lameduck: waiting for signals", 10*time.Second)
	return p, base
}

func TestContract(t *testing.T) {
	for _, ex := range httpExamples {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			testutil.BuildBinary(t, ex.pkg) // once, before the subtests race for it
			t.Run("routes", func(t *testing.T) { t.Parallel(); testRoutes(t, ex.pkg) })
			t.Run("sigterm_drains_and_exits_0", func(t *testing.T) { t.Parallel(); testDrain(t, ex.pkg, syscall.SIGTERM) })
			t.Run("sigint_drains_and_exits_0", func(t *testing.T) { t.Parallel(); testDrain(t, ex.pkg, syscall.SIGINT) })
			t.Run("stuck_request_exits_1", func(t *testing.T) { t.Parallel(); testStuck(t, ex.pkg) })
			t.Run("second_signal_exits_promptly", func(t *testing.T) { t.Parallel(); testSecondSignal(t, ex.pkg) })
			t.Run("bad_flags", func(t *testing.T) { t.Parallel(); testBadFlags(t, ex.pkg) })
			t.Run("port_in_use_exits_4_unready", func(t *testing.T) { t.Parallel(); testPortInUse(t, ex.pkg) })
			t.Run("ready_after_signals", func(t *testing.T) { t.Parallel(); testReadyAfterSignals(t, ex.pkg) })
			t.Run("otel_console_spans", func(t *testing.T) { t.Parallel(); testSpans(t, ex.pkg) })
			t.Run("h2c_and_http1_on_addr", func(t *testing.T) { t.Parallel(); testH2C(t, ex.pkg) })
			t.Run("fixed_hold_follows_hold", func(t *testing.T) { t.Parallel(); testFixedHold(t, ex.pkg) })
			t.Run("adaptive_hold_ends_quiet", func(t *testing.T) { t.Parallel(); testAdaptiveHold(t, ex.pkg) })
		})
	}
}

func testRoutes(t *testing.T, pkg string) {
	p, base := startExample(t, pkg, nil, "-hold", "0s", "-drain-timeout", "5s")
	c := testutil.NewClient(t)
	cases := []struct {
		name, method, path string
		status             int
		body               string
	}{
		{"healthz", "GET", "/healthz", 200, "ok"},
		{"livez", "GET", "/livez", 200, "ok"},
		{"readyz", "GET", "/readyz", 200, "ok"},
		{"readyz_verbose", "GET", "/readyz?verbose", 200, "[+]shutdown ok"},
		{"readyz_shutdown", "GET", "/readyz/shutdown", 200, "ok"},
		{"work_get", "GET", "/work?ms=5", 200, "ok"},
		{"work_post", "POST", "/work?ms=0", 200, "ok"},
		{"work_missing_ms", "GET", "/work", 400, ""},
		{"work_bad_ms", "GET", "/work?ms=abc", 400, ""},
		{"work_negative_ms", "POST", "/work?ms=-1", 400, ""},
		{"work_put", "PUT", "/work?ms=1", 405, ""},
	}
	for _, tc := range cases {
		r := testutil.Do(c, tc.method, base+tc.path)
		if r.Err != nil {
			t.Fatalf("%s: %v", tc.name, r.Err)
		}
		if r.Status != tc.status || !strings.Contains(r.Body, tc.body) {
			t.Errorf("%s: %s %s = %d %q, want %d containing %q", tc.name, tc.method, tc.path, r.Status, r.Body, tc.status, tc.body)
		}
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(20 * time.Second); code != exitDrained {
		t.Errorf("exit code %d, want %d", code, exitDrained)
	}
}

// testDrain walks the whole sequence: readiness flips at once, the hold
// serves with Connection: close, an in-flight request completes and the
// process exits 0 right after it.
func testDrain(t *testing.T, pkg string, sig syscall.Signal) {
	const hold = 1500 * time.Millisecond
	p, base := startExample(t, pkg, nil, "-hold", hold.String(), "-drain-timeout", "20s")
	c := testutil.NewClient(t)
	if r := testutil.Get(t, c, base+"/readyz"); r.Status != 200 {
		t.Fatalf("readyz before signal = %d, want 200", r.Status)
	}
	// In flight across the hold and into the drain.
	inflight := testutil.StartRequest(t, testutil.NewClient(t), "POST", base+"/work?ms=2500")

	p.Signal(sig)
	signalled := time.Now()
	p.WaitLog("lameduck: holding", 10*time.Second)
	if r := testutil.Get(t, c, base+"/readyz"); r.Status != http.StatusServiceUnavailable {
		t.Errorf("readyz right after the signal = %d, want 503", r.Status)
	}
	if r := testutil.Get(t, c, base+"/healthz"); r.Status != 200 {
		t.Errorf("healthz during the hold = %d, want 200", r.Status)
	}
	r := testutil.Get(t, c, base+"/work?ms=0")
	if r.Status != 200 || !r.Close {
		t.Errorf("request during the hold = %d, Connection: close %v; want 200 with Connection: close", r.Status, r.Close)
	}
	if time.Since(signalled) >= hold {
		t.Fatalf("the checks above took %v, longer than the hold: too slow to prove anything", time.Since(signalled))
	}

	got := <-inflight
	if got.Err != nil || got.Status != 200 || got.Body != "ok\n" {
		t.Fatalf("in-flight request = %d %q %v, want 200 \"ok\\n\"", got.Status, got.Body, got.Err)
	}
	if code := p.Wait(20 * time.Second); code != exitDrained {
		t.Fatalf("exit code %d, want %d", code, exitDrained)
	}
	// The drain is event-driven: the process exits as soon as the last
	// response is written, not at the 20 s drain timeout. 3 s leaves room
	// for a loaded CI machine and process teardown.
	if lag := time.Since(got.At); lag > 3*time.Second {
		t.Errorf("exited %v after the last response, want well under the drain timeout", lag)
	}
	for _, want := range []string{"lameduck: holding", "trigger=" + sigName(sig), "lameduck: draining", "lameduck: stopped", "drained=true"} {
		if !strings.Contains(p.Stderr(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func testStuck(t *testing.T, pkg string) {
	const hold, drain = 200 * time.Millisecond, time.Second
	p, base := startExample(t, pkg, nil, "-hold", hold.String(), "-drain-timeout", drain.String())
	stuck := testutil.StartRequest(t, testutil.NewClient(t), "GET", base+"/work?ms=600000")
	p.Signal(syscall.SIGTERM)
	start := time.Now()
	code := p.Wait(30 * time.Second)
	took := time.Since(start)
	if code != exitForced {
		t.Fatalf("exit code %d, want %d", code, exitForced)
	}
	if took < hold+drain {
		t.Errorf("exited after %v, before hold + drain timeout %v", took, hold+drain)
	}
	if r := <-stuck; r.Err == nil {
		t.Errorf("stuck request got %d, want the connection closed", r.Status)
	}
	if !strings.Contains(p.Stderr(), "abandoned=1") {
		t.Errorf("log does not report abandoned=1")
	}
}

func testSecondSignal(t *testing.T, pkg string) {
	p, _ := startExample(t, pkg, nil, "-hold", "20s", "-drain-timeout", "5s")
	p.Signal(syscall.SIGTERM)
	p.WaitLog("lameduck: holding", 10*time.Second)
	p.Signal(syscall.SIGTERM)
	start := time.Now()
	code := p.Wait(10 * time.Second)
	if code == exitDrained {
		t.Errorf("exit code 0 after a second signal, want non-zero")
	}
	// Prompt: far less than the 20 s hold left; 3 s covers a loaded machine.
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("exited %v after the second signal, want promptly", took)
	}
}

func testBadFlags(t *testing.T, pkg string) {
	bin := testutil.BuildBinary(t, pkg)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"negative_hold", []string{"-hold", "-1s"}, "-hold"},
		{"zero_drain", []string{"-drain-timeout", "0s"}, "-drain-timeout"},
		{"budget_exceeds_grace", []string{"-hold", "20s", "-drain-timeout", "15s", "-grace", "30s"}, "exceeds the grace period 30s"},
		// 10s + 15s fit in 26s, but not with core's margin of max(2s, 10%).
		{"no_margin_left", []string{"-hold", "10s", "-drain-timeout", "15s", "-grace", "26s"}, "margin 2.6s"},
		{"zero_grace", []string{"-grace", "0s"}, "-grace"},
		{"empty_addr", []string{"-addr", ""}, "-addr"},
		{"not_a_duration", []string{"-hold", "ten"}, "invalid value"},
		{"unknown_flag", []string{"-nope"}, "not defined"},
		{"stray_argument", []string{"extra"}, "unexpected"},
		{"hold_max_below_hold", []string{"-hold", "3s", "-hold-max", "2s"}, "-hold-max 2s is shorter than -hold 3s"},
		{"zero_hold_quiet", []string{"-hold", "1s", "-hold-max", "5s", "-hold-quiet", "0s"}, "-hold-quiet must be positive"},
		{"negative_hold_quiet", []string{"-hold-quiet", "-1s"}, "-hold-quiet must be positive"},
		// The budget counts the hold's maximum: 1s would fit, 20s does not.
		{"hold_max_exceeds_grace", []string{"-hold", "1s", "-hold-max", "20s", "-drain-timeout", "15s", "-grace", "30s"}, "-hold-max, -drain-timeout and -grace: lameduck: hold 20s + drain timeout 15s + margin 3s = 38s exceeds the grace period 30s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testutil.Start(t, bin, nil, append([]string{"-addr", "127.0.0.1:0"}, tc.args...)...)
			if code := p.Wait(20 * time.Second); code != exitUsage {
				t.Fatalf("exit code %d, want %d", code, exitUsage)
			}
			if !strings.Contains(p.Stderr(), tc.want) {
				t.Errorf("stderr %q lacks %q", p.Stderr(), tc.want)
			}
			if strings.Contains(p.Stderr(), "msg=listening") {
				t.Errorf("listened despite bad flags")
			}
		})
	}
}

// testPortInUse starts a second copy of the example on the port of a
// running one: it must exit 4 at once, saying why, without ever being
// ready (the trap of issue 12: a swallowed listen error made the copy log
// "lameduck: serving" with no listener and exit 0 on SIGTERM). The first
// copy is not disturbed.
func testPortInUse(t *testing.T, pkg string) {
	first, base := startExample(t, pkg, nil, "-hold", "0s", "-drain-timeout", "5s")
	addr := strings.TrimPrefix(base, "http://")
	second := testutil.Start(t, testutil.BuildBinary(t, pkg), nil, "-addr", addr, "-hold", "0s", "-drain-timeout", "5s")
	if code := second.Wait(20 * time.Second); code != exitFailure {
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
	if r := testutil.Get(t, testutil.NewClient(t), base+"/readyz"); r.Status != http.StatusOK {
		t.Errorf("first copy's readyz = %d, want 200", r.Status)
	}
	first.Signal(syscall.SIGTERM)
	if code := first.Wait(20 * time.Second); code != exitDrained {
		t.Errorf("first copy: exit code %d, want %d", code, exitDrained)
	}
}

// testReadyAfterSignals checks the order of issue 12: the service becomes
// ready (core logs "lameduck: serving") only once its signals are caught
// and it listens, so that a SIGTERM can never find a ready service that
// cannot shut down; and not before, so /readyz never passes early.
func testReadyAfterSignals(t *testing.T, pkg string) {
	p, _ := startExample(t, pkg, nil, "-hold", "0s", "-drain-timeout", "5s")
	log := p.Stderr()
	listening := strings.Index(log, "msg=listening")
	signals := strings.Index(log, "lameduck: waiting for signals")
	serving := strings.Index(log, "lameduck: serving")
	if listening < 0 || signals < 0 || serving < 0 || !(listening < serving && signals < serving) {
		t.Errorf("log order: listening at %d, waiting for signals at %d, serving at %d; want serving last:\n%s",
			listening, signals, serving, log)
	}
	if n := strings.Count(log, "lameduck: serving"); n != 1 {
		t.Errorf("%d \"lameduck: serving\" lines, want 1", n)
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(20 * time.Second); code != exitDrained {
		t.Errorf("exit code %d, want %d", code, exitDrained)
	}
}

func testSpans(t *testing.T, pkg string) {
	p, base := startExample(t, pkg, []string{"OTEL_TRACES_EXPORTER=console"}, "-hold", "300ms", "-drain-timeout", "5s")
	inflight := testutil.StartRequest(t, testutil.NewClient(t), "GET", base+"/work?ms=600")
	p.Signal(syscall.SIGTERM)
	if r := <-inflight; r.Status != 200 {
		t.Fatalf("in-flight request = %d %v", r.Status, r.Err)
	}
	if code := p.Wait(20 * time.Second); code != exitDrained {
		t.Fatalf("exit code %d, want 0", code)
	}
	spans := decodeSpans(t, p.Stdout())
	root, ok := spans["lameduck.shutdown"]
	if !ok {
		t.Fatalf("no lameduck.shutdown span in stdout:\n%s", p.Stdout())
	}
	for _, name := range []string{"lameduck.hold", "lameduck.drain"} {
		s, ok := spans[name]
		switch {
		case !ok:
			t.Errorf("no %s span", name)
		case s.SpanContext.TraceID != root.SpanContext.TraceID:
			t.Errorf("%s in trace %s, want %s", name, s.SpanContext.TraceID, root.SpanContext.TraceID)
		case s.Parent.SpanID != root.SpanContext.SpanID:
			t.Errorf("%s parent %s, want the root %s", name, s.Parent.SpanID, root.SpanContext.SpanID)
		}
	}
	if attr := root.attr("lameduck.trigger"); attr != "SIGTERM" {
		t.Errorf("trigger = %v, want SIGTERM", attr)
	}
}

// testH2C: the example serves HTTP/2 with prior knowledge (h2c) and
// HTTP/1.1 on the one -addr.
func testH2C(t *testing.T, pkg string) {
	p, base := startExample(t, pkg, nil, "-hold", "0s", "-drain-timeout", "5s")
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	for _, c := range []struct {
		proto  string
		client *http.Client
	}{
		{"HTTP/2.0", &http.Client{Transport: tr, Timeout: 30 * time.Second}},
		{"HTTP/1.1", testutil.NewClient(t)},
	} {
		for _, method := range []string{"GET", "POST"} {
			req, err := http.NewRequestWithContext(t.Context(), method, base+"/work?ms=1", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.client.Do(req)
			if err != nil {
				t.Fatalf("%s %s /work: %v", c.proto, method, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(body) != "ok\n" || resp.Proto != c.proto {
				t.Errorf("%s /work with a %s client: %s %d %q %v, want %s 200 \"ok\\n\"", method, c.proto, resp.Proto, resp.StatusCode, body, err, c.proto)
			}
		}
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(20 * time.Second); code != exitDrained {
		t.Errorf("exit code %d, want %d", code, exitDrained)
	}
}

// testFixedHold: without -hold-max the hold is fixed at -hold, whatever
// -hold says (the default of -hold-max follows it).
func testFixedHold(t *testing.T, pkg string) {
	p, _ := startExample(t, pkg, nil, "-hold", "400ms", "-drain-timeout", "5s")
	p.Signal(syscall.SIGTERM)
	if why := p.LogValue("lameduck: hold ended", "ended_by", 20*time.Second); why != "min" {
		t.Errorf("fixed hold ended_by=%s, want min", why)
	}
	if code := p.Wait(20 * time.Second); code != exitDrained {
		t.Errorf("exit code %d, want %d", code, exitDrained)
	}
	if strings.Contains(p.Stderr(), "hold_max=") {
		t.Errorf("a fixed hold logged an adaptive one:\n%s", p.Stderr())
	}
}

// testAdaptiveHold: with -hold-max above -hold and no traffic, the hold
// ends -hold-quiet after its start (the minimum is shorter), far before
// -hold-max.
func testAdaptiveHold(t *testing.T, pkg string) {
	const holdMax = 3 * time.Second
	p, _ := startExample(t, pkg, nil, "-hold", "100ms", "-hold-max", holdMax.String(), "-hold-quiet", "400ms", "-drain-timeout", "5s")
	p.Signal(syscall.SIGTERM)
	if why := p.LogValue("lameduck: hold ended", "ended_by", 20*time.Second); why != "quiet" {
		t.Errorf("adaptive hold ended_by=%s, want quiet:\n%s", why, p.Stderr())
	}
	held, err := time.ParseDuration(p.LogValue("lameduck: hold ended", "held", time.Second))
	if err != nil || held < 400*time.Millisecond || held > holdMax/2 {
		t.Errorf("adaptive hold held %v (%v), want at least the 400ms quiet time (over the 100ms minimum) and well before -hold-max %v", held, err, holdMax)
	}
	if !strings.Contains(p.Stderr(), "hold_quiet=400ms hold_max=3s") {
		t.Errorf("the holding line lacks the adaptive hold's settings:\n%s", p.Stderr())
	}
	if code := p.Wait(20 * time.Second); code != exitDrained {
		t.Errorf("exit code %d, want %d", code, exitDrained)
	}
}

type consoleSpan struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
	Attributes  []struct {
		Key   string
		Value struct{ Value any }
	}
}

func (s consoleSpan) attr(key string) any {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value.Value
		}
	}
	return nil
}

// decodeSpans reads the stdouttrace exporter's JSON objects.
func decodeSpans(t *testing.T, stdout string) map[string]consoleSpan {
	t.Helper()
	spans := map[string]consoleSpan{}
	dec := json.NewDecoder(bytes.NewBufferString(stdout))
	for {
		var s consoleSpan
		err := dec.Decode(&s)
		if errors.Is(err, io.EOF) {
			return spans
		}
		if err != nil {
			t.Fatalf("stdout is not a stream of spans: %v\n%s", err, stdout)
		}
		spans[s.Name] = s
	}
}

func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGINT {
		return "SIGINT"
	}
	return "SIGTERM"
}
