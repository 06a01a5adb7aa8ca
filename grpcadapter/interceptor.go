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

// unaryInterceptor returns an interceptor that tracks each unary RPC as
// in-flight work of lc ([core.Lifecycle.Begin]), so that the drain waits
// for it and the drain timeout counts it as abandoned. A handler that
// panics still ends its tracking. An RPC that arrives after the drain
// began is refused with codes.Unavailable before the handler runs.
// During the hold every RPC is served. Health RPCs (grpc.health.v1) are
// neither tracked nor refused. It adds no allocation.
func unaryInterceptor(lc *core.Lifecycle) grpc.UnaryServerInterceptor {
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

// streamInterceptor returns an interceptor that tracks each streaming RPC
// as in-flight work of lc, like [unaryInterceptor], and adds it to open,
// whose Drain ends it: the context the handler sees (ServerStream.Context)
// is cancelled with a cause that is a status error with
// codes.Unavailable. A handler that then returns the context's error
// (ctx.Err(), or a codes.Canceled status) has it replaced by that
// Unavailable status, which clients treat as retryable; other errors and
// a nil error are passed on unchanged.
//
// Only the handler's context is cancelled: grpc-go offers no way to wake
// a handler blocked in RecvMsg or in a flow-controlled SendMsg, so such a
// handler should receive in a goroutine and select on the context (the
// receiving goroutine ends when the handler returns). One that does not
// is closed at the drain timeout. The interceptor starts no goroutine.
func streamInterceptor(lc *core.Lifecycle, open *streams) grpc.StreamServerInterceptor {
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

// streams is the set of open streams that the drain ends. Its Drain
// cancels their contexts and returns at once: waiting for them is the job
// of the in-flight tracking and of GracefulStop.
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
