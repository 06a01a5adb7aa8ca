package core

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// scopeName is the instrumentation scope of the spans and metrics.
const scopeName = "github.com/lameduck/lameduck/core"

// Span names and attribute keys recorded during a shutdown; the package
// doc lists them.
const (
	spanShutdown = "lameduck.shutdown"
	spanHold     = "lameduck.hold"
	spanDrain    = "lameduck.drain"

	attrTrigger      = attribute.Key("lameduck.trigger")
	attrHold         = attribute.Key("lameduck.hold.duration")
	attrDrainTimeout = attribute.Key("lameduck.drain.timeout")
	attrInFlight     = attribute.Key("lameduck.drain.in_flight")
	attrAbandoned    = attribute.Key("lameduck.drain.abandoned")
	attrPhase        = attribute.Key("lameduck.phase")

	attrHoldActual  = attribute.Key("lameduck.hold.actual")
	attrHoldEnd     = attribute.Key("lameduck.hold.ended_by")
	attrHoldMin     = attribute.Key("lameduck.hold.min")
	attrHoldQuiet   = attribute.Key("lameduck.hold.quiet")
	attrHoldMax     = attribute.Key("lameduck.hold.max")
	attrHoldLastNew = attribute.Key("lameduck.hold.last_new_traffic_before_end")
)

// telemetry holds the tracer and instruments of one Lifecycle.
type telemetry struct {
	tracer   trace.Tracer
	duration metric.Float64Histogram
	abandons metric.Int64Counter
	root     trace.Span
}

func (t *telemetry) init(l *Lifecycle) error {
	tp := l.cfg.tp
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	mp := l.cfg.mp
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	t.tracer = tp.Tracer(scopeName)
	if err := t.initMetrics(l, mp.Meter(scopeName)); err != nil {
		return fmt.Errorf("lameduck: metrics: %w", err)
	}
	return nil
}

// initMetrics creates the instruments. The in-flight callback stays
// registered for the life of the meter provider, like the lifecycle it
// reads: one per process.
func (t *telemetry) initMetrics(l *Lifecycle, m metric.Meter) error {
	var err error
	if t.duration, err = m.Float64Histogram("lameduck.phase.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of each shutdown phase (hold, drain)."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 60)); err != nil {
		return err
	}
	if t.abandons, err = m.Int64Counter("lameduck.requests.abandoned",
		metric.WithUnit("{request}"),
		metric.WithDescription("Requests still in flight when the drain was forced.")); err != nil {
		return err
	}
	_, err = m.Int64ObservableUpDownCounter("lameduck.requests.in_flight",
		metric.WithUnit("{request}"),
		metric.WithDescription("Requests being served, as tracked by the lifecycle."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(l.inFlight())
			return nil
		}))
	return err
}

func (t *telemetry) startShutdown(trigger string, hold, drain time.Duration) context.Context {
	ctx, span := t.tracer.Start(context.Background(), spanShutdown,
		trace.WithNewRoot(),
		trace.WithAttributes(
			attrTrigger.String(trigger),
			attrHold.Float64(hold.Seconds()),
			attrDrainTimeout.Float64(drain.Seconds()),
		))
	t.root = span
	return ctx
}

func (t *telemetry) startPhase(ctx context.Context, name string, attrs ...attribute.KeyValue) trace.Span {
	_, span := t.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
	return span
}

func (t *telemetry) endPhase(ctx context.Context, span trace.Span, phase string, d time.Duration, err *ForcedError) {
	if err != nil {
		span.SetAttributes(attrAbandoned.Int64(err.Abandoned))
		span.SetStatus(codes.Error, err.Error())
	} else if phase == "drain" {
		span.SetAttributes(attrAbandoned.Int64(0))
	}
	span.End()
	t.duration.Record(ctx, d.Seconds(), metric.WithAttributes(attrPhase.String(phase)))
}

func (t *telemetry) endShutdown(ctx context.Context, err *ForcedError) {
	if err != nil {
		t.root.SetAttributes(attrAbandoned.Int64(err.Abandoned))
		t.root.SetStatus(codes.Error, err.Error())
		t.abandons.Add(ctx, err.Abandoned)
	} else {
		t.abandons.Add(ctx, 0) // the series exists from the first shutdown on
	}
	t.root.End()
}
