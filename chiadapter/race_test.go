//go:build race

package chiadapter_test

// raceEnabled: sync.Pool drops items at random under the race detector,
// so chi's context pool allocates and allocation counts mean nothing.
const raceEnabled = true
