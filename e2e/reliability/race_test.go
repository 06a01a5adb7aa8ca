//go:build race

package reliability_test

// raceEnabled: the race detector slows goroutine switches several times,
// so timing bounds that measure latency are looser under it.
const raceEnabled = true
