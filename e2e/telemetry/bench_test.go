package telemetry_test

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
// behind the lifecycle's request handling (what ListenHTTP serves) while
// serving; the difference is the cost
// of the request tracking.
func BenchmarkMiddleware(b *testing.B) {
	l := newLifecycle(b)
	// With the OpenTelemetry SDK installed: the request path records
	// nothing (in-flight is read by a callback at collection time), so
	// it must cost the same as with the no-op default providers.
	withSDK := newLifecycle(b,
		core.WithTracerProvider(sdktrace.NewTracerProvider()),
		core.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))))
	handlers := []struct {
		name string
		h    http.Handler
	}{
		{"bare", http.HandlerFunc(okHandler)},
		{"lameduck", wrap(b, l, http.HandlerFunc(okHandler))},
		{"lameduck+otel-sdk", wrap(b, withSDK, http.HandlerFunc(okHandler))},
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
}

// BenchmarkDrainCompletion measures how long after the last in-flight
// response has been written and flushed the drain returns: with the
// lifecycle (driven by ConnState events) and with http.Server.Shutdown
// (which polls, backing off up to 500ms). Each iteration builds a server
// with one in-flight request; ns/drain is the mean of that delay.
func BenchmarkDrainCompletion(b *testing.B) {
	b.Run("lameduck", func(b *testing.B) {
		benchDrain(b, func(srv *http.Server) (string, <-chan struct{}, func() error, <-chan error) {
			l := newLifecycle(b, core.WithHold(0), core.WithDrainTimeout(10*time.Second))
			srv.Addr = "127.0.0.1:0"
			if err := l.ListenHTTP(srv, nil); err != nil {
				b.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- l.Run(context.Background()) }()
			<-l.Reached(core.Serving)
			return srv.Addr, l.Reached(core.Draining), func() error { return l.Shutdown(context.Background()) }, served
		})
	})
	b.Run("http.Server.Shutdown", func(b *testing.B) {
		benchDrain(b, func(srv *http.Server) (string, <-chan struct{}, func() error, <-chan error) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			started := make(chan struct{})
			srv.RegisterOnShutdown(func() { close(started) })
			served := make(chan error, 1)
			go func() {
				if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
					served <- err
				}
				close(served)
			}()
			return ln.Addr().String(), started, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				return srv.Shutdown(ctx)
			}, served
		})
	})
}

// A serveFunc serves srv and returns its address, a channel closed when
// the drain has started, the call that shuts it down, and one that
// delivers the serving's error (or closes) once it has ended.
type serveFunc func(srv *http.Server) (addr string, started <-chan struct{}, shutdown func() error, served <-chan error)

func benchDrain(b *testing.B, serve serveFunc) {
	var total time.Duration
	n := 0
	for b.Loop() {
		total += drainOnce(b, serve)
		n++
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(n), "ns/drain")
}

func drainOnce(b *testing.B, serve serveFunc) time.Duration {
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
	addr, started, shutdown, served := serve(srv)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	got := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/")
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
	if err := <-served; err != nil {
		b.Fatalf("Serve: %v", err)
	}
	return d
}
