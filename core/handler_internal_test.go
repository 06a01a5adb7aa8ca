package core

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkHandler measures the request path of ListenHTTP's handler on a
// request whose context is shaped as net/http's (the server, the local
// address, the connection's info, two cancels), against the bare handler.
func BenchmarkHandler(b *testing.B) {
	l, err := New(WithLogger(slog.New(slog.DiscardHandler)), WithSignals())
	if err != nil {
		b.Fatal(err)
	}
	l.markReady()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	ctx := context.WithValue(context.Background(), http.ServerContextKey, &http.Server{})
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, nil)
	ctx = context.WithValue(ctx, connKey{}, &connInfo{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	req := httptest.NewRequest(http.MethodGet, "/work", nil).WithContext(ctx)
	for _, hc := range []struct {
		name string
		h    http.Handler
	}{{"bare", ok}, {"lameduck", &handler{l: l, next: ok}}} {
		b.Run(hc.name, func(b *testing.B) {
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				hc.h.ServeHTTP(w, req)
			}
		})
	}
}
