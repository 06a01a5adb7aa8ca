package grpcadapter_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/grpcadapter"
)

func newLifecycle(t *testing.T, opts ...core.Option) *core.Lifecycle {
	t.Helper()
	lc, err := core.New(append([]core.Option{core.WithLogger(discardLogger())}, opts...)...)
	if err != nil {
		t.Fatalf("core.New: %v", err)
	}
	return lc
}

// stopped returns a lifecycle whose shutdown has finished.
func stopped(t *testing.T) *core.Lifecycle {
	t.Helper()
	lc := newLifecycle(t, core.WithHold(0))
	lc.MarkReady()
	if err := lc.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	return lc
}

func TestUnaryServerInterceptor(t *testing.T) {
	work := &grpc.UnaryServerInfo{FullMethod: workMethod}
	probe := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	cases := []struct {
		name         string
		stopped      bool
		info         *grpc.UnaryServerInfo
		wantCalled   bool
		wantInFlight int64 // seen by the handler
		wantCode     codes.Code
	}{
		{"serving_tracks", false, work, true, 1, codes.OK},
		{"health_untracked", false, probe, true, 0, codes.OK},
		{"after_drain_refused", true, work, false, 0, codes.Unavailable},
		{"after_drain_health_served", true, probe, true, 0, codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lc := newLifecycle(t)
			if tc.stopped {
				lc = stopped(t)
			}
			called, inflight := false, int64(-1)
			_, err := grpcadapter.UnaryServerInterceptor(lc)(t.Context(), "req", tc.info,
				func(context.Context, any) (any, error) {
					called, inflight = true, lc.InFlight()
					return "resp", nil
				})
			wantCode(t, "interceptor", err, tc.wantCode)
			if called != tc.wantCalled {
				t.Errorf("handler called: got %v, want %v", called, tc.wantCalled)
			}
			if called && inflight != tc.wantInFlight {
				t.Errorf("in flight in the handler: got %d, want %d", inflight, tc.wantInFlight)
			}
			if n := lc.InFlight(); n != 0 {
				t.Errorf("in flight after the call: got %d, want 0", n)
			}
		})
	}
}

func TestUnaryServerInterceptorPanic(t *testing.T) {
	lc := newLifecycle(t)
	icpt := grpcadapter.UnaryServerInterceptor(lc)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the handler's panic", r)
			}
		}()
		_, _ = icpt(t.Context(), nil, &grpc.UnaryServerInfo{FullMethod: workMethod},
			func(context.Context, any) (any, error) { panic("boom") })
	}()
	if n := lc.InFlight(); n != 0 {
		t.Errorf("in flight after a panic: got %d, want 0", n)
	}
}

func TestStreamServerInterceptorPanic(t *testing.T) {
	lc := newLifecycle(t)
	icpt := grpcadapter.StreamServerInterceptor(lc)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the handler's panic", r)
			}
		}()
		_ = icpt(nil, fakeStream{ctx: t.Context()}, &grpc.StreamServerInfo{FullMethod: ticksMethod},
			func(any, grpc.ServerStream) error { panic("boom") })
	}()
	if n := lc.InFlight(); n != 0 {
		t.Errorf("in flight after a panic: got %d, want 0", n)
	}
}

func TestStreamServerInterceptorAfterDrain(t *testing.T) {
	lc := stopped(t)
	// Built after the drain: Register fails, and streams are still refused.
	icpt := grpcadapter.StreamServerInterceptor(lc)
	called := false
	err := icpt(nil, fakeStream{ctx: t.Context()}, &grpc.StreamServerInfo{FullMethod: ticksMethod},
		func(any, grpc.ServerStream) error { called = true; return nil })
	wantCode(t, "stream after the drain", err, codes.Unavailable)
	if called {
		t.Error("handler called after the drain began")
	}
}

// fakeStream is a grpc.ServerStream with a context, for calling the
// stream interceptor directly.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }
