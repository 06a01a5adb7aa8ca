package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/testutil"
)

// TestPreStop checks the preStop trigger of every HTTP example end to
// end, as the kubelet drives it for `preStop: httpGet`: GET /prestop on the
// admin listener starts the shutdown, readiness fails at once, the
// response comes when the hold is over, and the SIGTERM that follows
// joins the running sequence instead of holding again.
func TestPreStop(t *testing.T) {
	for _, ex := range httpExamples {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			testutil.BuildBinary(t, ex.pkg) // once, before the subtests race for it
			t.Run("trigger_then_sigterm", func(t *testing.T) { t.Parallel(); testPreStopTrigger(t, ex.pkg) })
			t.Run("not_on_the_public_port", func(t *testing.T) { t.Parallel(); testPreStopNotPublic(t, ex.pkg) })
		})
	}
}

func testPreStopTrigger(t *testing.T, pkg string) {
	// The hold is longer than the 3 s allowed below for the exit after the
	// last request ends, so a second hold started by the SIGTERM could not
	// pass unnoticed.
	const hold = 4 * time.Second
	p, base := startExample(t, pkg, []string{"OTEL_TRACES_EXPORTER=console"},
		"-admin-addr", "127.0.0.1:0", "-hold", hold.String(), "-drain-timeout", "30s", "-grace", "40s")
	admin := "http://" + p.LogValue("admin listening", "admin_addr", 10*time.Second)
	c := testutil.NewClient(t)

	// A request that outlives the hold keeps the process in its drain
	// until the test lets it go, so that the SIGTERM arrives while the
	// sequence the preStop started is still running, as with the kubelet.
	stuck, release := startCancelable(t, base+"/work?ms=600000")

	before := time.Now() // the hold starts after this
	prestop := testutil.StartRequest(t, testutil.NewClient(t), "GET", admin+"/prestop")
	// The handler starts the sequence before it waits; the log line is
	// the event that says it has.
	p.WaitLog("lameduck: holding", 10*time.Second)
	if r := testutil.Get(t, c, base+"/readyz"); r.Status != http.StatusServiceUnavailable {
		t.Errorf("readyz right after the preStop request = %d, want 503", r.Status)
	}
	if r := testutil.Get(t, c, base+"/healthz"); r.Status != http.StatusOK {
		t.Errorf("healthz during the hold = %d, want 200", r.Status)
	}
	if r := testutil.Get(t, c, base+"/work?ms=0"); r.Status != http.StatusOK || !r.Close {
		t.Errorf("request during the hold = %d, Connection: close %v; want 200 with Connection: close", r.Status, r.Close)
	}
	if took := time.Since(before); took >= hold {
		t.Fatalf("the checks above took %v, longer than the hold: too slow to prove anything", took)
	}

	r := <-prestop
	if r.Err != nil || r.Status != http.StatusOK {
		t.Fatalf("preStop response = %d %v, want 200", r.Status, r.Err)
	}
	// The hold starts after `before` and the response is written when it
	// is over; 5 s above the hold covers a loaded machine.
	if waited := r.At.Sub(before); waited < hold || waited > hold+5*time.Second {
		t.Errorf("preStop answered %v after the request, want when the %v hold is over", waited, hold)
	}

	// The admin listener is a server of the lifecycle like the public
	// one: the drain has closed it. A repeated hook (the kubelet runs it
	// once per termination) is refused at connect, or, on a connection
	// the drain had accepted, answered at once as the hold is over; it
	// starts nothing either way.
	again := testutil.Do(c, http.MethodGet, admin+"/prestop")
	if again.Err == nil && again.Status != http.StatusOK {
		t.Errorf("repeated preStop during the drain = %d, want refused at connect or 200", again.Status)
	}
	if again.At.Sub(r.At) > 3*time.Second {
		t.Errorf("repeated preStop answered %v after the first, want at once", again.At.Sub(r.At))
	}

	// What the kubelet does next: SIGTERM. It joins the drain in progress
	// (it is the first signal, so it does not force) and holds nothing.
	p.Signal(syscall.SIGTERM)
	p.WaitLog("trigger=SIGTERM started_by=prestop", 10*time.Second)
	released := time.Now()
	release()
	if r := <-stuck; r.Err == nil {
		t.Errorf("cancelled request got %d, want the client's cancellation error", r.Status)
	}
	if code := p.Wait(20 * time.Second); code != exitDrained {
		t.Fatalf("exit code %d, want %d (the SIGTERM must join the drain, not force it)", code, exitDrained)
	}
	// Event-driven drain: the exit follows the last request's end, not a
	// second hold (4 s) nor the drain timeout (30 s); 3 s covers teardown
	// on a loaded machine.
	if lag := time.Since(released); lag > 3*time.Second {
		t.Errorf("exited %v after the last request ended, want well under the %v hold", lag, hold)
	}

	log := p.Stderr()
	if n := strings.Count(log, "lameduck: holding"); n != 1 {
		t.Errorf("log has %d \"lameduck: holding\" lines, want 1 (the SIGTERM must not hold again)", n)
	}
	for _, want := range []string{"trigger=prestop", "lameduck: draining", "lameduck: stopped", "drained=true"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(log, `msg="lameduck: holding" trigger=SIGTERM`) {
		t.Errorf("SIGTERM started a sequence; the preStop started the only one")
	}

	counts, spans := countSpans(t, p.Stdout())
	for _, name := range []string{"lameduck.shutdown", "lameduck.hold", "lameduck.drain"} {
		if counts[name] != 1 {
			t.Errorf("%d %s spans, want 1", counts[name], name)
		}
	}
	if got := spans["lameduck.shutdown"].attr("lameduck.trigger"); got != "prestop" {
		t.Errorf("shutdown span trigger = %v, want prestop", got)
	}
}

// testPreStopNotPublic checks that the trigger is on no public route, and
// that without -admin-addr there is no admin listener at all.
func testPreStopNotPublic(t *testing.T, pkg string) {
	p, base := startExample(t, pkg, nil, "-hold", "0s", "-drain-timeout", "5s")
	c := testutil.NewClient(t)
	for _, method := range []string{"GET", "POST"} {
		r := testutil.Do(c, method, base+"/prestop")
		if r.Err != nil {
			t.Fatalf("%s /prestop: %v", method, r.Err)
		}
		if r.Status != http.StatusNotFound && r.Status != http.StatusMethodNotAllowed {
			t.Errorf("%s /prestop on the public port = %d, want 404 (or 405)", method, r.Status)
		}
	}
	if r := testutil.Get(t, c, base+"/readyz"); r.Status != http.StatusOK {
		t.Errorf("readyz after /prestop on the public port = %d, want 200: nothing may have started", r.Status)
	}
	if strings.Contains(p.Stderr(), "admin listening") {
		t.Errorf("an admin listener started without -admin-addr")
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(20 * time.Second); code != exitDrained {
		t.Errorf("exit code %d, want %d", code, exitDrained)
	}
	if !strings.Contains(p.Stderr(), "trigger=SIGTERM") {
		t.Errorf("log lacks trigger=SIGTERM")
	}
}

// startCancelable sends a GET in the background and returns once it has
// been written; cancel ends it from the client side (closing its
// connection), which ends the server's handler.
func startCancelable(t *testing.T, url string) (<-chan testutil.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	wrote := make(chan struct{})
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := testutil.NewClient(t)
	out := make(chan testutil.Response, 1)
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			out <- testutil.Response{Err: err, At: time.Now()}
			return
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		out <- testutil.Response{Status: resp.StatusCode, Err: err, At: time.Now()}
	}()
	select {
	case <-wrote:
	case r := <-out:
		t.Fatalf("GET %s failed before it was written: %v", url, r.Err)
	case <-time.After(10 * time.Second):
		t.Fatalf("GET %s not written within 10s", url)
	}
	return out, cancel
}

// countSpans reads the stdouttrace exporter's JSON objects and returns
// how many spans of each name it printed, and the last of each name.
func countSpans(t *testing.T, stdout string) (map[string]int, map[string]consoleSpan) {
	t.Helper()
	counts, spans := map[string]int{}, map[string]consoleSpan{}
	dec := json.NewDecoder(bytes.NewBufferString(stdout))
	for {
		var s consoleSpan
		err := dec.Decode(&s)
		if errors.Is(err, io.EOF) {
			return counts, spans
		}
		if err != nil {
			t.Fatalf("stdout is not a stream of spans: %v\n%s", err, stdout)
		}
		counts[s.Name]++
		spans[s.Name] = s
	}
}
