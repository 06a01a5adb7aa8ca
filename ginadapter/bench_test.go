package ginadapter_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/lameduck/lameduck/core"
)

// discardWriter is a ResponseWriter that allocates nothing per request.
type discardWriter struct {
	header http.Header
	status int
}

func newDiscardWriter() *discardWriter { return &discardWriter{header: http.Header{}} }

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// benchEngine returns a release-mode engine with one route.
func benchEngine(tb testing.TB) *gin.Engine {
	prev := gin.Mode()
	gin.SetMode(gin.ReleaseMode)
	tb.Cleanup(func() { gin.SetMode(prev) })
	e := gin.New()
	e.GET("/work", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	return e
}

// serveLifecycle serves next through core.Lifecycle.ListenHTTP (as
// ginadapter.Listen does), runs the lifecycle until the test ends, and
// returns the server's handler: ListenHTTP replaced srv.Handler with its
// wrapped one.
func serveLifecycle(tb testing.TB, next http.Handler) http.Handler {
	tb.Helper()
	lc, err := core.New(core.WithSignals(), core.WithHold(0), core.WithLogger(quiet))
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: next}
	if err := lc.ListenHTTP(srv, nil); err != nil {
		tb.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { res <- lc.Run(context.Background()) }()
	<-lc.Reached(core.Serving)
	tb.Cleanup(func() {
		if err := lc.Shutdown(context.Background()); err != nil {
			tb.Error(err)
		}
		<-res
	})
	return srv.Handler
}

// BenchmarkHandler compares a bare gin route with the same route behind
// the handler of a serving lifecycle's HTTP server (the one
// ginadapter.Listen builds): the difference is lameduck's cost per
// request.
func BenchmarkHandler(b *testing.B) {
	for _, bc := range []struct {
		name    string
		wrapped bool
	}{{"bare", false}, {"lameduck", true}} {
		b.Run(bc.name, func(b *testing.B) {
			var h http.Handler = benchEngine(b)
			if bc.wrapped {
				h = serveLifecycle(b, h)
			}
			w, r := newDiscardWriter(), httptest.NewRequest(http.MethodGet, "/work", nil)
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
			if w.status != http.StatusNoContent {
				b.Fatalf("status %d, want 204", w.status)
			}
		})
	}
}

// TestHandlerNoAllocs guards what BenchmarkHandler measures: the
// lifecycle's handler adds no allocation to a request while serving.
func TestHandlerNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	bare := benchEngine(t)
	wrapped := serveLifecycle(t, benchEngine(t))
	w, r := newDiscardWriter(), httptest.NewRequest(http.MethodGet, "/work", nil)
	base := testing.AllocsPerRun(100, func() { bare.ServeHTTP(w, r) })
	with := testing.AllocsPerRun(100, func() { wrapped.ServeHTTP(w, r) })
	if with > base {
		t.Errorf("allocs per request: %v behind the lifecycle, %v bare, want no more", with, base)
	}
}
