package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain makes the test binary a backend when the demo logic under test
// re-executes it (see backendEnv), as the demo does with itself.
func TestMain(m *testing.M) {
	if b := os.Getenv(backendEnv); b != "" {
		os.Exit(backendMain(b, os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}
