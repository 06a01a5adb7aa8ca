package core_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lameduck/lameduck/core"
)

// nopWriter is a ResponseWriter that allocates nothing per request.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

var okBody = []byte("ok")

func okHandler(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(okBody) }

// BenchmarkMiddleware compares a bare handler with the same handler
// behind Lifecycle.Middleware while serving; the difference is the cost
// of the request tracking.
func BenchmarkMiddleware(b *testing.B) {
	l := newLifecycle(b)
	l.MarkReady()
	// With the OpenTelemetry SDK installed: the request path records
	// nothing (in-flight is read by a callback at collection time), so
	// it must cost the same as with the no-op default providers.
	withSDK := newLifecycle(b,
		core.WithTracerProvider(sdktrace.NewTracerProvider()),
		core.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))))
	withSDK.MarkReady()
	handlers := []struct {
		name string
		h    http.Handler
	}{
		{"bare", http.HandlerFunc(okHandler)},
		{"lameduck", l.Middleware(http.HandlerFunc(okHandler))},
		{"lameduck+otel-sdk", withSDK.Middleware(http.HandlerFunc(okHandler))},
	}
	req := httptest.NewRequest(http.MethodGet, "/work", nil)
	for _, hc := range handlers {
		b.Run(hc.name, func(b *testing.B) {
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				hc.h.ServeHTTP(w, req)
			}
		})
	}
	for _, hc := range handlers {
		b.Run("parallel/"+hc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &nopWriter{h: http.Header{}}
				for pb.Next() {
					hc.h.ServeHTTP(w, req)
				}
			})
		})
	}
	if got := l.InFlight(); got != 0 {
		b.Fatalf("InFlight() after the benchmark: got %d, want 0", got)
	}
}

// BenchmarkDrainCompletion measures how long after the last in-flight
// response has been written and flushed the drain returns: with the
// lifecycle (driven by ConnState events) and with http.Server.Shutdown
// (which polls, backing off up to 500ms). Each iteration builds a server
// with one in-flight request; ns/drain is the mean of that delay.
func BenchmarkDrainCompletion(b *testing.B) {
	b.Run("lameduck", func(b *testing.B) {
		benchDrain(b, func(srv *http.Server) (started <-chan struct{}, shutdown func() error) {
			l := newLifecycle(b, core.WithHold(0), core.WithDrainTimeout(10*time.Second))
			if err := l.BindHTTP(srv); err != nil {
				b.Fatal(err)
			}
			srv.Handler = l.Middleware(srv.Handler)
			l.MarkReady()
			return l.Draining(), func() error { return l.Shutdown(context.Background()) }
		})
	})
	b.Run("http.Server.Shutdown", func(b *testing.B) {
		benchDrain(b, func(srv *http.Server) (<-chan struct{}, func() error) {
			started := make(chan struct{})
			srv.RegisterOnShutdown(func() { close(started) })
			return started, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				return srv.Shutdown(ctx)
			}
		})
	})
}

func benchDrain(b *testing.B, bind func(*http.Server) (<-chan struct{}, func() error)) {
	var total time.Duration
	n := 0
	for b.Loop() {
		total += drainOnce(b, bind)
		n++
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(n), "ns/drain")
}

func drainOnce(b *testing.B, bind func(*http.Server) (<-chan struct{}, func() error)) time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	flushed := make(chan time.Time, 1)
	srv := &http.Server{
		ErrorLog: log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			_, _ = w.Write(okBody)
			w.(http.Flusher).Flush()
			flushed <- time.Now()
		}),
	}
	started, shutdown := bind(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	got := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		got <- err
	}()
	<-entered
	done := make(chan time.Time, 1)
	go func() {
		if err := shutdown(); err != nil {
			b.Errorf("shutdown: %v", err)
		}
		done <- time.Now()
	}()
	<-started // the drain is under way: the request is in flight
	close(release)
	d := (<-done).Sub(<-flushed)
	if err := <-got; err != nil {
		b.Fatalf("in-flight request: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		b.Fatalf("Serve: %v", err)
	}
	return d
}
