package telemetry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

type telemetryRig struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
}

func newTelemetryLifecycle(t *testing.T, opts ...core.Option) (*core.Lifecycle, telemetryRig) {
	t.Helper()
	rig := telemetryRig{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rig.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rig.reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	opts = append(opts, core.WithTracerProvider(tp), core.WithMeterProvider(mp))
	return newLifecycle(t, opts...), rig
}

func spansByName(t *testing.T, sr *tracetest.SpanRecorder) map[string]sdktrace.ReadOnlySpan {
	t.Helper()
	m := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range sr.Ended() {
		if _, dup := m[s.Name()]; dup {
			t.Fatalf("span %q recorded twice", s.Name())
		}
		m[s.Name()] = s
	}
	for _, n := range []string{spanShutdown, spanHold, spanDrain} {
		if _, ok := m[n]; !ok {
			t.Fatalf("spans: got %v, want %q among them", keys(m), n)
		}
	}
	if len(m) != 3 {
		t.Fatalf("spans: got %v, want exactly three", keys(m))
	}
	return m
}

func keys[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) (attribute.Value, bool) {
	for _, a := range s.Attributes() {
		if a.Key == k {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func TestTelemetryDrained(t *testing.T) {
	const hold = 200 * time.Millisecond
	l, rig := newTelemetryLifecycle(t, core.WithHold(hold), core.WithDrainTimeout(3*time.Second))
	run(t, l)
	for range 2 {
		if !l.Begin() {
			t.Fatal("Begin: got false")
		}
	}
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Draining), "Draining()")
	l.End()
	l.End()
	if err := recv(t, res, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	spans := spansByName(t, rig.spans)
	root, holdSpan, drain := spans[spanShutdown], spans[spanHold], spans[spanDrain]
	if root.Parent().IsValid() {
		t.Errorf("root span has a parent %v, want none", root.Parent().SpanID())
	}
	for _, child := range []sdktrace.ReadOnlySpan{holdSpan, drain} {
		if child.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("%s parent: got %v, want the root %v", child.Name(), child.Parent().SpanID(), root.SpanContext().SpanID())
		}
		if child.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Errorf("%s trace: got %v, want the root's %v", child.Name(), child.SpanContext().TraceID(), root.SpanContext().TraceID())
		}
	}
	wantAttrs := []struct {
		span sdktrace.ReadOnlySpan
		key  attribute.Key
		want attribute.Value
	}{
		{root, attrTrigger, attribute.StringValue("api")},
		{root, attrHold, attribute.Float64Value(0.2)},
		{root, attrDrainTimeout, attribute.Float64Value(3)},
		{drain, attrInFlight, attribute.Int64Value(2)},
		{drain, attrAbandoned, attribute.Int64Value(0)},
	}
	for _, w := range wantAttrs {
		got, ok := attr(w.span, w.key)
		if !ok || got != w.want {
			t.Errorf("%s %s: got %v (present %v), want %v", w.span.Name(), w.key, got.String(), ok, w.want.String())
		}
	}
	for _, s := range []sdktrace.ReadOnlySpan{root, holdSpan, drain} {
		if s.Status().Code == codes.Error {
			t.Errorf("%s status: got error %q, want not an error", s.Name(), s.Status().Description)
		}
	}
	// The hold span covers the hold timer, so it lasts at least the
	// hold. The upper bound of hold+1s only catches a hold that did not
	// end on its timer: 1s is five holds of slack for a loaded 2-core
	// machine, and a wrong hold (an hour, or the drain timeout) is far
	// outside it.
	if d := holdSpan.EndTime().Sub(holdSpan.StartTime()); d < hold || d >= hold+time.Second {
		t.Errorf("hold span duration: got %v, want in [%v, %v)", d, hold, hold+time.Second)
	}
	if !holdSpan.EndTime().After(root.StartTime()) || drain.StartTime().Before(holdSpan.EndTime()) || root.EndTime().Before(drain.EndTime()) {
		t.Error("spans are not ordered shutdown ⊃ hold, then drain")
	}

	rm := collect(t, rig.reader)
	if got := histogramCounts(t, rm, "lameduck.phase.duration"); got["hold"] != 1 || got["drain"] != 1 {
		t.Errorf("lameduck.phase.duration counts: got %v, want hold 1, drain 1", got)
	}
	if got := sumValue(t, rm, "lameduck.requests.abandoned"); got != 0 {
		t.Errorf("lameduck.requests.abandoned: got %d, want 0", got)
	}
	if got := sumValue(t, rm, "lameduck.requests.in_flight"); got != 0 {
		t.Errorf("lameduck.requests.in_flight: got %d, want 0", got)
	}
}

func TestTelemetryForced(t *testing.T) {
	l, rig := newTelemetryLifecycle(t, core.WithHold(0), core.WithDrainTimeout(50*time.Millisecond))
	run(t, l)
	for range 3 {
		if !l.Begin() {
			t.Fatal("Begin: got false")
		}
	}
	rm := collect(t, rig.reader)
	if got := sumValue(t, rm, "lameduck.requests.in_flight"); got != 3 {
		t.Errorf("lameduck.requests.in_flight while serving: got %d, want 3", got)
	}
	err := l.Shutdown(t.Context())
	if err == nil {
		t.Fatal("Shutdown: got nil, want a ForcedError")
	}
	spans := spansByName(t, rig.spans)
	for _, name := range []string{spanShutdown, spanDrain} {
		s := spans[name]
		if s.Status().Code != codes.Error || !strings.Contains(s.Status().Description, "drain timeout") {
			t.Errorf("%s status: got %v %q, want an error naming the drain timeout", name, s.Status().Code, s.Status().Description)
		}
		if got, _ := attr(s, attrAbandoned); got != attribute.Int64Value(3) {
			t.Errorf("%s %s: got %v, want 3", name, attrAbandoned, got.String())
		}
	}
	if s := spans[spanHold]; s.Status().Code == codes.Error {
		t.Errorf("hold status: got an error, want the hold to end normally")
	}
	rm = collect(t, rig.reader)
	if got := sumValue(t, rm, "lameduck.requests.abandoned"); got != 3 {
		t.Errorf("lameduck.requests.abandoned: got %d, want 3", got)
	}
	if got := sumValue(t, rm, "lameduck.requests.in_flight"); got != 3 {
		t.Errorf("lameduck.requests.in_flight after the forced drain: got %d, want 3", got)
	}
	if got := histogramCounts(t, rm, "lameduck.phase.duration"); got["hold"] != 1 || got["drain"] != 1 {
		t.Errorf("lameduck.phase.duration counts: got %v, want hold 1, drain 1", got)
	}
	for range 3 {
		l.End()
	}
}

func collect(t *testing.T, r *sdkmetric.ManualReader) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(t.Context(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return rm
}

func findMetric(t *testing.T, rm metricdata.ResourceMetrics, name string) metricdata.Metrics {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != scopeName {
			continue
		}
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m
			}
		}
	}
	t.Fatalf("metric %q not found", name)
	return metricdata.Metrics{}
}

func sumValue(t *testing.T, rm metricdata.ResourceMetrics, name string) int64 {
	t.Helper()
	sum, ok := findMetric(t, rm, name).Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("metric %q: got %T, want Sum[int64]", name, findMetric(t, rm, name).Data)
	}
	var v int64
	for _, p := range sum.DataPoints {
		v += p.Value
	}
	return v
}

func histogramCounts(t *testing.T, rm metricdata.ResourceMetrics, name string) map[string]uint64 {
	t.Helper()
	h, ok := findMetric(t, rm, name).Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("metric %q: got %T, want Histogram[float64]", name, findMetric(t, rm, name).Data)
	}
	counts := map[string]uint64{}
	for _, p := range h.DataPoints {
		v, _ := p.Attributes.Value(attrPhase)
		counts[v.AsString()] += p.Count
	}
	return counts
}
