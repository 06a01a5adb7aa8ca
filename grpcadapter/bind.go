package grpcadapter

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// Bind ties srv to lc and serves grpc.health.v1 on it from the same state
// as /readyz and /healthz of h:
//
//   - service "" and every service registered on srv so far (plus those
//     named by [WithServices]) report readiness: SERVING only while lc is
//     serving and every readiness check of h passes (h.Ready), evaluated
//     on each Check and, while Watch streams are open, every
//     [WithWatchInterval];
//   - the liveness service ([WithLivenessService], "liveness" unless set)
//     reports SERVING until the process exits, unless a liveness check of
//     h fails; the shutdown never flips it;
//   - any other name is NOT_FOUND for Check and SERVICE_UNKNOWN for Watch,
//     as the protocol says;
//   - the hold sets readiness to NOT_SERVING at once, for Check and for
//     every open Watch stream, while every RPC is still served;
//   - the drain ends the Watch streams with codes.Unavailable (after
//     sending the last status) and calls srv.GracefulStop, which refuses
//     new RPCs and returns when the in-flight ones have finished;
//   - at the drain timeout, srv.Stop closes what is left, and the
//     lifecycle reports the RPCs still tracked as abandoned.
//
// Install the interceptors too ([ServerOptions]): they track the RPCs
// that the drain waits for and end open streams, which GracefulStop alone
// would wait for forever.
//
// Call Bind after registering the services and before srv.Serve. A nil h
// reports readiness from lc's phase alone and liveness as SERVING. Bind
// returns an error when srv already has a grpc.health.v1 service, when an
// option is invalid, or [core.ErrShuttingDown] once the drain has started.
//
// The goroutine running GracefulStop ends when the last handler returns:
// after srv.Stop, that is when every handler that watches its context has
// returned. Bind starts no other goroutine that outlives a Watch stream.
func Bind(lc *core.Lifecycle, srv *grpc.Server, h *health.Health, opts ...Option) error {
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	info := srv.GetServiceInfo()
	if _, ok := info[healthgrpc.Health_ServiceDesc.ServiceName]; ok {
		return fmt.Errorf("grpcadapter: %s is already registered on the server; Bind registers its own", healthgrpc.Health_ServiceDesc.ServiceName)
	}
	names := []string{""}
	for name := range info {
		names = append(names, name)
	}
	for _, name := range cfg.services {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names[1:])
	if slices.Contains(names, cfg.liveness) {
		return fmt.Errorf("grpcadapter: liveness service %q is also a served service; pick another name with WithLivenessService", cfg.liveness)
	}

	ready := func(context.Context) bool { return true } // lc's phase is checked anyway
	live := ready
	if h != nil {
		ready = h.Ready
		live = func(ctx context.Context) bool {
			for _, r := range h.CheckLiveness(ctx) {
				if r.Err != nil {
					return false
				}
			}
			return true
		}
	}
	b := &binding{srv: srv, hs: newHealthService(lc, ready, live, names, cfg)}
	if err := lc.Register(b); err != nil {
		return err
	}
	healthgrpc.RegisterHealthServer(srv, b.hs)
	return nil
}

// binding is the [core.Server] of a *grpc.Server.
type binding struct {
	srv *grpc.Server
	hs  *healthService

	once    sync.Once
	stopped chan struct{} // closed when GracefulStop returns
}

func (b *binding) Hold() { b.hs.hold() }

// Drain ends the Watch streams and runs GracefulStop, which takes no
// context, in a goroutine; it returns when GracefulStop does or when ctx
// ends, whichever is first.
func (b *binding) Drain(ctx context.Context) error {
	b.once.Do(func() {
		b.stopped = make(chan struct{})
		_ = b.hs.watches.Drain(ctx)
		go func() {
			b.srv.GracefulStop()
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
	return nil
}
