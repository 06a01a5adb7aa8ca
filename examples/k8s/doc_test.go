// Package k8s holds the Kubernetes manifests of the examples and [Check],
// which proves that a manifest and the flags of its container agree, so
// that a pod spec that would be SIGKILLed mid-drain cannot land.
//
// # The manifests
//
// Each file is ready to apply (Deployment, Service, PodDisruptionBudget;
// the images are placeholders to replace with your builds):
//
//   - chi.yaml: examples/chi with no preStop hook, the choice to make with
//     lameduck: the in-process hold does what a preStop sleep would.
//   - chi-prestop-sleep.yaml: the native preStop sleep action
//     (Kubernetes ≥ 1.30) followed by a short in-process hold.
//   - chi-prestop-exec.yaml: the same with an exec of sleep, for older
//     clusters and images that have a sleep binary.
//   - chi-prestop-http.yaml: the preStop trigger of
//     [github.com/lameduck/lameduck/core.Lifecycle.PreStopHandler] on an
//     admin port that no Service exposes and a NetworkPolicy closes.
//   - grpc.yaml: examples/grpc with native gRPC probes.
//
// docs/kubernetes.md explains how to choose the numbers in them.
//
// # What Check proves
//
// Check decodes every document strictly into a model of the subset of the
// Kubernetes API that the manifests use: a field that is not modelled is
// an error, so a typo (or a new field) cannot slip by unchecked. Then, for
// each Deployment, it parses the container's args with the examples' own
// flag parser and checks that
//
//	preStop + hold + drain timeout + margin ≤ terminationGracePeriodSeconds
//
// where the preStop term is the sleep of a sleep or exec hook (a preStop
// trigger's hold is the hold itself) and the margin is 2 s or 10 % of the
// grace period, whichever is larger: the rule of core.CheckBudget, which
// decides, the one the example services apply to their own flags (and
// that core.New applies with WithGracePeriod); that -grace is the time the process
// really gets between SIGTERM and SIGKILL; that the rollout never removes
// a ready pod before its replacement is ready; that readiness, liveness
// and startup probes hit the right endpoints on the serving port; that a
// Service and a PodDisruptionBudget select the pods; and that an admin
// port serving the preStop trigger is exposed by no Service.
package k8s
