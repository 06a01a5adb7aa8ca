package grpcadapter_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/grpcadapter"
	"github.com/lameduck/lameduck/health"
)

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
	unknown    = healthpb.HealthCheckResponse_SERVICE_UNKNOWN

	liveness = grpcadapter.LivenessService

	// hang bounds waits that only a bug makes long.
	hang = 20 * time.Second
)

type statusCase struct {
	service string
	want    healthpb.HealthCheckResponse_ServingStatus
}

func checkAll(t *testing.T, e *env, when string, cases []statusCase) {
	t.Helper()
	for _, c := range cases {
		if got := e.check(t, c.service); got != c.want {
			t.Errorf("%s: Check(%q) = %v, want %v", when, c.service, got, c.want)
		}
	}
}

func TestHealthBeforeAndAfterReady(t *testing.T) {
	e := newEnv(t, envConfig{starting: true})
	checkAll(t, e, "before Run", []statusCase{{"", notServing}, {serviceName, notServing}, {liveness, serving}})
	e.run(t)
	checkAll(t, e, "serving", []statusCase{{"", serving}, {serviceName, serving}, {liveness, serving}})

	_, err := e.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	wantCode(t, "Check of an unknown service", err, codes.NotFound)
	_, err = e.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: healthpb.Health_ServiceDesc.ServiceName})
	wantCode(t, "Check of grpc.health.v1 itself", err, codes.NotFound)

	w := e.watch(t, t.Context(), "no.such.Service")
	if got := next(t, w); got != unknown {
		t.Errorf("Watch of an unknown service = %v, want %v", got, unknown)
	}

	l, err := e.health.List(t.Context(), &healthpb.HealthListRequest{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for name, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{"": serving, serviceName: serving, liveness: serving} {
		if got := l.GetStatuses()[name].GetStatus(); got != want {
			t.Errorf("List[%q] = %v, want %v", name, got, want)
		}
	}
}

// TestRegisterAfterListen: services registered on the server after Listen
// (the only order there is: Listen builds the server) report readiness.
func TestRegisterAfterListen(t *testing.T) {
	other := testServiceDesc
	other.ServiceName = "lameduck.test.Other"
	e := newEnv(t, envConfig{starting: true, core: []core.Option{core.WithHold(time.Hour)},
		register: func(srv *grpcadapter.Server) { srv.RegisterService(&other, &testService{}) }})
	checkAll(t, e, "before Run", []statusCase{{serviceName, notServing}, {other.ServiceName, notServing}})
	e.run(t)
	checkAll(t, e, "serving", []statusCase{{"", serving}, {serviceName, serving}, {other.ServiceName, serving}, {liveness, serving}})
	w := e.watch(t, t.Context(), other.ServiceName)
	if got := next(t, w); got != serving {
		t.Fatalf("Watch(%q) serving = %v, want %v", other.ServiceName, got, serving)
	}

	done := shutdown(t.Context(), e.lc)
	<-e.lc.Reached(core.Holding)
	if got := next(t, w); got != notServing {
		t.Errorf("Watch(%q) in the hold = %v, want %v", other.ServiceName, got, notServing)
	}
	checkAll(t, e, "in the hold", []statusCase{{"", notServing}, {serviceName, notServing}, {other.ServiceName, notServing}, {liveness, serving}})
	e.lc.Force(nil) // cut the hour short
	var fe *core.ForcedError
	if err := within(t, "forced shutdown", done, hang); !errors.As(err, &fe) {
		t.Errorf("Shutdown = %v, want a *core.ForcedError", err)
	}
}

func TestHealthChecks(t *testing.T) {
	var dbDown, deadlocked atomic.Bool
	e := newEnv(t, envConfig{
		health: []health.Option{
			health.WithReadinessChecks(health.NamedCheck("db", func(context.Context) error {
				if dbDown.Load() {
					return errors.New("db down")
				}
				return nil
			})),
			health.WithLivenessChecks(health.NamedCheck("worker", func(context.Context) error {
				if deadlocked.Load() {
					return errors.New("deadlocked")
				}
				return nil
			})),
		},
		interval: 5 * time.Millisecond,
	})
	ready := e.watch(t, t.Context(), "")
	if got := next(t, ready); got != serving {
		t.Fatalf("Watch(\"\") first = %v, want %v", got, serving)
	}
	live := e.watch(t, t.Context(), liveness)
	if got := next(t, live); got != serving {
		t.Fatalf("Watch(liveness) first = %v, want %v", got, serving)
	}

	dbDown.Store(true)
	// Nobody calls Check: the watcher learns it from the periodic
	// evaluation.
	if got := next(t, ready); got != notServing {
		t.Errorf("Watch(\"\") after the db went down = %v, want %v", got, notServing)
	}
	if got := e.check(t, ""); got != notServing {
		t.Errorf("Check(\"\") with the db down = %v, want %v", got, notServing)
	}
	if got := e.check(t, liveness); got != serving {
		t.Errorf("Check(liveness) with the db down = %v, want %v: a dependency must not fail liveness", got, serving)
	}
	dbDown.Store(false)
	if got := next(t, ready); got != serving {
		t.Errorf("Watch(\"\") after the db came back = %v, want %v", got, serving)
	}

	deadlocked.Store(true)
	if got := next(t, live); got != notServing {
		t.Errorf("Watch(liveness) with a failing liveness check = %v, want %v", got, notServing)
	}
	if got := e.check(t, liveness); got != notServing {
		t.Errorf("Check(liveness) with a failing liveness check = %v, want %v", got, notServing)
	}
	if got := e.check(t, ""); got != serving {
		t.Errorf("Check(\"\") with a failing liveness check = %v, want %v", got, serving)
	}
}

func TestHealthWithoutHealth(t *testing.T) {
	e := newEnv(t, envConfig{noH: true, starting: true, core: []core.Option{core.WithHold(time.Hour)}})
	checkAll(t, e, "before Run", []statusCase{{"", notServing}, {serviceName, notServing}, {liveness, serving}})
	e.run(t)
	checkAll(t, e, "serving", []statusCase{{"", serving}, {serviceName, serving}, {liveness, serving}})
	done := shutdown(t.Context(), e.lc)
	<-e.lc.Reached(core.Holding)
	checkAll(t, e, "in the hold", []statusCase{{"", notServing}, {serviceName, notServing}, {liveness, serving}})
	e.lc.Force(nil)
	within(t, "forced shutdown", done, hang)
}

// TestHold: the hold flips readiness at once, for Check and Watch, keeps
// liveness, and serves every RPC.
func TestHold(t *testing.T) {
	e := newEnv(t, envConfig{
		core:     []core.Option{core.WithHold(time.Hour)},
		interval: time.Hour, // no poll can help
	})
	ready := e.watch(t, t.Context(), "")
	if got := next(t, ready); got != serving {
		t.Fatalf("Watch(\"\") before the hold = %v, want %v", got, serving)
	}
	named := e.watch(t, t.Context(), serviceName)
	if got := next(t, named); got != serving {
		t.Fatalf("Watch(%q) before the hold = %v, want %v", serviceName, got, serving)
	}
	done := shutdown(t.Context(), e.lc)
	<-e.lc.Reached(core.Holding)
	if got := next(t, ready); got != notServing {
		t.Errorf("Watch(\"\") in the hold = %v, want %v", got, notServing)
	}
	if got := next(t, named); got != notServing {
		t.Errorf("Watch(%q) in the hold = %v, want %v", serviceName, got, notServing)
	}
	checkAll(t, e, "in the hold", []statusCase{{"", notServing}, {serviceName, notServing}, {liveness, serving}})
	if err := e.work(t.Context()); err != nil {
		t.Errorf("Work in the hold: %v, want it served", err)
	}
	if p := e.lc.Phase(); p != core.Holding {
		t.Errorf("phase = %v, want %v", p, core.Holding)
	}
	e.ticks(t, t.Context()) // a new stream is served too

	e.lc.Force(nil) // cut the hour short
	var fe *core.ForcedError
	if err := within(t, "forced shutdown", done, hang); !errors.As(err, &fe) {
		t.Errorf("Shutdown = %v, want a *core.ForcedError", err)
	}
	if err := e.wait(t); !errors.As(err, &fe) {
		t.Errorf("Run = %v, want a *core.ForcedError", err)
	}
}

// TestDrain walks the drain: streams and watches end with Unavailable,
// new RPCs are refused by the transport (GracefulStop's GOAWAY, then the
// closed listener) or served if they reached the server first, the
// in-flight unary RPC completes (GracefulStop waits for it) and Shutdown
// and Run return nil as soon as it has, long before the drain timeout.
func TestDrain(t *testing.T) {
	e := newEnv(t, envConfig{core: []core.Option{core.WithHold(0), core.WithDrainTimeout(time.Hour)}})
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	e.svc.work = func(context.Context) error {
		if calls.Add(1) == 1 { // the first Work is in flight at the drain; later ones return at once
			close(started)
			<-release
		}
		return nil
	}
	watches := map[string]healthpb.Health_WatchClient{}
	for _, s := range []string{"", liveness, "no.such.Service"} {
		watches[s] = e.watch(t, t.Context(), s)
		next(t, watches[s])
	}
	ticks := e.ticks(t, t.Context())
	inflight := make(chan error, 1)
	go func() { inflight <- e.work(context.Background()) }()
	<-started

	done := shutdown(t.Context(), e.lc)
	// Readiness: NOT_SERVING (the hold, however short), then Unavailable.
	if got := next(t, watches[""]); got != notServing {
		t.Errorf("Watch(\"\") at the shutdown = %v, want %v", got, notServing)
	}
	for s, w := range watches {
		_, err := w.Recv()
		wantCode(t, "Watch("+s+") at the drain", err, codes.Unavailable)
	}
	err := ticks.RecvMsg(new(any))
	wantCode(t, "Ticks at the drain", err, codes.Unavailable)

	<-e.lc.Reached(core.Draining)
	// Served if it reached the server before the client saw the GOAWAY;
	// otherwise the client's own Unavailable. Never lameduck's refusal.
	if err := e.work(t.Context()); err != nil {
		wantCode(t, "Work after the drain began", err, codes.Unavailable)
		if strings.Contains(err.Error(), "lameduck") {
			t.Errorf("Work after the drain began refused by lameduck: %v", err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with an RPC in flight", err)
	default:
	}

	close(release)
	if err := within(t, "in-flight Work", inflight, hang); err != nil {
		t.Errorf("in-flight Work = %v, want OK", err)
	}
	if err := within(t, "Shutdown", done, hang); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if err := e.wait(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

// TestDrainTimeout: a stuck RPC is abandoned at the drain timeout and
// counted, in the result of Shutdown and of Run; Stop cancels it.
func TestDrainTimeout(t *testing.T) {
	e := newEnv(t, envConfig{core: []core.Option{core.WithHold(0), core.WithDrainTimeout(100 * time.Millisecond)}})
	started := make(chan struct{})
	handlerErr := make(chan error, 1)
	e.svc.work = func(ctx context.Context) error {
		close(started)
		<-ctx.Done() // stuck until Stop cancels it
		handlerErr <- ctx.Err()
		return ctx.Err()
	}
	inflight := make(chan error, 1)
	go func() { inflight <- e.work(context.Background()) }()
	<-started

	err := within(t, "Shutdown", shutdown(t.Context(), e.lc), hang)
	var fe *core.ForcedError
	if !errors.As(err, &fe) || !errors.Is(err, core.ErrDrainTimeout) || fe.Abandoned != 1 {
		t.Fatalf("Shutdown = %v, want a *core.ForcedError with 1 abandoned and cause ErrDrainTimeout", err)
	}
	if err := e.wait(t); !errors.As(err, &fe) || fe.Abandoned != 1 {
		t.Errorf("Run = %v, want a *core.ForcedError with 1 abandoned", err)
	}
	if err := within(t, "stuck Work", inflight, hang); err == nil {
		t.Error("stuck Work succeeded, want an error")
	}
	if err := within(t, "stuck handler", handlerErr, hang); err == nil {
		t.Error("stuck handler's context not cancelled by Stop")
	}
}

// TestStreamEndings: how a handler's return maps to the client's status
// once the drain ended its stream; the drain finishes in every case.
func TestStreamEndings(t *testing.T) {
	cases := []struct {
		name   string
		handle func(ctx context.Context) error
		want   codes.Code
	}{
		{"ctx_err", func(ctx context.Context) error { return ctx.Err() }, codes.Unavailable},
		{"ctx_cause", func(ctx context.Context) error { return context.Cause(ctx) }, codes.Unavailable},
		{"canceled_status", func(ctx context.Context) error { return status.FromContextError(ctx.Err()).Err() }, codes.Unavailable},
		{"nil", func(context.Context) error { return nil }, codes.OK},
		{"own_status", func(context.Context) error { return status.Error(codes.Aborted, "bye") }, codes.Aborted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envConfig{core: []core.Option{core.WithHold(0), core.WithDrainTimeout(time.Hour)}})
			e.svc.ticks = func(stream grpc.ServerStream) error {
				if err := stream.SendMsg(&healthpb.HealthCheckResponse{}); err != nil {
					return err
				}
				<-stream.Context().Done()
				return tc.handle(stream.Context())
			}
			s := e.ticks(t, t.Context())
			done := shutdown(t.Context(), e.lc)
			err := s.RecvMsg(new(healthpb.HealthCheckResponse))
			if tc.want == codes.OK {
				if !errors.Is(err, io.EOF) {
					t.Errorf("Recv = %v, want io.EOF", err)
				}
			} else {
				wantCode(t, "Recv", err, tc.want)
			}
			if err := within(t, "Shutdown", done, hang); err != nil {
				t.Errorf("Shutdown = %v, want nil", err)
			}
		})
	}
}

// TestInterceptorOrder: lameduck's interceptors come first in the chain,
// so they track the time spent in the interceptors of the options passed
// to Listen, which all run.
func TestInterceptorOrder(t *testing.T) {
	var (
		mu    sync.Mutex
		calls []string
	)
	record := func(name string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, name)
	}
	release := make(chan struct{})
	var stuck atomic.Bool // the chained interceptors block until release
	started := make(chan string, 2)
	e := newEnv(t, envConfig{
		core: []core.Option{core.WithHold(0), core.WithDrainTimeout(100 * time.Millisecond)},
		grpc: []grpc.ServerOption{
			grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				record("unary")
				return h(ctx, req)
			}),
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if info.FullMethod == workMethod {
					record("chain-unary")
					if stuck.Load() {
						started <- "unary"
						<-release
					}
				}
				return h(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				if info.FullMethod == ticksMethod {
					record("chain-stream")
					if stuck.Load() {
						started <- "stream"
						<-release // ignores the stream's context, which the drain ends
					}
				}
				return h(srv, ss)
			}),
		},
	})
	defer close(release)
	if err := e.work(t.Context()); err != nil {
		t.Fatalf("Work: %v", err)
	}
	e.ticks(t, t.Context())
	mu.Lock()
	got := slices.Clone(calls)
	mu.Unlock()
	if want := []string{"unary", "chain-unary", "chain-stream"}; !slices.Equal(got, want) {
		t.Errorf("interceptors called: %q, want %q", got, want)
	}

	stuck.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = e.work(ctx) }()
	s, err := e.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, ticksMethod)
	if err != nil {
		t.Fatalf("open Ticks: %v", err)
	}
	if err := s.SendMsg(wrapperspb.UInt32(0)); err != nil {
		t.Fatalf("send Ticks: %v", err)
	}
	within(t, "first stuck interceptor", started, hang)
	within(t, "second stuck interceptor", started, hang)
	err = within(t, "Shutdown", shutdown(t.Context(), e.lc), hang)
	var fe *core.ForcedError
	if !errors.As(err, &fe) || fe.Abandoned != 2 {
		t.Errorf("Shutdown = %v, want a *core.ForcedError with 2 abandoned: the RPCs stuck in interceptors of the options must be tracked", err)
	}
}

// TestListenPortInUse: the listen error is Listen's, before anything runs.
func TestListenPortInUse(t *testing.T) {
	lc := newLifecycle(t)
	srv, err := grpcadapter.Listen(lc, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer func() {
		if err := lc.Shutdown(t.Context()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	lc2 := newLifecycle(t)
	srv2, err := grpcadapter.Listen(lc2, srv.Addr.String(), nil)
	if err == nil {
		srv2.Stop()
		t.Fatalf("second Listen on %v succeeded, want an error", srv.Addr)
	}
	if !strings.HasPrefix(err.Error(), "grpcadapter: listen") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second Listen = %q, want grpcadapter: listen ...: address already in use", err)
	}
	// Nothing was added to lc2: it runs and stops with no server.
	if err := lc2.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown of the second lifecycle: %v", err)
	}
}

// TestShutdownBeforeRun: a server never served still gives its port back.
func TestShutdownBeforeRun(t *testing.T) {
	lc := newLifecycle(t)
	srv, err := grpcadapter.Listen(lc, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if err := lc.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	lc2 := newLifecycle(t)
	if _, err := grpcadapter.Listen(lc2, srv.Addr.String(), nil); err != nil {
		t.Fatalf("Listen on the port of a server shut down before Run: %v", err)
	}
	if err := lc2.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestServerStoppedOutside: a server stopped behind the lifecycle's back
// is a failure that ends Run with an error.
func TestServerStoppedOutside(t *testing.T) {
	e := newEnv(t, envConfig{core: []core.Option{core.WithHold(0)}})
	e.srv.Stop()
	if err := e.wait(t); err == nil {
		t.Error("Run = nil after the server was stopped before the shutdown, want an error")
	}
}

func TestListenErrors(t *testing.T) {
	cases := []struct {
		name  string
		setup func(*testing.T) *core.Lifecycle
		opts  []grpc.ServerOption
		is    error
	}{
		{name: "nil_lifecycle", setup: func(*testing.T) *core.Lifecycle { return nil }},
		{name: "nil_option", opts: []grpc.ServerOption{grpc.MaxRecvMsgSize(1 << 20), nil}},
		{name: "bad_address", setup: nil, opts: nil},
		{name: "after_shutdown", is: core.ErrShuttingDown, setup: func(t *testing.T) *core.Lifecycle {
			lc := newLifecycle(t, core.WithHold(0))
			if err := lc.Shutdown(t.Context()); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			return lc
		}},
		{name: "while_serving", setup: func(t *testing.T) *core.Lifecycle {
			lc := newLifecycle(t, core.WithHold(0))
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- lc.Run(ctx) }()
			t.Cleanup(func() { cancel(); within(t, "Run", ran, hang) })
			within(t, "Serving", lc.Reached(core.Serving), hang)
			return lc
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lc := newLifecycle(t)
			if tc.setup != nil {
				lc = tc.setup(t)
			}
			addr := "127.0.0.1:0"
			if tc.name == "bad_address" {
				addr = "127.0.0.1:no-such-port"
			}
			srv, err := grpcadapter.Listen(lc, addr, nil, tc.opts...)
			if err == nil {
				srv.Stop()
				t.Fatal("Listen succeeded, want an error")
			}
			if srv != nil {
				t.Errorf("Listen returned a server with the error %v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Listen = %v, want %v", err, tc.is)
			}
			if tc.is == nil && !strings.HasPrefix(err.Error(), "grpcadapter: ") {
				t.Errorf("Listen = %q, want a grpcadapter: prefix", err)
			}
			if lc != nil && lc.Phase() == core.Starting {
				if err := lc.Shutdown(t.Context()); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			}
		})
	}
}
