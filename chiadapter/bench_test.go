package chiadapter_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/lameduck/lameduck/chiadapter"
	"github.com/lameduck/lameduck/core"
)

// discardWriter is a ResponseWriter that allocates nothing per request.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// BenchmarkMiddleware compares a bare chi route with the same route behind
// the middleware while serving: the difference is the middleware's cost.
func BenchmarkMiddleware(b *testing.B) {
	lc, err := core.New(core.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	lc.MarkReady()
	for _, bc := range []struct {
		name string
		use  bool
	}{{"bare", false}, {"lameduck", true}} {
		b.Run(bc.name, func(b *testing.B) {
			r := chi.NewRouter()
			if bc.use {
				r.Use(chiadapter.Middleware(lc))
			}
			r.Get("/work", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
			w, req := &discardWriter{header: http.Header{}}, httptest.NewRequest(http.MethodGet, "/work", nil)
			b.ReportAllocs()
			for b.Loop() {
				r.ServeHTTP(w, req)
			}
			if w.status != http.StatusNoContent {
				b.Fatalf("status %d, want 204", w.status)
			}
		})
	}
}
