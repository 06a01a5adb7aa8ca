package grpcadapter

import (
	"context"
	"errors"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lameduck/lameduck/core"
)

// healthPrefix starts the full method names of grpc.health.v1, which are
// neither tracked nor refused, like the HTTP probe paths: the kubelet
// keeps probing during termination.
const healthPrefix = "/grpc.health.v1.Health/"

// Errors sent to clients. Both have the code Unavailable, which clients
// and proxies treat as retryable: the RPC did not run (refused) or the
// stream may be reopened on another server (ended).
var (
	errRefused = status.Error(codes.Unavailable, "lameduck: server draining, not accepting new RPCs")
	errEnded   = status.Error(codes.Unavailable, "lameduck: server draining, stream ended")
)

// UnaryServerInterceptor returns an interceptor that tracks each unary
// RPC as in-flight work of lc ([core.Lifecycle.Begin]), so that the drain
// waits for it and the drain timeout counts it as abandoned. A handler
// that panics still ends its tracking. An RPC that arrives after the
// drain began is refused with codes.Unavailable before the handler runs.
// During the hold every RPC is served. Health RPCs (grpc.health.v1) are
// neither tracked nor refused.
//
// The interceptor adds no allocation; put it first in the chain so that
// it counts the time spent in the other interceptors too. See
// [ServerOptions] to install both interceptors at once.
func UnaryServerInterceptor(lc *core.Lifecycle) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if strings.HasPrefix(info.FullMethod, healthPrefix) {
			return handler(ctx, req)
		}
		if !lc.Begin() {
			return nil, errRefused
		}
		defer lc.End()
		return handler(ctx, req)
	}
}

// StreamServerInterceptor returns an interceptor that tracks each
// streaming RPC as in-flight work of lc, like [UnaryServerInterceptor],
// and ends open streams when the drain starts: the context the handler
// sees (ServerStream.Context) is cancelled with a cause that is a status
// error with codes.Unavailable. A handler that then returns the context's
// error (ctx.Err(), or a codes.Canceled status) has it replaced by that
// Unavailable status, which clients treat as retryable; other errors and
// a nil error are passed on unchanged.
//
// Only the handler's context is cancelled: grpc-go offers no way to wake
// a handler blocked in RecvMsg or in a flow-controlled SendMsg, so such a
// handler should receive in a goroutine and select on the context (the
// receiving goroutine ends when the handler returns). One that does not
// is closed at the drain timeout.
//
// The interceptor registers itself with lc (see [core.Lifecycle.Register])
// to learn when the drain starts; it starts no goroutine.
func StreamServerInterceptor(lc *core.Lifecycle) grpc.StreamServerInterceptor {
	open := newStreams()
	if err := lc.Register(open); err != nil {
		open.Drain(context.Background()) // the drain already started: end every stream at once
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if strings.HasPrefix(info.FullMethod, healthPrefix) {
			return handler(srv, ss)
		}
		if !lc.Begin() {
			return errRefused
		}
		defer lc.End()
		ds := open.add(ss)
		defer open.remove(ds)
		return ds.result(handler(srv, ds))
	}
}

// ServerOptions returns the grpc.ServerOptions that install
// [UnaryServerInterceptor] and [StreamServerInterceptor] for lc, ahead of
// the interceptors of later Chain options (grpc-go runs one set with
// grpc.UnaryInterceptor or grpc.StreamInterceptor before any chain):
//
//	srv := grpc.NewServer(append(grpcadapter.ServerOptions(lc), otherOpts...)...)
func ServerOptions(lc *core.Lifecycle) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(UnaryServerInterceptor(lc)),
		grpc.ChainStreamInterceptor(StreamServerInterceptor(lc)),
	}
}

// streams is the set of open streams that the drain ends. It is a
// [core.Server] whose Drain cancels their contexts and returns at once:
// waiting for them is the job of the in-flight tracking and of
// GracefulStop.
type streams struct {
	mu       sync.Mutex
	draining bool
	open     map[*drainStream]struct{}
}

func newStreams() *streams { return &streams{open: make(map[*drainStream]struct{})} }

// add wraps ss in a stream whose context ends when the drain starts, at
// once if it already has.
func (r *streams) add(ss grpc.ServerStream) *drainStream {
	ctx, cancel := context.WithCancelCause(ss.Context())
	ds := &drainStream{ServerStream: ss, ctx: ctx, cancel: cancel}
	r.mu.Lock()
	draining := r.draining
	if !draining {
		r.open[ds] = struct{}{}
	}
	r.mu.Unlock()
	if draining {
		cancel(errEnded)
	}
	return ds
}

func (r *streams) remove(ds *drainStream) {
	r.mu.Lock()
	delete(r.open, ds)
	r.mu.Unlock()
	ds.cancel(context.Canceled)
}

// len returns the number of open streams.
func (r *streams) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.open)
}

// Hold does nothing: streams are served during the hold.
func (r *streams) Hold() {}

// Drain ends every open stream, and every stream opened later.
func (r *streams) Drain(context.Context) error {
	r.mu.Lock()
	r.draining = true
	open := make([]*drainStream, 0, len(r.open))
	for ds := range r.open {
		open = append(open, ds)
	}
	r.mu.Unlock()
	for _, ds := range open {
		ds.cancel(errEnded)
	}
	return nil
}

// Close does nothing: closing the server cancels what is left.
func (r *streams) Close() error { return nil }

// drainStream is a grpc.ServerStream whose context ends when the drain
// starts.
type drainStream struct {
	grpc.ServerStream
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (s *drainStream) Context() context.Context { return s.ctx }

// ended reports whether the drain ended the stream.
func (s *drainStream) ended() bool { return context.Cause(s.ctx) == errEnded }

// result maps the handler's error: a stream the drain ended, whose handler
// returned the context's error, ends with Unavailable.
func (s *drainStream) result(err error) error {
	if err == nil || !s.ended() {
		return err
	}
	if err == errEnded || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return errEnded
	}
	return err
}
