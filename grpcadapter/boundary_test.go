package grpcadapter_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lameduck/lameduck/core"
)

// TestNoRefusalAcrossHoldDrain pins the race of issue 14: unary RPCs in
// tight loops on one connection, from before the shutdown across the
// hold → drain boundary until the drain closed the server. lameduck
// refuses none of them: every RPC that reached the server is served, and
// the only failures are RPCs the client itself could not send once the
// GOAWAY had come and the listener was closed (Unavailable from the
// client, which the protocol makes safe to retry elsewhere): RPCs
// started once the drain began, or whose stream the client created only
// after the GOAWAY and then failed to dial a new connection. Repeated to
// give the race its chances.
func TestNoRefusalAcrossHoldDrain(t *testing.T) {
	const (
		workers = 8
		hold    = 100 * time.Millisecond
		after   = 50 * time.Millisecond // loops go on this long into the drain
		rounds  = 5
	)
	for round := range rounds {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			// seen records every RPC that reached the server's interceptors:
			// a grpc.UnaryInterceptor runs ahead of every chain, lameduck's
			// included.
			var seen sync.Map
			record := grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("rpc-id")) == 1 {
					seen.Store(md.Get("rpc-id")[0], true)
				}
				return h(ctx, req)
			})
			e := newEnv(t, envConfig{
				core: []core.Option{core.WithHold(hold), core.WithDrainTimeout(10 * time.Second)},
				grpc: []grpc.ServerOption{record},
			})
			e.svc.work = func(context.Context) error {
				time.Sleep(100 * time.Microsecond) // a short RPC, so that some are in flight at the boundary
				return nil
			}
			draining := e.lc.Reached(core.Draining)
			stop := make(chan struct{})

			type failure struct {
				id            string
				beforeDrain   bool
				err           error
				reachedServer bool
			}
			var (
				mu       sync.Mutex
				failures []failure
				ok       atomic.Int64
				warm     sync.WaitGroup
				wg       sync.WaitGroup
			)
			warm.Add(workers)
			for w := range workers {
				wg.Go(func() {
					first := true
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						id := strconv.Itoa(w) + "-" + strconv.Itoa(n)
						beforeDrain := true
						select {
						case <-draining:
							beforeDrain = false
						default:
						}
						ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "rpc-id", id), hang)
						err := e.conn.Invoke(ctx, workMethod, wrapperspb.UInt32(0), new(wrapperspb.StringValue))
						cancel()
						if err == nil {
							ok.Add(1)
						} else {
							mu.Lock()
							failures = append(failures, failure{id: id, beforeDrain: beforeDrain, err: err})
							mu.Unlock()
						}
						if first {
							first = false
							warm.Done()
						}
					}
				})
			}
			warm.Wait()                       // every loop has done an RPC
			time.Sleep(20 * time.Millisecond) // serving, in tight loops
			done := shutdown(t.Context(), e.lc)
			<-draining
			time.Sleep(after)
			close(stop)
			wg.Wait()
			if err := within(t, "Shutdown", done, hang); err != nil {
				t.Errorf("Shutdown = %v, want nil", err)
			}

			var refusedByLameduck, failedAccepted, failedBeforeDrain, byProtocol int
			for _, f := range failures {
				_, f.reachedServer = seen.Load(f.id)
				switch {
				case strings.Contains(f.err.Error(), "lameduck"):
					refusedByLameduck++
					t.Errorf("RPC %s refused by lameduck: %v", f.id, f.err)
				case f.reachedServer:
					failedAccepted++
					t.Errorf("RPC %s reached the server and failed: %v", f.id, f.err)
				case strings.Contains(f.err.Error(), "while dialing"):
					// Never sent: the GOAWAY came before the client
					// created the stream, whenever Invoke was called,
					// and the listener was closed.
					byProtocol++
				case f.beforeDrain:
					failedBeforeDrain++
					t.Errorf("RPC %s started before the drain and failed: %v", f.id, f.err)
				default:
					byProtocol++ // the client's own Unavailable after the GOAWAY
				}
			}
			t.Logf("%d RPCs succeeded; refused by the protocol, retryable: %d; refused by lameduck: %d; failed after reaching the server: %d; failed, started before the drain: %d",
				ok.Load(), byProtocol, refusedByLameduck, failedAccepted, failedBeforeDrain)
			if ok.Load() < workers {
				t.Errorf("only %d RPCs succeeded", ok.Load())
			}
		})
	}
}
