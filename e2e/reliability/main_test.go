// Package reliability_test finds the worst case of a lameduck HTTP
// service under load, faults and abuse (issue 7): ten thousand long polls
// drained over HTTP/2, a thousand server-sent event streams ended at the
// drain, clients that never read or trickle their headers, handlers that
// panic, hijack, ignore their context or write after the drain timeout,
// the lifecycle called in the wrong order, and probe storms. Every test
// asserts its outcome: nothing lost, nothing hung, counts exact, exit on
// time.
//
// Servers listen on 127.0.0.1:0; every load is bounded in count and time.
// The figures the tests measure are logged (go test -v) and collected in
// the README's reliability section.
package reliability_test

import (
	"testing"

	"github.com/lameduck/lameduck/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
