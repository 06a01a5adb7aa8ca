package grpcadapter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// Server is a *grpc.Server built by [Listen], and the address it listens
// on. Register services on it (it is a grpc.ServiceRegistrar); do not
// call its Serve, GracefulStop or Stop: the lifecycle does.
type Server struct {
	*grpc.Server
	// Addr is the address the server listens on: with port 0 in the
	// address given to Listen, it has the port the system chose.
	Addr net.Addr

	b *binding
}

// Listen listens on the TCP address addr now, builds a *grpc.Server with
// opts and lameduck's interceptors, serves grpc.health.v1 on it from h,
// and adds it to lc, which serves it from [core.Lifecycle.Run] on and
// drains it at the shutdown. Register the services on the returned
// server after Listen and before lc.Run:
//
//	srv, err := grpcadapter.Listen(lc, ":9090", h)
//	if err != nil { ... } // a port in use, say
//	pb.RegisterGreeterServer(srv, greeter)
//	err = lc.Run(ctx)
//
// The interceptors track every RPC but the health ones with
// [core.Lifecycle.Begin], so that the drain waits for them and the drain
// timeout counts them as abandoned, and end the open streams at the
// drain (see the package documentation). They serve every RPC that
// reaches them, in the hold and in the drain: the RPCs that arrive once
// the drain began are refused by GracefulStop's GOAWAY, which tells the
// client they were not processed, and grpc-go retries them. Only once lc
// has stopped, when every connection is closed, does an RPC that still
// reaches them fail, with codes.Unavailable, before its handler runs.
// They come first in the chain, ahead of the interceptors of
// grpc.ChainUnaryInterceptor and grpc.ChainStreamInterceptor options in
// opts, so that they track the time spent in those too; grpc-go runs the
// single interceptor of a grpc.UnaryInterceptor or grpc.StreamInterceptor
// option before any chain, so one set that way is not tracked.
//
// With [core.WithAdaptiveHold], every RPC but the health ones that
// arrives on a connection accepted after the hold began is new traffic
// ([core.Lifecycle.Arrived]) and extends the hold: a client or a load
// balancer that still routes here opens connections. The RPCs of
// connections opened before the hold (a client's pinned HTTP/2
// connection keeps sending until it gets its GOAWAY) do not, nor do
// health RPCs (the kubelet's gRPC probe opens a connection for each
// Check). The listener records the accept time of the connections it
// accepts in the hold; nothing is added to the RPC path while serving
// but an atomic load, and no grpc.StatsHandler is installed.
//
// grpc.health.v1 reports readiness for "" and for every service
// registered on the server, whenever it was registered: SERVING only
// while lc is serving and h is ready ([health.Health.Ready]). The service
// "liveness" reports [health.Health.Live]. A nil h reports readiness from
// lc's phase alone and liveness as SERVING. Do not register another
// grpc.health.v1 service: grpc-go exits on a duplicate registration.
//
// Listen returns an error for a nil lc or a nil option, the listen error
// (a port in use, say), an error when lc's Run is serving already (a
// server that serves can register no service), and
// [core.ErrShuttingDown] once the shutdown has started.
func Listen(lc *core.Lifecycle, addr string, h *health.Health, opts ...grpc.ServerOption) (*Server, error) {
	if err := checkArgs(lc, opts); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("grpcadapter: listen: %w", err)
	}
	s, err := listen(lc, ln, h, opts)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return s, nil
}

func checkArgs(lc *core.Lifecycle, opts []grpc.ServerOption) error {
	if lc == nil {
		return errors.New("grpcadapter: Listen with a nil *core.Lifecycle")
	}
	for i, o := range opts {
		if o == nil {
			return fmt.Errorf("grpcadapter: Listen: option %d is nil", i)
		}
	}
	if lc.Phase() == core.Serving {
		return errors.New("grpcadapter: Listen after lc.Run started serving: the server would serve at once, and grpc-go registers no service on a server that serves; call Listen before Run")
	}
	return nil
}

// listen builds the server on ln and adds it to lc.
func listen(lc *core.Lifecycle, ln net.Listener, h *health.Health, opts []grpc.ServerOption) (*Server, error) {
	ready := func(context.Context) bool { return lc.Phase() == core.Serving }
	live := func(context.Context) bool { return true }
	if h != nil {
		ready, live = h.Ready, h.Live
	}
	open, acc := newStreams(), new(accepts)
	all := make([]grpc.ServerOption, 0, len(opts)+2)
	all = append(all,
		grpc.ChainUnaryInterceptor(unaryInterceptor(lc, acc)),
		grpc.ChainStreamInterceptor(streamInterceptor(lc, acc, open)))
	srv := grpc.NewServer(append(all, opts...)...)
	hs := newHealthService(lc, srv, ready, live, open)
	healthgrpc.RegisterHealthServer(srv, hs)
	b := &binding{srv: srv, ln: &acceptListener{Listener: ln, lc: lc, accepts: acc}, hs: hs, open: open, acc: acc}
	if err := lc.Add(b); err != nil {
		srv.Stop()
		return nil, err
	}
	return &Server{Server: srv, Addr: ln.Addr(), b: b}, nil
}

// binding is the [core.Server] of a *grpc.Server.
type binding struct {
	srv  *grpc.Server
	ln   net.Listener // records the accepts of the hold in acc
	hs   *healthService
	open *streams // the open streams, Watch streams included
	acc  *accepts

	once    sync.Once
	stopped chan struct{} // closed when GracefulStop returns
}

// Serve serves on the listener until the drain stops the server.
func (b *binding) Serve() error {
	err := b.srv.Serve(b.ln)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil // Serve called after the drain stopped the server
	}
	return err
}

// Hold reports NOT_SERVING for readiness; every RPC is still served.
func (b *binding) Hold() { b.hs.hold() }

// Drain ends the open streams and runs GracefulStop, which takes no
// context, in a goroutine; it returns when GracefulStop does or when ctx
// ends, whichever is first. The goroutine ends when the last handler
// returns: after Close, when every handler that watches its context has.
// The accept times of the hold are dropped: the hold is over.
func (b *binding) Drain(ctx context.Context) error {
	b.once.Do(func() {
		b.stopped = make(chan struct{})
		b.acc.reset()
		_ = b.open.Drain(ctx)
		go func() {
			b.srv.GracefulStop()
			b.ln.Close() // in case Serve was never called
			close(b.stopped)
		}()
	})
	select {
	case <-b.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close calls Stop, which closes every connection and cancels the
// contexts of the RPCs still running. It does not wait for their
// handlers: one that ignores its context would keep the process from
// exiting at the drain timeout.
func (b *binding) Close() error {
	b.srv.Stop()
	b.ln.Close()
	return nil
}
