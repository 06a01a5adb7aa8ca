package reliability_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"

	"github.com/lameduck/lameduck/chiadapter"
	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
	"github.com/lameduck/lameduck/internal/testutil"
)

// secret stands for what a failing dependency says about itself
// (addresses, credentials): it must reach the log only.
const secret = "postgres://admin:hunter2@10.0.0.7"

// storm sends n concurrent GETs of the given paths, in turn, over
// HTTP/1 connections of its own, and returns the answers.
func storm(t *testing.T, base string, n int, paths ...string) []testutil.Response {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: time.Minute}
	out := make([]testutil.Response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i] = testutil.Do(c, http.MethodGet, base+paths[i%len(paths)]) })
	}
	wg.Wait()
	return out
}

// TestProbeStormCached sends 2,000 concurrent probes through a chi
// router to a readiness check that takes 20ms, with the cache on: the
// dependency is called once. During the hold, a storm of liveness and
// readiness probes is answered 200 and 503, none refused nor tracked.
func TestProbeStormCached(t *testing.T) {
	const n = 2000
	var calls atomic.Int32
	l := newLifecycle(t, core.WithHold(time.Hour), core.WithDrainTimeout(time.Minute))
	h, err := health.New(l.Lifecycle, health.WithLogger(quiet), health.WithCacheTTL(time.Minute), health.WithTimeout(10*time.Second),
		health.WithReadinessChecks(health.NamedCheck("db", func(ctx context.Context) error {
			calls.Add(1)
			select {
			case <-time.After(20 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})))
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter() // no routes: the probes are the lifecycle's
	addr, err := chiadapter.Listen(l.Lifecycle, "127.0.0.1:0", r, h)
	if err != nil {
		t.Fatalf("chiadapter.Listen: %v", err)
	}
	url := "http://" + addr.String()
	rn, _ := start(t, l)

	begin := time.Now()
	for i, res := range storm(t, url, n, "/readyz", "/readyz/db", "/readyz?verbose") {
		if res.Err != nil || res.Status != http.StatusOK {
			t.Fatalf("probe %d: got %d %q %v, want 200", i, res.Status, res.Body, res.Err)
		}
	}
	t.Logf("%d concurrent readiness probes (cache on) in %v: %d dependency call(s)", n, time.Since(begin).Round(time.Millisecond), calls.Load())
	if got := calls.Load(); got != 1 {
		t.Errorf("dependency calls for %d probes with the cache on: got %d, want 1", n, got)
	}

	ctx, cancel := context.WithCancel(t.Context())
	res := shutdownAsync(ctx, l)
	recv(t, l.Reached(core.Holding), "Reached(Holding)")
	for i, r := range storm(t, url, n, "/healthz", "/readyz", "/livez") {
		want := http.StatusOK
		if i%3 == 1 {
			want = http.StatusServiceUnavailable
		}
		if r.Err != nil || r.Status != want || r.Header.Get("Retry-After") != "" {
			t.Fatalf("probe %d during the hold: got %d %q %v, want %d from the health handler", i, r.Status, r.Body, r.Err, want)
		}
	}
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight after probe storms: got %d, want 0 (probes are not tracked)", got)
	}
	cancel() // ends Shutdown's wait, not the hour's hold
	if err := recv(t, res, "Shutdown"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with its ctx ended: got %v, want context.Canceled", err)
	}
	if p := l.Phase(); p != core.Holding {
		t.Fatalf("phase once Shutdown's ctx ended: got %v, want %v", p, core.Holding)
	}
	l.Force(errCleanup)
	forced(t, rn.wait(t), errCleanup, 0)
}

// TestHangingCheckOverHTTP: a check that ignores its context and never
// returns. 500 concurrent probes are answered 503 at the check's timeout,
// with no failure reason in the body, the dependency is called once, and
// liveness is not affected.
func TestHangingCheckOverHTTP(t *testing.T) {
	const n, timeout = 500, 200 * time.Millisecond
	var calls atomic.Int32
	unblock := make(chan struct{})
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Minute))
	h, err := health.New(l.Lifecycle, health.WithLogger(quiet), health.WithTimeout(timeout),
		health.WithReadinessChecks(health.NamedCheck("db", func(context.Context) error {
			calls.Add(1)
			<-unblock // ignores its context
			return errors.New(secret)
		})))
	if err != nil {
		t.Fatal(err)
	}
	defer close(unblock) // the hung run then ends in the background
	s := listenProbes(t, l, http.NewServeMux(), h, nil)
	start(t, l)
	begin := time.Now()
	answers := storm(t, s.url, n, "/readyz", "/readyz/db?verbose", "/readyz?verbose")
	took := time.Since(begin)
	for i, r := range answers {
		if r.Err != nil || r.Status != http.StatusServiceUnavailable {
			t.Fatalf("probe %d: got %d %v, want 503", i, r.Status, r.Err)
		}
		if strings.Contains(r.Body, "hunter2") || !strings.Contains(r.Body, "[-]db failed: reason withheld\n") {
			t.Fatalf("probe %d: body %q, want the check listed as failed without its reason", i, r.Body)
		}
	}
	if took > timeout+margin {
		t.Errorf("%d probes of a hung check took %v, want about the check timeout %v", n, took, timeout)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("calls of the hung check: got %d, want 1 (probes join the hung run)", got)
	}
	if r := testutil.Do(testutil.NewClient(t), http.MethodGet, s.url+"/healthz"); r.Err != nil || r.Status != http.StatusOK {
		t.Errorf("liveness beside a hung readiness check: got %d %v, want 200", r.Status, r.Err)
	}
	t.Logf("%d probes of a hung check answered 503 in %v (timeout %v)", n, took.Round(time.Millisecond), timeout)
}

// healthRouters listens with l for the three routers a service serves,
// each with h as its probes and a fallback that marks its answers, and
// returns the handlers ListenHTTP serves them with (the lifecycle's
// request tracking and probe routing around the router), to call in
// process. chiadapter.Listen and ginadapter.Listen are this ListenHTTP
// call.
func healthRouters(t testing.TB, l *lifecycle, h *health.Health) map[string]http.Handler {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App", "1")
		http.NotFound(w, r)
	})
	mux := http.NewServeMux()
	mux.Handle("/", app)

	cr := chi.NewRouter()
	cr.NotFound(app)
	cr.MethodNotAllowed(app)

	gr := gin.New()
	gr.NoRoute(gin.WrapH(app))
	out := map[string]http.Handler{}
	for name, rt := range map[string]http.Handler{"servemux": mux, "chi": cr, "gin": gr} {
		out[name] = listenProbes(t, l, rt, h, nil).srv.Handler
	}
	return out
}

// drainingHealth returns a lifecycle held in the drain, the handlers of
// healthRouters, and a Health with failing and panicking checks whose
// messages hold the secret.
func drainingHealth(t testing.TB) (*lifecycle, map[string]http.Handler) {
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Hour))
	h, err := health.New(l.Lifecycle, health.WithLogger(quiet), health.WithTimeout(time.Minute),
		health.WithReadinessChecks(
			health.NamedCheck("db", func(context.Context) error { return errors.New(secret) }),
			health.NamedCheck("cache", func(context.Context) error { return nil }),
			health.NamedCheck("panicky", func(context.Context) error { panic(secret) }),
		),
		health.WithLivenessChecks(health.NamedCheck("deadlock", func(context.Context) error { return errors.New(secret) })),
	)
	if err != nil {
		t.Fatal(err)
	}
	routers := healthRouters(t, l, h)
	start(t, l)
	if !l.Begin() { // keeps the drain going until cleanup
		t.Fatal("Begin: got false")
	}
	done := shutdownAsync(context.Background(), l)
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	t.Cleanup(func() {
		l.End()
		if err := recv(t, done, "Shutdown"); err != nil {
			t.Errorf("Shutdown: got %v, want nil", err)
		}
	})
	return l, routers
}

// probePath is ListenHTTP's documented rule: /healthz, /livez and /readyz
// and their sub-paths are the probes handler's.
func probePath(path string) bool {
	for _, p := range []string{"/healthz", "/livez", "/readyz"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// FuzzHealthRoutes sends any request target, during the drain, to the
// three routers as ListenHTTP serves them with a Health as probes.
// Invariants: no panic; the failure reasons never in a body; a body of at
// most 10 KiB; a probe path (see [probePath]) is answered by the health
// handler, neither refused nor routed to the app, whatever the router;
// /metrics is the app's, not refused; every other path goes to the
// router, which answers it: the drain refuses nothing that reached the
// server.
//
// Seeds are in testdata/fuzz/FuzzHealthRoutes; run with
// go test -run='^$' -fuzz=FuzzHealthRoutes ./e2e/reliability/
func FuzzHealthRoutes(f *testing.F) {
	for _, s := range []string{"/readyz", "/readyz?verbose&exclude=db", "/readyz/db", "/livez/deadlock?verbose", "/healthz/", "/metrics", "/ops/healthz"} {
		f.Add(s)
	}
	_, routers := drainingHealth(f)
	f.Fuzz(func(t *testing.T, target string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")))
		if err != nil {
			return // net/http would answer 400 before any handler
		}
		for name, rt := range routers {
			rec := httptest.NewRecorder()
			r := req.Clone(context.Background())
			rt.ServeHTTP(rec, r)
			body := rec.Body.String()
			what := fmt.Sprintf("%s: GET %q (path %q)", name, target, req.URL.Path)
			if strings.Contains(body, "hunter2") {
				t.Fatalf("%s: body %q holds a failure reason", what, body)
			}
			if len(body) > 10<<10 {
				t.Fatalf("%s: body of %d bytes, more than the kubelet reads", what, len(body))
			}
			fromApp := rec.Header().Get("X-App") != ""
			refused := rec.Code == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") != ""
			switch {
			case probePath(req.URL.Path):
				if refused || fromApp {
					t.Fatalf("%s: a probe path answered %d (refused %v, by the app %v), want the health handler's answer", what, rec.Code, refused, fromApp)
				}
			case req.URL.Path == "/metrics":
				if refused || !fromApp {
					t.Fatalf("%s: /metrics answered %d (refused %v, by the app %v), want the app's answer, untracked", what, rec.Code, refused, fromApp)
				}
			default:
				if refused {
					t.Fatalf("%s: answered %d (by the app %v) during the drain, want the router's answer: work that reached the server is served", what, rec.Code, fromApp)
				}
			}
		}
	})
}
