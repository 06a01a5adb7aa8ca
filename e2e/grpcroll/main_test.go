// Package grpcroll_test is the gRPC twin of the HAProxy test (issue 14):
// rolling restarts of examples/grpc under paced unary load, with grpc-go
// client defaults (no retry policy, no wait-for-ready), through three
// models of how a Kubernetes client reaches a Service's pods:
//
//   - haproxy_tcp: a ClusterIP Service. HAProxy in mode tcp pins each
//     client connection to one backend (kube-proxy's conntrack); four
//     pick_first channels go through it. Removal puts the server in
//     maintenance through the runtime API: no new connection goes to it,
//     established ones stay.
//   - l4_latency: the same, through an in-process L4 proxy that also
//     delays every forwarded chunk by 2ms each way, the network between
//     pods; without latency the races of a shutdown are microseconds wide
//     and hide. Removal drops the endpoint from the proxy's list.
//   - round_robin: a headless Service. Four channels balance round_robin
//     over a manual resolver, with client-side health checking
//     (grpc.health.v1, service ""); the resolver drops the old address
//     after the removal delay.
//
// Each rollout replaces three instances one by one, the way a Deployment
// with maxSurge 1 and maxUnavailable 0 does: start a new instance, wait
// until grpc.health.v1 says SERVING, add it to the balancer, SIGTERM the
// old one and remove it from the balancer after a random delay within the
// hold (the endpoints' propagation). Besides the unary load, each channel
// keeps a server stream (Ticks) open, which the drain ends with
// UNAVAILABLE; its client reopens it elsewhere, which counts as a
// success.
//
// lameduck must fail no RPC, in every run. The control, the same example
// with -hold 0 (GracefulStop at SIGTERM, no hold) behind l4_latency,
// must fail some, which proves the test can see failures.
//
// Servers listen on 127.0.0.1 only; every load and loop is bounded in
// count and time; every process is killed when its test ends. Under
// CI=true a missing haproxy fails the test instead of skipping it.
package grpcroll_test

import (
	"testing"

	"github.com/lameduck/lameduck/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
