package telemetry_test

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/lameduck/lameduck/core"
)

// TestTelemetryAdaptiveHold checks the hold span of an adaptive hold: the
// actual hold, how it ended, its configuration and how long before its
// end the last new traffic arrived; and the phase-duration histogram
// records the actual hold.
func TestTelemetryAdaptiveHold(t *testing.T) {
	const (
		holdMin   = 100 * time.Millisecond
		holdQuiet = 300 * time.Millisecond
		holdMax   = 5 * time.Second
	)
	l, rig := newTelemetryLifecycle(t, core.WithHold(holdMin), core.WithAdaptiveHold(holdQuiet, holdMax), core.WithDrainTimeout(time.Second))
	run(t, l)
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Holding), "Reached(Holding)")
	l.Arrived(time.Now()) // a request on a connection accepted after the hold began
	if err := recv(t, res, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	hold := spansByName(t, rig.spans)[spanHold]
	num := func(k attribute.Key) float64 {
		t.Helper()
		v, ok := attr(hold, k)
		if !ok {
			t.Fatalf("hold span: no %s", k)
		}
		return v.AsFloat64()
	}
	if v, _ := attr(hold, "lameduck.hold.ended_by"); v.AsString() != "quiet" {
		t.Errorf("lameduck.hold.ended_by: got %q, want quiet", v.AsString())
	}
	for k, want := range map[attribute.Key]float64{"lameduck.hold.min": holdMin.Seconds(), "lameduck.hold.quiet": holdQuiet.Seconds(), "lameduck.hold.max": holdMax.Seconds()} {
		if got := num(k); got != want {
			t.Errorf("%s: got %v, want %v", k, got, want)
		}
	}
	// The arrival came at the hold's start, so the hold ended quiet after
	// it; the upper bounds only absorb a loaded machine.
	actual, last := num("lameduck.hold.actual"), num("lameduck.hold.last_new_traffic_before_end")
	if actual < holdQuiet.Seconds() || actual > holdMax.Seconds()/2 {
		t.Errorf("lameduck.hold.actual: got %vs, want about the quiet time %v", actual, holdQuiet)
	}
	if last < holdQuiet.Seconds() || last > actual {
		t.Errorf("lameduck.hold.last_new_traffic_before_end: got %vs, want at least the quiet time %v and at most the hold %vs", last, holdQuiet, actual)
	}
	if got := histogramCounts(t, collect(t, rig.reader), "lameduck.phase.duration")["hold"]; got != 1 {
		t.Errorf("hold duration samples: got %d, want 1", got)
	}
}
