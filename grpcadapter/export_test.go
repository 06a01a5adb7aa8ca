package grpcadapter

import (
	"time"

	"google.golang.org/grpc"

	"github.com/lameduck/lameduck/core"
)

// Test hooks, compiled into the tests only.

// UnaryInterceptor is lameduck's unary interceptor for lc, with no
// connection accepted in the hold.
func UnaryInterceptor(lc *core.Lifecycle) grpc.UnaryServerInterceptor {
	return unaryInterceptor(lc, new(accepts))
}

// StreamInterceptor is lameduck's stream interceptor for lc, with a set
// of open streams of its own and no connection accepted in the hold.
func StreamInterceptor(lc *core.Lifecycle) grpc.StreamServerInterceptor {
	return streamInterceptor(lc, new(accepts), newStreams())
}

// SetWatchInterval sets how often the Watch streams of s re-evaluate
// readiness and liveness. Call it before the first Watch.
func SetWatchInterval(s *Server, d time.Duration) { s.b.hs.interval.Store(int64(d)) }

// LivenessService is the liveness service's name.
const LivenessService = livenessService
