package health_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
	"github.com/lameduck/lameduck/internal/testutil"
)

// secret is the error text of a failing check: it must reach the log and
// never a response.
const secret = "password=hunter2 at db.internal:5432"

// newTestHealth returns a Health with readiness checks "db" (failing
// with secret when dbFails) and "cache", and the liveness check
// "deadlock".
func newTestHealth(t testing.TB, lc *core.Lifecycle, dbFails bool) (*health.Health, *logBuffer) {
	t.Helper()
	var dbErr error
	if dbFails {
		dbErr = errors.New(secret)
	}
	logger, logs := newLogger()
	h, err := health.New(lc, health.WithLogger(logger),
		health.WithTimeout(time.Minute), // the checks return at once, even on a loaded machine
		health.WithReadinessChecks(health.NamedCheck("db", returns(dbErr)), health.NamedCheck("cache", returns(nil))),
		health.WithLivenessChecks(health.NamedCheck("deadlock", returns(nil))),
	)
	if err != nil {
		t.Fatal(err)
	}
	return h, logs
}

func TestHandlers(t *testing.T) {
	type testCase struct {
		name     string
		phase    core.Phase
		dbFails  bool
		target   string
		wantCode int
		wantBody string
		wantLog  string // a substring of the log, if set
	}
	const (
		readyAll    = "[+]shutdown ok\n[+]db ok\n[+]cache ok\nreadyz check passed\n"
		readyDBFail = "[+]shutdown ok\n[-]db failed: reason withheld\n[+]cache ok\nreadyz check failed\n"
	)
	tests := []testCase{
		{"readyz plain ok", core.Serving, false, "/readyz", 200, "ok", ""},
		{"readyz plain check failed", core.Serving, true, "/readyz", 503, readyDBFail, "check=db"},
		{"readyz verbose ok", core.Serving, false, "/readyz?verbose", 200, readyAll, ""},
		{"readyz verbose with value", core.Serving, false, "/readyz?verbose=1", 200, readyAll, ""},
		{"readyz verbose check failed", core.Serving, true, "/readyz?verbose", 503, readyDBFail, ""},
		{"readyz exclude failing check", core.Serving, true, "/readyz?exclude=db", 200, "ok", ""},
		{"readyz exclude verbose", core.Serving, true, "/readyz?verbose&exclude=db", 200,
			"[+]shutdown ok\n[+]db excluded: ok\n[+]cache ok\nreadyz check passed\n", ""},
		{"readyz exclude passing check", core.Serving, true, "/readyz?exclude=cache", 503,
			"[+]shutdown ok\n[-]db failed: reason withheld\n[+]cache excluded: ok\nreadyz check failed\n", ""},
		{"readyz exclude multiple", core.Starting, true, "/readyz?exclude=db&exclude=shutdown", 200, "ok", ""},
		{"readyz exclude multiple verbose", core.Holding, true, "/readyz?exclude=shutdown&verbose&exclude=db", 200,
			"[+]shutdown excluded: ok\n[+]db excluded: ok\n[+]cache ok\nreadyz check passed\n", ""},
		{"readyz exclude unknown", core.Serving, false, "/readyz?exclude=nosuch", 200, "ok", "nosuch"},
		{"readyz exclude unknown verbose", core.Serving, false, "/readyz?exclude=nosuch&verbose", 200, readyAll, "cannot exclude unknown checks"},
		{"readyz exclude unknown and failing", core.Serving, true, "/readyz?exclude=nosuch", 503, readyDBFail, "nosuch"},
		{"readyz exclude empty", core.Serving, false, "/readyz?exclude=", 200, "ok", ""},
		{"readyz exclude is not comma-split", core.Serving, true, "/readyz?exclude=db,cache", 503, readyDBFail, ""},
		{"per-check ok", core.Serving, false, "/readyz/db", 200, "ok", ""},
		{"per-check failed", core.Serving, true, "/readyz/db", 503, "[-]db failed: reason withheld\nreadyz check failed\n", "check=db"},
		{"per-check verbose", core.Serving, false, "/readyz/cache?verbose", 200, "[+]cache ok\nreadyz check passed\n", ""},
		{"per-check ignores lifecycle", core.Holding, false, "/readyz/cache", 200, "ok", ""},
		{"per-check ignores exclude", core.Serving, true, "/readyz/db?exclude=db", 503, "[-]db failed: reason withheld\nreadyz check failed\n", ""},
		{"per-check other check failing", core.Serving, true, "/readyz/cache", 200, "ok", ""},
		{"per-check shutdown starting", core.Starting, false, "/readyz/shutdown", 503, "[-]shutdown failed: reason withheld\nreadyz check failed\n", ""},
		{"per-check shutdown serving", core.Serving, true, "/readyz/shutdown?verbose", 200, "[+]shutdown ok\nreadyz check passed\n", ""},
		{"healthz verbose", core.Serving, true, "/healthz?verbose", 200, "[+]ping ok\n[+]deadlock ok\nhealthz check passed\n", ""},
		{"livez verbose", core.Serving, true, "/livez?verbose", 200, "[+]ping ok\n[+]deadlock ok\nlivez check passed\n", ""},
		{"livez exclude", core.Serving, false, "/livez?verbose&exclude=deadlock", 200, "[+]ping ok\n[+]deadlock excluded: ok\nlivez check passed\n", ""},
		{"livez exclude readiness check is unknown", core.Serving, false, "/livez?exclude=db", 200, "ok", "exclude=[db]"},
		{"healthz per-check", core.Serving, false, "/healthz/deadlock?verbose", 200, "[+]deadlock ok\nhealthz check passed\n", ""},
		{"livez per-check ping", core.Serving, false, "/livez/ping", 200, "ok", ""},
		{"unknown per-check path", core.Serving, false, "/readyz/nosuch", 404, "404 page not found\n", ""},
		{"liveness checks are not readiness paths", core.Serving, false, "/readyz/deadlock", 404, "404 page not found\n", ""},
	}
	phases := []struct {
		phase core.Phase
		ready bool
	}{{core.Starting, false}, {core.Serving, true}, {core.Holding, false}, {core.Draining, false}, {core.Stopped, false}}
	for _, p := range phases {
		code, body := 200, "ok"
		if !p.ready {
			code, body = 503, "[-]shutdown failed: reason withheld\n[+]db ok\n[+]cache ok\nreadyz check failed\n"
		}
		tests = append(tests,
			testCase{"readyz phase " + p.phase.String(), p.phase, false, "/readyz", code, body, ""},
			testCase{"healthz phase " + p.phase.String(), p.phase, true, "/healthz", 200, "ok", ""},
			testCase{"livez phase " + p.phase.String(), p.phase, true, "/livez", 200, "ok", ""},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, logs := newTestHealth(t, newLifecycle(t, tt.phase), tt.dbFails)
			rec := serve(t, h, http.MethodGet, tt.target)
			if rec.Code != tt.wantCode || rec.Body.String() != tt.wantBody {
				t.Errorf("GET %s: got %d %q, want %d %q", tt.target, rec.Code, rec.Body, tt.wantCode, tt.wantBody)
			}
			if strings.Contains(rec.Body.String(), secret) {
				t.Errorf("GET %s: body %q contains the failure reason", tt.target, rec.Body)
			}
			if tt.wantCode != 404 {
				if got, want := rec.Header().Get("Content-Type"), "text/plain; charset=utf-8"; got != want {
					t.Errorf("Content-Type: got %q, want %q", got, want)
				}
			}
			if tt.wantLog != "" && !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log: got %q, want it to contain %q", logs, tt.wantLog)
			}
		})
	}
}

func TestFailureReasonIsLogged(t *testing.T) {
	h, logs := newTestHealth(t, newLifecycle(t, core.Serving), true)
	serve(t, h, http.MethodGet, "/readyz")
	got := logs.String()
	for _, want := range []string{"level=WARN", "health: check failed", "check=db", "kind=readiness", secret} {
		if !strings.Contains(got, want) {
			t.Errorf("log: got %q, want it to contain %q", got, want)
		}
	}
}

func TestMethods(t *testing.T) {
	h, _ := newTestHealth(t, newLifecycle(t, core.Starting), false)
	tests := []struct {
		method, target string
		wantCode       int
		wantAllow      string
		wantLen        string
	}{
		{http.MethodHead, "/readyz", 503, "", "77"},
		{http.MethodHead, "/readyz/cache", 200, "", "2"},
		{http.MethodHead, "/healthz", 200, "", "2"},
		{http.MethodPost, "/readyz", 405, "GET, HEAD", "19"},
		{http.MethodPut, "/livez", 405, "GET, HEAD", "19"},
		{http.MethodDelete, "/readyz/db", 405, "GET, HEAD", "19"},
		{http.MethodOptions, "/healthz/ping", 405, "GET, HEAD", "19"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			rec := serve(t, h, tt.method, tt.target)
			if rec.Code != tt.wantCode {
				t.Errorf("status: got %d, want %d", rec.Code, tt.wantCode)
			}
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow: got %q, want %q", got, tt.wantAllow)
			}
			if got := rec.Header().Get("Content-Length"); got != tt.wantLen {
				t.Errorf("Content-Length: got %q, want %q", got, tt.wantLen)
			}
			if tt.method == http.MethodHead && rec.Body.Len() != 0 {
				t.Errorf("HEAD body: got %q, want none", rec.Body)
			}
		})
	}
}

func TestResponseHeaders(t *testing.T) {
	h, _ := newTestHealth(t, newLifecycle(t, core.Serving), false)
	rec := serve(t, h, http.MethodGet, "/readyz")
	for k, want := range map[string]string{
		"Content-Type":           "text/plain; charset=utf-8",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-store",
		"Content-Length":         "2",
	} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
}

// servedPaths are every path a Health with the checks of newTestHealth
// serves (what the removed Routes listed).
var servedPaths = []string{
	"/healthz", "/livez", "/readyz",
	"/readyz/shutdown", "/readyz/db", "/readyz/cache",
	"/healthz/ping", "/healthz/deadlock", "/livez/ping", "/livez/deadlock",
}

// TestServesEveryPath: each path gets its own checks, and the last line
// of its verbose listing names its probe.
func TestServesEveryPath(t *testing.T) {
	h, _ := newTestHealth(t, newLifecycle(t, core.Serving), false)
	for _, path := range servedPaths {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			if rec := serve(t, h, method, path); rec.Code != http.StatusOK {
				t.Errorf("%s %s: got status %d, want 200", method, path, rec.Code)
			}
		}
		rec := serve(t, h, http.MethodGet, path+"?verbose")
		word := strings.SplitN(path[1:], "/", 2)[0]
		if !strings.HasSuffix(rec.Body.String(), "\n"+word+" check passed\n") {
			t.Errorf("GET %s?verbose: got %q, want a listing ending in %q", path, rec.Body, word+" check passed")
		}
		if single := strings.Count(path, "/") == 2; single {
			name := path[strings.LastIndexByte(path, '/')+1:]
			if want := "[+]" + name + " ok\n" + word + " check passed\n"; rec.Body.String() != want {
				t.Errorf("GET %s?verbose: got %q, want %q", path, rec.Body, want)
			}
		}
	}
}

// TestUnknownPaths: ServeHTTP matches the path exactly; anything else is
// 404 whatever the method (it is not a probe path, so no 405), and no
// check runs.
func TestUnknownPaths(t *testing.T) {
	var calls atomic.Int32
	h, err := health.New(newLifecycle(t, core.Serving), health.WithLogger(discard), health.WithTimeout(time.Minute),
		health.WithReadinessChecks(health.NamedCheck("db", func(context.Context) error { calls.Add(1); return nil })),
		health.WithLivenessChecks(health.NamedCheck("deadlock", returns(nil))))
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{
		"", "/", "/ready", "/readyzz", "/readyz/", "/healthz/", "/livez/",
		"/readyz/nosuch", "/readyz/deadlock", "/livez/db", "/healthz/shutdown", "/readyz/ping",
		"/readyz/db/", "/readyz/db/x", "/readyz//db", "/readyz/../healthz", "/./readyz",
		"/READYZ", "/Readyz/db", "/ops/readyz", "/ops/healthz", "/metrics", "/readyz\x00",
	}
	for _, path := range paths {
		for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
			req := httptest.NewRequestWithContext(t.Context(), method, "/", nil)
			req.URL.Path = path // as a router hands it over, uncleaned
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusNotFound {
				t.Errorf("%s %q: got status %d, want 404", method, path, rec.Code)
			}
			if method == http.MethodGet && rec.Body.String() != "404 page not found\n" {
				t.Errorf("%s %q: got body %q, want net/http's 404", method, path, rec.Body)
			}
		}
	}
	if got := calls.Load(); got != 0 {
		t.Errorf("check calls for unknown paths: got %d, want 0", got)
	}
}

// TestServedByListenHTTP serves h the way a service does, through
// core.Lifecycle.ListenHTTP in front of a router that has a catch-all:
// the probe paths reach h, untracked, and keep answering in the hold.
func TestServedByListenHTTP(t *testing.T) {
	lc, err := core.New(core.WithSignals(), core.WithLogger(discard), core.WithHold(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := newTestHealth(t, lc, false)
	app := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: app, ReadHeaderTimeout: time.Minute}
	if err := lc.ListenHTTP(srv, h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	res := make(chan error, 1)
	go func() { res <- lc.Run(ctx) }()
	defer func() {
		lc.Force(nil) // ends the hour-long hold
		<-res
	}()
	<-lc.Reached(core.Serving)
	c := testutil.NewClient(t)
	url := "http://" + srv.Addr
	check := func(when, path string, want int) {
		t.Helper()
		if r := testutil.Get(t, c, url+path); r.Status != want {
			t.Errorf("%s: GET %s: got status %d, want %d", when, path, r.Status, want)
		}
	}
	check("serving", "/app", http.StatusTeapot)
	check("serving", "/readyz", http.StatusOK)
	check("serving", "/readyz/db", http.StatusOK)
	check("serving", "/livez/deadlock", http.StatusOK)
	check("serving", "/readyz/nosuch", http.StatusNotFound) // h's 404, not the catch-all
	cancel()                                                // the shutdown starts: the hold
	<-lc.Reached(core.Holding)
	check("holding", "/readyz", http.StatusServiceUnavailable)
	check("holding", "/readyz/db", http.StatusOK)
	check("holding", "/healthz", http.StatusOK)
	check("holding", "/app", http.StatusTeapot)
}
