package grpcadapter_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/grpcadapter"
	"github.com/lameduck/lameduck/health"
)

// testService is a hand-written gRPC service (no protoc): a unary Work and
// a server-streaming Ticks, whose behaviour each test sets.
type testService struct {
	work  func(ctx context.Context) error
	ticks func(stream grpc.ServerStream) error
}

const (
	serviceName = "lameduck.test.Test"
	workMethod  = "/" + serviceName + "/Work"
	ticksMethod = "/" + serviceName + "/Ticks"
)

var testServiceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Work",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.UInt32Value)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) {
				if err := srv.(*testService).work(ctx); err != nil {
					return nil, err
				}
				return wrapperspb.String("ok"), nil
			}
			if icpt == nil {
				return h(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: workMethod}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Ticks",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			in := new(wrapperspb.UInt32Value)
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			return srv.(*testService).ticks(stream)
		},
	}},
}

// ticksUntilDone sends one tick, then waits for the stream's context and
// returns its error, as a well-behaved long-lived stream does.
func ticksUntilDone(stream grpc.ServerStream) error {
	if err := stream.SendMsg(wrapperspb.UInt32(1)); err != nil {
		return err
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

// env is a lifecycle, a gRPC server built by Listen on loopback with the
// test service registered after Listen, and a client connection.
type env struct {
	lc     *core.Lifecycle
	srv    *grpcadapter.Server
	svc    *testService
	conn   *grpc.ClientConn
	health healthpb.HealthClient

	cancel context.CancelFunc // ends Run's context
	ran    chan struct{}      // closed when Run has returned
	runErr error
}

type envConfig struct {
	core     []core.Option
	health   []health.Option
	grpc     []grpc.ServerOption
	interval time.Duration // of the Watch streams, if not zero
	noH      bool
	// starting leaves Run to the test (e.run) and serves the server on an
	// in-memory listener as well, which the client uses: the lifecycle's
	// Starting phase can then be probed.
	starting bool
	// register registers more services, after Listen and before the
	// server serves.
	register func(*grpcadapter.Server)
}

func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	lc := newLifecycle(t, cfg.core...)
	var h *health.Health
	if !cfg.noH {
		var err error
		if h, err = health.New(lc, append([]health.Option{health.WithLogger(discardLogger())}, cfg.health...)...); err != nil {
			t.Fatalf("health.New: %v", err)
		}
	}
	e := &env{lc: lc, svc: &testService{
		work:  func(context.Context) error { return nil },
		ticks: ticksUntilDone,
	}}
	srv, err := grpcadapter.Listen(lc, "127.0.0.1:0", h, cfg.grpc...)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	e.srv = srv
	srv.RegisterService(&testServiceDesc, e.svc) // after Listen, as a service does
	if cfg.register != nil {
		cfg.register(srv)
	}
	if cfg.interval > 0 {
		grpcadapter.SetWatchInterval(srv, cfg.interval)
	}
	target, dialOpts := "passthrough:///"+srv.Addr.String(), []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	var memServed chan struct{}
	if cfg.starting {
		lis := bufconn.Listen(1 << 20)
		memServed = make(chan struct{})
		go func() { _ = srv.Serve(lis); close(memServed) }()
		target = "passthrough:///bufnet"
		dialOpts = append(dialOpts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	}
	if e.conn, err = grpc.NewClient(target, dialOpts...); err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	e.health = healthpb.NewHealthClient(e.conn)
	t.Cleanup(func() {
		e.conn.Close()
		if e.ran != nil {
			e.cancel()
			within(t, "Run to return", e.ran, hang)
		} else {
			// Never run: the shutdown stops the server all the same.
			if err := lc.Shutdown(t.Context()); err != nil {
				t.Errorf("Shutdown of a lifecycle never run: %v", err)
			}
		}
		if memServed != nil {
			within(t, "Serve on the in-memory listener", memServed, hang)
		}
	})
	if !cfg.starting {
		e.run(t)
	}
	return e
}

// run starts lc.Run and waits until the lifecycle is serving.
func (e *env) run(t *testing.T) {
	t.Helper()
	var ctx context.Context
	ctx, e.cancel = context.WithCancel(context.Background())
	e.ran = make(chan struct{})
	go func() { e.runErr = e.lc.Run(ctx); close(e.ran) }()
	within(t, "Serving", e.lc.Reached(core.Serving), hang)
}

// wait waits for Run to return and returns its result.
func (e *env) wait(t *testing.T) error {
	t.Helper()
	within(t, "Run to return", e.ran, hang)
	return e.runErr
}

// newLifecycle returns a lifecycle that logs nothing, catches no signal
// and, unless opts say otherwise, does not hold.
func newLifecycle(t testing.TB, opts ...core.Option) *core.Lifecycle {
	t.Helper()
	lc, err := core.New(append([]core.Option{core.WithLogger(discardLogger()), core.WithSignals(), core.WithHold(0)}, opts...)...)
	if err != nil {
		t.Fatalf("core.New: %v", err)
	}
	return lc
}

// work calls Work and returns its error.
func (e *env) work(ctx context.Context) error {
	return e.conn.Invoke(ctx, workMethod, wrapperspb.UInt32(0), new(wrapperspb.StringValue))
}

// ticks opens a Ticks stream and waits for its first tick. The stream
// fails rather than hang if nothing ends it.
func (e *env) ticks(t *testing.T, ctx context.Context) grpc.ClientStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, hang)
	t.Cleanup(cancel)
	s, err := e.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, ticksMethod)
	if err != nil {
		t.Fatalf("open Ticks: %v", err)
	}
	if err := s.SendMsg(wrapperspb.UInt32(0)); err != nil {
		t.Fatalf("send Ticks request: %v", err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatalf("close send: %v", err)
	}
	if err := s.RecvMsg(new(wrapperspb.UInt32Value)); err != nil {
		t.Fatalf("first tick: %v", err)
	}
	return s
}

// check returns the status of service, failing the test on an error.
func (e *env) check(t *testing.T, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	r, err := e.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("Check(%q): %v", service, err)
	}
	return r.GetStatus()
}

// watch opens a Watch stream for service, which fails rather than hang
// if nothing ends it.
func (e *env) watch(t *testing.T, ctx context.Context, service string) healthpb.Health_WatchClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, hang)
	t.Cleanup(cancel)
	w, err := e.health.Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("Watch(%q): %v", service, err)
	}
	return w
}

// next receives the next status of a Watch stream, failing the test on an
// error.
func next(t *testing.T, w healthpb.Health_WatchClient) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	r, err := w.Recv()
	if err != nil {
		t.Fatalf("Watch Recv: %v", err)
	}
	return r.GetStatus()
}

// shutdown starts the shutdown sequence in a goroutine and returns its
// result channel. ctx bounds the wait only.
func shutdown(ctx context.Context, lc *core.Lifecycle) <-chan error {
	done := make(chan error, 1)
	go func() { done <- lc.Shutdown(ctx) }()
	return done
}

// wantCode fails the test unless err has code want.
func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: got code %v (%v), want %v", what, got, err, want)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// within fails the test unless ch delivers within d, a bound that only a
// hang reaches.
func within[T any](t *testing.T, what string, ch <-chan T, d time.Duration) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: nothing within %v", what, d)
		panic("unreachable")
	}
}
