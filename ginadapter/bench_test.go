package ginadapter_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/ginadapter"
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

// benchEngine returns an engine with one route, behind the middleware of
// lc unless lc is nil.
func benchEngine(lc *core.Lifecycle) *gin.Engine {
	engine := gin.New()
	if lc != nil {
		engine.Use(ginadapter.Middleware(lc))
	}
	engine.GET("/work", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	return engine
}

// BenchmarkGin compares a bare gin route with the same route behind the
// middleware, while the service is serving: the difference is what the
// middleware costs each request.
func BenchmarkGin(b *testing.B) {
	lc, err := core.New(core.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	lc.MarkReady()
	for _, bc := range []struct {
		name string
		lc   *core.Lifecycle
	}{{"bare", nil}, {"lameduck", lc}} {
		b.Run(bc.name, func(b *testing.B) {
			engine := benchEngine(bc.lc)
			w, r := newDiscardWriter(), httptest.NewRequest("GET", "/work", nil)
			b.ReportAllocs()
			for b.Loop() {
				engine.ServeHTTP(w, r)
			}
			if w.status != http.StatusNoContent {
				b.Fatalf("status %d, want 204", w.status)
			}
		})
	}
}
