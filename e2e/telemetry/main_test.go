// Package telemetry_test holds the tests of core that need the OpenTelemetry
// SDK (spans and metrics recorded in memory, the benchmark with the SDK
// installed). They live in the e2e module so that the library module does not
// require go.opentelemetry.io/otel/sdk: with module graph pruning, every
// requirement of a dependency's go.mod, test-only or not, is in its users'
// module graph.
package telemetry_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
