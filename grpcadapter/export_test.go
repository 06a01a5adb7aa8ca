package grpcadapter

import (
	"time"

	"google.golang.org/grpc"

	"github.com/lameduck/lameduck/core"
)

// Test hooks, compiled into the tests only.

// UnaryInterceptor is lameduck's unary interceptor for lc.
var UnaryInterceptor = unaryInterceptor

// StreamInterceptor is lameduck's stream interceptor for lc, with a set
// of open streams of its own.
func StreamInterceptor(lc *core.Lifecycle) grpc.StreamServerInterceptor {
	return streamInterceptor(lc, newStreams())
}

// SetWatchInterval sets how often the Watch streams of s re-evaluate
// readiness and liveness. Call it before the first Watch.
func SetWatchInterval(s *Server, d time.Duration) { s.b.hs.interval.Store(int64(d)) }

// LivenessService is the liveness service's name.
const LivenessService = livenessService
