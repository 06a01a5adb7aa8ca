package grpcadapter_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/grpcadapter"
	"github.com/lameduck/lameduck/health"
)

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
	unknown    = healthpb.HealthCheckResponse_SERVICE_UNKNOWN

	// hang bounds waits that only a bug makes long.
	hang = 20 * time.Second
)

func TestHealthBeforeAndAfterReady(t *testing.T) {
	e := newEnv(t, envConfig{})
	for _, c := range []struct {
		service string
		want    healthpb.HealthCheckResponse_ServingStatus
	}{{"", notServing}, {serviceName, notServing}, {"liveness", serving}} {
		if got := e.check(t, c.service); got != c.want {
			t.Errorf("before MarkReady: Check(%q) = %v, want %v", c.service, got, c.want)
		}
	}
	e.lc.MarkReady()
	for _, c := range []struct {
		service string
		want    healthpb.HealthCheckResponse_ServingStatus
	}{{"", serving}, {serviceName, serving}, {"liveness", serving}} {
		if got := e.check(t, c.service); got != c.want {
			t.Errorf("after MarkReady: Check(%q) = %v, want %v", c.service, got, c.want)
		}
	}
	_, err := e.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	wantCode(t, "Check of an unknown service", err, codes.NotFound)

	w := e.watch(t, t.Context(), "no.such.Service")
	if got := next(t, w); got != unknown {
		t.Errorf("Watch of an unknown service = %v, want %v", got, unknown)
	}

	l, err := e.health.List(t.Context(), &healthpb.HealthListRequest{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for name, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{"": serving, serviceName: serving, "liveness": serving} {
		if got := l.GetStatuses()[name].GetStatus(); got != want {
			t.Errorf("List[%q] = %v, want %v", name, got, want)
		}
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
		bind: []grpcadapter.Option{grpcadapter.WithWatchInterval(5 * time.Millisecond), grpcadapter.WithLivenessService("alive")},
	})
	e.lc.MarkReady()
	ready := e.watch(t, t.Context(), "")
	if got := next(t, ready); got != serving {
		t.Fatalf("Watch(\"\") first = %v, want %v", got, serving)
	}
	live := e.watch(t, t.Context(), "alive")
	if got := next(t, live); got != serving {
		t.Fatalf("Watch(alive) first = %v, want %v", got, serving)
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
	if got := e.check(t, "alive"); got != serving {
		t.Errorf("Check(alive) with the db down = %v, want %v: a dependency must not fail liveness", got, serving)
	}
	dbDown.Store(false)
	if got := next(t, ready); got != serving {
		t.Errorf("Watch(\"\") after the db came back = %v, want %v", got, serving)
	}

	deadlocked.Store(true)
	if got := next(t, live); got != notServing {
		t.Errorf("Watch(alive) with a failing liveness check = %v, want %v", got, notServing)
	}
	if got := e.check(t, "alive"); got != notServing {
		t.Errorf("Check(alive) with a failing liveness check = %v, want %v", got, notServing)
	}
	if got := e.check(t, ""); got != serving {
		t.Errorf("Check(\"\") with a failing liveness check = %v, want %v", got, serving)
	}
}

func TestHealthWithoutHealth(t *testing.T) {
	e := newEnv(t, envConfig{noH: true})
	if got := e.check(t, ""); got != notServing {
		t.Errorf("Check(\"\") before MarkReady = %v, want %v", got, notServing)
	}
	e.lc.MarkReady()
	if got := e.check(t, ""); got != serving {
		t.Errorf("Check(\"\") after MarkReady = %v, want %v", got, serving)
	}
	if got := e.check(t, "liveness"); got != serving {
		t.Errorf("Check(liveness) = %v, want %v", got, serving)
	}
}

// TestHold: the hold flips readiness at once, for Check and Watch, keeps
// liveness, and serves every RPC.
func TestHold(t *testing.T) {
	e := newEnv(t, envConfig{
		core: []core.Option{core.WithHold(time.Hour)},
		bind: []grpcadapter.Option{grpcadapter.WithWatchInterval(time.Hour)}, // no poll can help
	})
	e.lc.MarkReady()
	ready := e.watch(t, t.Context(), "")
	if got := next(t, ready); got != serving {
		t.Fatalf("Watch(\"\") before the hold = %v, want %v", got, serving)
	}
	named := e.watch(t, t.Context(), serviceName)
	if got := next(t, named); got != serving {
		t.Fatalf("Watch(%q) before the hold = %v, want %v", serviceName, got, serving)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := shutdown(ctx, e.lc)
	<-e.lc.Holding()
	if got := next(t, ready); got != notServing {
		t.Errorf("Watch(\"\") in the hold = %v, want %v", got, notServing)
	}
	if got := next(t, named); got != notServing {
		t.Errorf("Watch(%q) in the hold = %v, want %v", serviceName, got, notServing)
	}
	for _, c := range []struct {
		service string
		want    healthpb.HealthCheckResponse_ServingStatus
	}{{"", notServing}, {serviceName, notServing}, {"liveness", serving}} {
		if got := e.check(t, c.service); got != c.want {
			t.Errorf("in the hold: Check(%q) = %v, want %v", c.service, got, c.want)
		}
	}
	if err := e.work(t.Context()); err != nil {
		t.Errorf("Work in the hold: %v, want it served", err)
	}
	if p := e.lc.Phase(); p != core.Holding {
		t.Errorf("phase = %v, want %v", p, core.Holding)
	}
	e.ticks(t, t.Context()) // a new stream is served too

	cancel() // cut the hour short: a forced shutdown
	var fe *core.ForcedError
	if err := within(t, "forced shutdown", done, hang); !errors.As(err, &fe) {
		t.Errorf("Shutdown = %v, want a *core.ForcedError", err)
	}
}

// TestDrain walks the drain: streams and watches end with Unavailable,
// new RPCs are refused, the in-flight unary RPC completes and Shutdown
// returns nil as soon as it has, long before the drain timeout.
func TestDrain(t *testing.T) {
	e := newEnv(t, envConfig{core: []core.Option{core.WithHold(0), core.WithDrainTimeout(time.Hour)}})
	started, release := make(chan struct{}), make(chan struct{})
	e.svc.work = func(context.Context) error {
		close(started)
		<-release
		return nil
	}
	e.lc.MarkReady()
	watches := map[string]healthpb.Health_WatchClient{}
	for _, s := range []string{"", "liveness", "no.such.Service"} {
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

	<-e.lc.Draining()
	wantCode(t, "Work after the drain began", e.work(t.Context()), codes.Unavailable)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with an RPC in flight", err)
	default:
	}
	if n := e.lc.InFlight(); n != 1 {
		t.Errorf("in flight = %d, want 1", n)
	}

	close(release)
	if err := within(t, "in-flight Work", inflight, hang); err != nil {
		t.Errorf("in-flight Work = %v, want OK", err)
	}
	if err := within(t, "Shutdown", done, hang); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	within(t, "Serve", e.served, hang)
}

// TestDrainTimeout: a stuck RPC is abandoned at the drain timeout and
// counted; Stop cancels it.
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
	e.lc.MarkReady()
	inflight := make(chan error, 1)
	go func() { inflight <- e.work(context.Background()) }()
	<-started

	err := within(t, "Shutdown", shutdown(t.Context(), e.lc), hang)
	var fe *core.ForcedError
	if !errors.As(err, &fe) || !errors.Is(err, core.ErrDrainTimeout) || fe.Abandoned != 1 {
		t.Fatalf("Shutdown = %v, want a *core.ForcedError with 1 abandoned and cause ErrDrainTimeout", err)
	}
	if err := within(t, "stuck Work", inflight, hang); err == nil {
		t.Error("stuck Work succeeded, want an error")
	}
	if err := within(t, "stuck handler", handlerErr, hang); err == nil {
		t.Error("stuck handler's context not cancelled by Stop")
	}
}

// TestStreamEndings: how a handler's return maps to the client's status
// once the drain ended its stream.
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
			e.lc.MarkReady()
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

func TestBindErrors(t *testing.T) {
	cases := []struct {
		name  string
		setup func(*testing.T, *core.Lifecycle, *grpc.Server)
		opts  []grpcadapter.Option
		is    error
	}{
		{name: "health_already_registered", setup: func(_ *testing.T, _ *core.Lifecycle, s *grpc.Server) {
			healthpb.RegisterHealthServer(s, grpchealth.NewServer())
		}},
		{name: "empty_liveness", opts: []grpcadapter.Option{grpcadapter.WithLivenessService("")}},
		{name: "zero_interval", opts: []grpcadapter.Option{grpcadapter.WithWatchInterval(0)}},
		{name: "liveness_is_a_service", opts: []grpcadapter.Option{grpcadapter.WithLivenessService(serviceName)}, setup: func(_ *testing.T, _ *core.Lifecycle, s *grpc.Server) {
			s.RegisterService(&testServiceDesc, &testService{})
		}},
		{name: "liveness_in_services", opts: []grpcadapter.Option{grpcadapter.WithServices("a", "liveness")}},
		{name: "after_drain", is: core.ErrShuttingDown, setup: func(t *testing.T, lc *core.Lifecycle, _ *grpc.Server) {
			lc.MarkReady()
			if err := lc.Shutdown(t.Context()); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lc := newLifecycle(t, core.WithHold(0))
			srv := grpc.NewServer()
			defer srv.Stop()
			if tc.setup != nil {
				tc.setup(t, lc, srv)
			}
			err := grpcadapter.Bind(lc, srv, nil, tc.opts...)
			if err == nil {
				t.Fatal("Bind succeeded, want an error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Bind = %v, want %v", err, tc.is)
			}
			if tc.is == nil && !strings.HasPrefix(err.Error(), "grpcadapter: ") {
				t.Errorf("Bind = %q, want a grpcadapter: prefix", err)
			}
		})
	}
}
