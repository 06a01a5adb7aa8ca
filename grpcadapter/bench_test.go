package grpcadapter_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/grpcadapter"
)

// BenchmarkUnary is a whole unary RPC over bufconn, without and with the
// interceptors, in the same run: the difference is what lameduck adds.
func BenchmarkUnary(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts func(*core.Lifecycle) []grpc.ServerOption
	}{
		{"bare", func(*core.Lifecycle) []grpc.ServerOption { return nil }},
		{"lameduck", grpcadapter.ServerOptions},
	} {
		b.Run(bc.name, func(b *testing.B) {
			lc, err := core.New(core.WithLogger(discardLogger()))
			if err != nil {
				b.Fatal(err)
			}
			lc.MarkReady()
			srv := grpc.NewServer(bc.opts(lc)...)
			srv.RegisterService(&testServiceDesc, &testService{work: func(context.Context) error { return nil }})
			lis := bufconn.Listen(1 << 20)
			go srv.Serve(lis)
			defer srv.Stop()
			conn, err := grpc.NewClient("passthrough:///bufnet",
				grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
				grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			ctx := b.Context()
			in, out := wrapperspb.UInt32(0), new(wrapperspb.StringValue)
			b.ReportAllocs()
			for b.Loop() {
				if err := conn.Invoke(ctx, workMethod, in, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnaryInterceptor isolates the interceptor: the handler called
// directly, and through the interceptor.
func BenchmarkUnaryInterceptor(b *testing.B) {
	lc, err := core.New(core.WithLogger(discardLogger()))
	if err != nil {
		b.Fatal(err)
	}
	lc.MarkReady()
	icpt := grpcadapter.UnaryServerInterceptor(lc)
	info := &grpc.UnaryServerInfo{FullMethod: workMethod}
	resp := wrapperspb.String("ok")
	handler := func(context.Context, any) (any, error) { return resp, nil }
	ctx, req := b.Context(), any(wrapperspb.UInt32(0))
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := handler(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lameduck", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := icpt(ctx, req, info, handler); err != nil {
				b.Fatal(err)
			}
		}
	})
}
