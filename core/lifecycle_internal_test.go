package core

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestMarkReadyRacingShutdown checks that once the shutdown has started,
// MarkReady cannot make the service ready again. The move to Holding used
// to happen on the sequence's goroutine, so a MarkReady right after start
// moved the phase from Starting to Serving and the service reported ready
// while shutting down.
func TestMarkReadyRacingShutdown(t *testing.T) {
	for i := range 200 {
		l, err := New(WithHold(time.Hour), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			t.Fatal(err)
		}
		done := l.start("api")
		l.MarkReady()
		if got := l.Phase(); got != Holding && got != Draining && got != Stopped {
			t.Fatalf("iteration %d: phase after start and MarkReady: got %v, want holding or later", i, got)
		}
		if l.Phase() == Serving {
			t.Fatalf("iteration %d: Ready() after the shutdown started: got true, want false", i)
		}
		// The service was not ready when the shutdown started, so the
		// hour-long hold must be skipped; 10s only bounds a failure.
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("iteration %d: a shutdown started before MarkReady is holding: got the hold, want none", i)
		}
	}
}
