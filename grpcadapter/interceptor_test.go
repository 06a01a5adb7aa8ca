package grpcadapter_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/grpcadapter"
)

// drainTimeout is the drain timeout of the lifecycles of the interceptor
// tests: a request still tracked is abandoned after it.
const drainTimeout = 100 * time.Millisecond

// stopped returns a lifecycle whose shutdown has finished.
func stopped(t *testing.T) *core.Lifecycle {
	t.Helper()
	lc := newLifecycle(t, core.WithHold(0))
	if err := lc.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	return lc
}

// abandoned runs the shutdown of lc and returns the number of requests it
// abandoned: those still tracked, 0 if it drained.
func abandoned(t *testing.T, lc *core.Lifecycle) int64 {
	t.Helper()
	err := lc.Shutdown(t.Context())
	var fe *core.ForcedError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &fe):
		return fe.Abandoned
	}
	t.Fatalf("Shutdown: %v", err)
	return -1
}

func TestUnaryServerInterceptor(t *testing.T) {
	work := &grpc.UnaryServerInfo{FullMethod: workMethod}
	probe := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	cases := []struct {
		name          string
		stopped       bool
		info          *grpc.UnaryServerInfo
		wantCalled    bool
		wantAbandoned int64 // by a shutdown run from the handler
		wantCode      codes.Code
	}{
		{"serving_tracks", false, work, true, 1, codes.OK},
		{"health_untracked", false, probe, true, 0, codes.OK},
		{"after_stop_refused", true, work, false, 0, codes.Unavailable},
		{"after_stop_health_served", true, probe, true, 0, codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lc := newLifecycle(t, core.WithDrainTimeout(drainTimeout))
			if tc.stopped {
				lc = stopped(t)
			}
			called, n := false, int64(-1)
			_, err := grpcadapter.UnaryInterceptor(lc)(t.Context(), "req", tc.info,
				func(context.Context, any) (any, error) {
					// The shutdown waits for the tracked handler, and
					// abandons it at the drain timeout.
					called, n = true, abandoned(t, lc)
					return "resp", nil
				})
			wantCode(t, "interceptor", err, tc.wantCode)
			if called != tc.wantCalled {
				t.Errorf("handler called: got %v, want %v", called, tc.wantCalled)
			}
			if called && n != tc.wantAbandoned {
				t.Errorf("abandoned by a shutdown run from the handler: got %d, want %d", n, tc.wantAbandoned)
			}
		})
	}
}

// TestInterceptorsServeInTheDrain: an RPC that reaches the interceptors
// once the drain began is served and tracked, unary or streaming:
// refusing it is left to GracefulStop's GOAWAY.
func TestInterceptorsServeInTheDrain(t *testing.T) {
	lc := newLifecycle(t, core.WithDrainTimeout(hang))
	unary, stream := grpcadapter.UnaryInterceptor(lc), grpcadapter.StreamInterceptor(lc)
	info := &grpc.UnaryServerInfo{FullMethod: workMethod}
	// A tracked RPC keeps the drain open.
	started, release, first := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := unary(context.Background(), nil, info, func(context.Context, any) (any, error) {
			close(started)
			<-release
			return "resp", nil
		})
		first <- err
	}()
	<-started
	done := shutdown(t.Context(), lc)
	<-lc.Reached(core.Draining)

	// The drain waits for the RPCs that arrive now too.
	inDrain, releaseDrain, second := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := unary(t.Context(), nil, info, func(context.Context, any) (any, error) {
			close(inDrain)
			<-releaseDrain
			return "resp", nil
		})
		second <- err
	}()
	within(t, "unary handler in the drain", inDrain, hang)
	called := false
	err := stream(nil, fakeStream{ctx: t.Context()}, &grpc.StreamServerInfo{FullMethod: ticksMethod},
		func(any, grpc.ServerStream) error { called = true; return nil })
	if err != nil || !called {
		t.Errorf("stream in the drain: handler called %v, error %v; want it served", called, err)
	}
	close(release)
	if err := within(t, "first RPC", first, hang); err != nil {
		t.Errorf("RPC in flight at the drain: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with an RPC of the drain in flight: untracked", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(releaseDrain)
	if err := within(t, "RPC of the drain", second, hang); err != nil {
		t.Errorf("RPC that arrived in the drain: %v, want it served", err)
	}
	if err := within(t, "Shutdown", done, hang); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

func TestUnaryServerInterceptorPanic(t *testing.T) {
	lc := newLifecycle(t, core.WithDrainTimeout(drainTimeout))
	icpt := grpcadapter.UnaryInterceptor(lc)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the handler's panic", r)
			}
		}()
		_, _ = icpt(t.Context(), nil, &grpc.UnaryServerInfo{FullMethod: workMethod},
			func(context.Context, any) (any, error) { panic("boom") })
	}()
	if n := abandoned(t, lc); n != 0 {
		t.Errorf("abandoned after a panic: got %d, want 0: the panic leaked the count", n)
	}
}

func TestStreamServerInterceptorPanic(t *testing.T) {
	lc := newLifecycle(t, core.WithDrainTimeout(drainTimeout))
	icpt := grpcadapter.StreamInterceptor(lc)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the handler's panic", r)
			}
		}()
		_ = icpt(nil, fakeStream{ctx: t.Context()}, &grpc.StreamServerInfo{FullMethod: ticksMethod},
			func(any, grpc.ServerStream) error { panic("boom") })
	}()
	if n := abandoned(t, lc); n != 0 {
		t.Errorf("abandoned after a panic: got %d, want 0: the panic leaked the count", n)
	}
}

// TestStreamServerInterceptorAfterStop: once the lifecycle stopped, a
// stream is refused before its handler runs.
func TestStreamServerInterceptorAfterStop(t *testing.T) {
	lc := stopped(t)
	icpt := grpcadapter.StreamInterceptor(lc)
	called := false
	err := icpt(nil, fakeStream{ctx: t.Context()}, &grpc.StreamServerInfo{FullMethod: ticksMethod},
		func(any, grpc.ServerStream) error { called = true; return nil })
	wantCode(t, "stream after the stop", err, codes.Unavailable)
	if called {
		t.Error("handler called after the lifecycle stopped")
	}
}

// fakeStream is a grpc.ServerStream with a context, for calling the
// stream interceptor directly.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }
