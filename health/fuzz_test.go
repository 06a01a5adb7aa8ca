package health_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// FuzzReadyzQuery sends any path and raw query to [health.Health.ServeHTTP],
// and the same query to /readyz, so that every input exercises the query
// handling. Invariants: no panic; 404 with net/http's body exactly when
// the path is not one of the served paths; otherwise 200 or 503, the
// secret error text of the failing checks never in the body, a body of at
// most 10 KiB (what the kubelet reads), "ok" or a listing whose last line
// matches the status.
//
// Seeds are in testdata/fuzz/FuzzReadyzQuery; run with
// go test -run='^$' -fuzz=FuzzReadyzQuery ./health/
func FuzzReadyzQuery(f *testing.F) {
	f.Add("/readyz", "")
	f.Add("/readyz", "verbose&exclude=db")
	f.Add("/livez/deadlock", "verbose")

	h, err := health.New(newLifecycle(f, core.Serving), health.WithLogger(discard), health.WithTimeout(time.Minute),
		health.WithReadinessChecks(
			health.NamedCheck("db", returns(errors.New(secret))),
			health.NamedCheck("cache", returns(nil)),
		),
		health.WithLivenessChecks(health.NamedCheck("deadlock", returns(errors.New(secret)))),
	)
	if err != nil {
		f.Fatal(err)
	}
	served := map[string]bool{}
	for _, p := range servedPaths { // the checks' names are newTestHealth's
		served[p] = true
	}

	f.Fuzz(func(t *testing.T, path, query string) {
		fuzzOne(t, h, path, query, served[path])
		if path != "/readyz" {
			fuzzOne(t, h, "/readyz", query, true)
		}
	})
}

func fuzzOne(t *testing.T, h http.Handler, path, query string, served bool) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.URL.Path, req.URL.RawQuery = path, query
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	body := rec.Body.String()
	if !served {
		if rec.Code != http.StatusNotFound || body != "404 page not found\n" {
			t.Fatalf("GET %q ? %q: got %d %q, want 404 for a path not served", path, query, rec.Code, body)
		}
		return
	}
	if rec.Code != http.StatusOK && rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("GET %q ? %q: got status %d, want 200 or 503", path, query, rec.Code)
	}
	if strings.Contains(body, secret) || strings.Contains(body, "hunter2") {
		t.Fatalf("GET %q ? %q: body %q contains the failure reason", path, query, body)
	}
	if len(body) > 10<<10 {
		t.Fatalf("GET %q ? %q: body of %d bytes, want at most 10 KiB", path, query, len(body))
	}
	switch {
	case body == "ok":
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %q ? %q: body \"ok\" with status %d", path, query, rec.Code)
		}
	case strings.HasSuffix(body, " check passed\n"):
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %q ? %q: passed listing with status %d", path, query, rec.Code)
		}
	case strings.HasSuffix(body, " check failed\n"):
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("GET %q ? %q: failed listing with status %d", path, query, rec.Code)
		}
	default:
		t.Fatalf("GET %q ? %q: unexpected body %q", path, query, body)
	}
}
