package health_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// secret is the error text of a failing check: it must reach the log and
// never a response.
const secret = "password=hunter2 at db.internal:5432"

// newTestHealth returns a Health with readiness checks "db" (failing
// with secret when dbFails) and "cache", and the liveness check
// "deadlock", installed on a ServeMux.
func newTestHealth(t testing.TB, lc *core.Lifecycle, dbFails bool) (*health.Health, *http.ServeMux, *logBuffer) {
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
	mux := http.NewServeMux()
	h.Install(mux)
	return h, mux, logs
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
			_, mux, logs := newTestHealth(t, newLifecycle(t, tt.phase), tt.dbFails)
			rec := serve(t, mux, http.MethodGet, tt.target)
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
	_, mux, logs := newTestHealth(t, newLifecycle(t, core.Serving), true)
	serve(t, mux, http.MethodGet, "/readyz")
	got := logs.String()
	for _, want := range []string{"level=WARN", "health: check failed", "check=db", "kind=readiness", secret} {
		if !strings.Contains(got, want) {
			t.Errorf("log: got %q, want it to contain %q", got, want)
		}
	}
}

func TestMethods(t *testing.T) {
	_, mux, _ := newTestHealth(t, newLifecycle(t, core.Starting), false)
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
			rec := serve(t, mux, tt.method, tt.target)
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
	_, mux, _ := newTestHealth(t, newLifecycle(t, core.Serving), false)
	rec := serve(t, mux, http.MethodGet, "/readyz")
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

func TestRoutes(t *testing.T) {
	h, _, _ := newTestHealth(t, newLifecycle(t, core.Serving), false)
	var got []string
	for _, r := range h.Routes() {
		got = append(got, r.Pattern)
	}
	want := []string{
		"/healthz", "/livez", "/readyz",
		"/readyz/shutdown", "/readyz/db", "/readyz/cache",
		"/healthz/ping", "/healthz/deadlock", "/livez/ping", "/livez/deadlock",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Routes: got %v, want %v", got, want)
	}
	rs := h.Routes()
	rs[0].Pattern = "/changed"
	if h.Routes()[0].Pattern != "/healthz" {
		t.Error("Routes: changing the returned slice changed the Health's routes")
	}
}

// recordingMux is a Mux that records what is registered.
type recordingMux struct{ patterns []string }

func (m *recordingMux) Handle(pattern string, _ http.Handler) {
	m.patterns = append(m.patterns, pattern)
}

func TestInstall(t *testing.T) {
	h, _, _ := newTestHealth(t, newLifecycle(t, core.Serving), false)
	var m recordingMux
	h.Install(&m)
	var want []string
	for _, r := range h.Routes() {
		want = append(want, r.Pattern)
	}
	if !slices.Equal(m.patterns, want) {
		t.Errorf("Install registered %v, want %v", m.patterns, want)
	}
}

// TestHandlersAnywhere mounts the handlers at other paths, as a router
// with a prefix would: they must not depend on the request path.
func TestHandlersAnywhere(t *testing.T) {
	h, _, _ := newTestHealth(t, newLifecycle(t, core.Serving), true)
	byPattern := map[string]http.Handler{}
	for _, r := range h.Routes() {
		byPattern[r.Pattern] = r.Handler
	}
	tests := []struct {
		name     string
		handler  http.Handler
		target   string
		wantCode int
		wantBody string
	}{
		{"per-check db elsewhere", byPattern["/readyz/db"], "/internal/probe/x?verbose", 503, "[-]db failed: reason withheld\nreadyz check failed\n"},
		{"per-check cache under another name", byPattern["/readyz/cache"], "/readyz/db?verbose", 200, "[+]cache ok\nreadyz check passed\n"},
		{"readiness at root", h.ReadinessHandler(), "/?verbose&exclude=db", 200, "[+]shutdown ok\n[+]db excluded: ok\n[+]cache ok\nreadyz check passed\n"},
		{"liveness under a prefix livez", h.LivenessHandler(), "/ops/livez?verbose", 200, "[+]ping ok\n[+]deadlock ok\nlivez check passed\n"},
		{"liveness under a prefix healthz", h.LivenessHandler(), "/ops/healthz?verbose", 200, "[+]ping ok\n[+]deadlock ok\nhealthz check passed\n"},
		{"liveness elsewhere", h.LivenessHandler(), "/alive?verbose", 200, "[+]ping ok\n[+]deadlock ok\nhealthz check passed\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(t, tt.handler, http.MethodGet, tt.target)
			if rec.Code != tt.wantCode || rec.Body.String() != tt.wantBody {
				t.Errorf("GET %s: got %d %q, want %d %q", tt.target, rec.Code, rec.Body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestInstallNilMuxPanics(t *testing.T) {
	h, _, _ := newTestHealth(t, newLifecycle(t, core.Serving), false)
	defer func() {
		if v := recover(); v == nil || !strings.HasPrefix(v.(string), "health: ") {
			t.Errorf("Install(nil): got panic %v, want one prefixed \"health: \"", v)
		}
	}()
	h.Install(nil)
}
