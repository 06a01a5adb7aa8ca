package main

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The demo service, written by hand so that no protoc step is needed:
//
//	service lameduck.demo.Demo {
//	  // Work waits the given milliseconds (or until the client goes
//	  // away) and answers "ok".
//	  rpc Work(google.protobuf.UInt32Value) returns (google.protobuf.StringValue);
//	  // Ticks sends 1, 2, 3... every given milliseconds until the client
//	  // goes away or the drain ends the stream.
//	  rpc Ticks(google.protobuf.UInt32Value) returns (stream google.protobuf.UInt32Value);
//	}
const (
	demoService = "lameduck.demo.Demo"
	maxWorkMs   = 3_600_000 // an hour
	minTickMs   = 10
)

var demoDesc = grpc.ServiceDesc{
	ServiceName: demoService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Work",
		Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.UInt32Value)
			if err := dec(in); err != nil {
				return nil, err
			}
			if icpt == nil {
				return work(ctx, in)
			}
			info := &grpc.UnaryServerInfo{FullMethod: "/" + demoService + "/Work"}
			return icpt(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return work(ctx, req.(*wrapperspb.UInt32Value))
			})
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Ticks",
		ServerStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			in := new(wrapperspb.UInt32Value)
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			return ticks(in, stream)
		},
	}},
}

// work waits in.Value milliseconds and answers "ok".
func work(ctx context.Context, in *wrapperspb.UInt32Value) (*wrapperspb.StringValue, error) {
	if in.GetValue() > maxWorkMs {
		return nil, status.Errorf(codes.InvalidArgument, "ms must be at most %d, got %d", maxWorkMs, in.GetValue())
	}
	if d := time.Duration(in.GetValue()) * time.Millisecond; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return wrapperspb.String("ok"), nil
}

// ticks streams a counter every in.Value milliseconds until the stream's
// context ends: the client went away, or the drain started (the
// interceptor then turns the context's error into Unavailable).
func ticks(in *wrapperspb.UInt32Value, stream grpc.ServerStream) error {
	every := in.GetValue()
	if every < minTickMs || every > maxWorkMs {
		return status.Errorf(codes.InvalidArgument, "interval must be %d to %d ms, got %d", minTickMs, maxWorkMs, every)
	}
	t := time.NewTicker(time.Duration(every) * time.Millisecond)
	defer t.Stop()
	for n := uint32(1); ; n++ {
		if err := stream.SendMsg(wrapperspb.UInt32(n)); err != nil {
			return err
		}
		select {
		case <-t.C:
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}
