package health

import "context"

// Test hooks: the external tests reach the unexported check API that
// grpcadapter's gRPC health builds on.

// Result is result.
type Result = result

// MaxNameLen is maxNameLen.
const MaxNameLen = maxNameLen

// ShutdownName and PingName are the built-in checks' names.
const (
	ShutdownName = shutdownName
	PingName     = pingName
)

// CheckReadiness is checkReadiness.
func (h *Health) CheckReadiness(ctx context.Context, exclude ...string) []Result {
	return h.checkReadiness(ctx, exclude...)
}

// CheckLiveness is checkLiveness.
func (h *Health) CheckLiveness(ctx context.Context, exclude ...string) []Result {
	return h.checkLiveness(ctx, exclude...)
}
