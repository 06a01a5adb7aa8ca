package grpcadapter_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lameduck/lameduck/grpcadapter"
)

// BenchmarkUnary is a whole unary RPC over bufconn, on a bare server and
// on one built by Listen, in the same run: the difference is what
// lameduck adds.
func BenchmarkUnary(b *testing.B) {
	for _, bc := range []struct {
		name  string
		build func(*testing.B) (srv *grpc.Server, stop func())
	}{
		{"bare", func(b *testing.B) (*grpc.Server, func()) {
			srv := grpc.NewServer()
			return srv, srv.Stop
		}},
		{"lameduck", func(b *testing.B) (*grpc.Server, func()) {
			lc := newLifecycle(b)
			srv, err := grpcadapter.Listen(lc, "127.0.0.1:0", nil)
			if err != nil {
				b.Fatal(err)
			}
			return srv.Server, func() {
				if err := lc.Shutdown(context.Background()); err != nil {
					b.Error(err)
				}
			}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv, stop := bc.build(b)
			srv.RegisterService(&testServiceDesc, &testService{work: func(context.Context) error { return nil }})
			lis := bufconn.Listen(1 << 20)
			served := make(chan struct{})
			go func() { _ = srv.Serve(lis); close(served) }()
			defer func() { stop(); <-served }()
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
	lc := newLifecycle(b)
	icpt := grpcadapter.UnaryInterceptor(lc)
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
