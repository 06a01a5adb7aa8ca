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
// neither tracked nor refused nor reported to the adaptive hold, like the
// HTTP probe paths: the kubelet keeps probing during termination, on a
// fresh connection each time.
const healthPrefix = "/grpc.health.v1.Health/"

// Errors sent to clients. Both have the code Unavailable, which clients
// and proxies treat as retryable: the RPC did not run (stopped) or the
// stream may be reopened on another server (ended).
var (
	errStopped = status.Error(codes.Unavailable, "lameduck: server stopped, RPC not run")
	errEnded   = status.Error(codes.Unavailable, "lameduck: server draining, stream ended")
)

// unaryInterceptor returns an interceptor that tracks each unary RPC as
// in-flight work of lc ([core.Lifecycle.Begin]), so that the drain waits
// for it and the drain timeout counts it as abandoned, and reports it to
// the adaptive hold ([core.Lifecycle.Arrived], through acc). A handler
// that panics still ends its tracking. Health RPCs (grpc.health.v1) are
// neither tracked nor reported.
//
// Every RPC that reaches it is served, in the hold and in the drain:
// refusing the RPCs that arrive once the drain began is left to
// GracefulStop, whose GOAWAY tells the client which streams the server
// never processed, and grpc-go retries those transparently. An RPC the
// server accepted cannot be retried that way, so refusing it here would
// fail it. The one refusal left is after the lifecycle stopped
// (Begin returns false): the drain is over or was cut at the drain
// timeout, every connection is closed (Stop), so no response could reach
// the client, who sees its connection fail with codes.Unavailable either
// way; nothing waits for a handler started then, and the process may
// exit in the middle of it. Not running it means no side effect begins
// that would be cut half-way. It does not allocate; while serving it
// costs Begin and End, and one atomic load for the adaptive hold.
func unaryInterceptor(lc *core.Lifecycle, acc *accepts) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if strings.HasPrefix(info.FullMethod, healthPrefix) {
			return handler(ctx, req)
		}
		if lc.Phase() == core.Holding { // the one phase in which Arrived does anything
			acc.arrived(lc, ctx)
		}
		if !lc.Begin() {
			return nil, errStopped
		}
		defer lc.End()
		return handler(ctx, req)
	}
}

// streamInterceptor returns an interceptor that tracks each streaming RPC
// as in-flight work of lc and reports it to the adaptive hold, like
// [unaryInterceptor] (it refuses only once the lifecycle stopped, for
// the same reason), and adds it to open, whose Drain ends it: the context
// the handler sees (ServerStream.Context) is cancelled with a cause that
// is a status error with codes.Unavailable. A handler that then returns
// the context's error (ctx.Err(), or a codes.Canceled status) has it
// replaced by that Unavailable status, which clients treat as retryable;
// other errors and a nil error are passed on unchanged. A stream opened
// once the drain began (the client sent it before it saw the GOAWAY) is
// not refused: its handler runs, with a context already ended, as it
// would be had it opened a moment earlier.
//
// Only the handler's context is cancelled: grpc-go offers no way to wake
// a handler blocked in RecvMsg or in a flow-controlled SendMsg, so such a
// handler should receive in a goroutine and select on the context (the
// receiving goroutine ends when the handler returns). One that does not
// is closed at the drain timeout. The interceptor starts no goroutine.
func streamInterceptor(lc *core.Lifecycle, acc *accepts, open *streams) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if strings.HasPrefix(info.FullMethod, healthPrefix) {
			return handler(srv, ss)
		}
		if lc.Phase() == core.Holding {
			acc.arrived(lc, ss.Context())
		}
		if !lc.Begin() {
			return errStopped
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
