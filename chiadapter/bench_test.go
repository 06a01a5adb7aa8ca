package chiadapter_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"

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

// BenchmarkHandler compares a bare chi route with the same route behind
// the handler of a serving lifecycle's HTTP server (the one
// chiadapter.Listen builds): the difference is lameduck's cost per
// request.
func BenchmarkHandler(b *testing.B) {
	for _, bc := range []struct {
		name    string
		wrapped bool
	}{{"bare", false}, {"lameduck", true}} {
		b.Run(bc.name, func(b *testing.B) {
			r := chi.NewRouter()
			r.Get("/work", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
			var h http.Handler = r
			if bc.wrapped {
				h = serveLifecycle(b, r)
			}
			w, req := &discardWriter{header: http.Header{}}, httptest.NewRequest(http.MethodGet, "/work", nil)
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
			if w.status != http.StatusNoContent {
				b.Fatalf("status %d, want 204", w.status)
			}
		})
	}
}

// serveLifecycle serves r through core.Lifecycle.ListenHTTP, runs the
// lifecycle until the test ends, and returns the server's handler:
// ListenHTTP replaced srv.Handler with its wrapped one.
func serveLifecycle(b testing.TB, r http.Handler) http.Handler {
	b.Helper()
	lc, err := core.New(core.WithSignals(), core.WithHold(0), core.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: r}
	if err := lc.ListenHTTP(srv, nil); err != nil {
		b.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { res <- lc.Run(context.Background()) }()
	<-lc.Reached(core.Serving)
	b.Cleanup(func() {
		if err := lc.Shutdown(context.Background()); err != nil {
			b.Error(err)
		}
		<-res
	})
	return srv.Handler
}

// TestHandlerNoAllocs guards what BenchmarkHandler measures: the
// lifecycle's handler adds no allocation to a request while serving.
func TestHandlerNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	r := chi.NewRouter()
	r.Get("/work", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	wrapped := serveLifecycle(t, r)
	w, req := &discardWriter{header: http.Header{}}, httptest.NewRequest(http.MethodGet, "/work", nil)
	base := testing.AllocsPerRun(100, func() { r.ServeHTTP(w, req) })
	with := testing.AllocsPerRun(100, func() { wrapped.ServeHTTP(w, req) })
	if with > base {
		t.Errorf("allocs per request: %v behind the lifecycle, %v bare, want no more", with, base)
	}
}
