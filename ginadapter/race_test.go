//go:build race

package ginadapter_test

// raceEnabled: sync.Pool drops items at random under the race detector,
// so gin's context pool allocates and allocation counts mean nothing.
const raceEnabled = true
