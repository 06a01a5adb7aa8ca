package grpcadapter_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lameduck/lameduck/core"
)

// The adaptive hold of these tests: at least 300ms, then until 200ms
// without new traffic, at most maxHold.
const (
	minHold   = 300 * time.Millisecond
	quietHold = 200 * time.Millisecond
	maxHold   = 3 * time.Second
)

// holdEnd is what the "lameduck: hold ended" log line says.
type holdEnd struct {
	held    time.Duration
	endedBy string
	lastNew string // last_new_traffic_before_end: a duration, or "none"
}

// holdLog is a slog.Handler that keeps the "hold ended" line.
type holdLog struct {
	mu  sync.Mutex
	end *holdEnd
}

func (h *holdLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *holdLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *holdLog) WithGroup(string) slog.Handler            { return h }
func (h *holdLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "lameduck: hold ended" {
		return nil
	}
	end := &holdEnd{}
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "held":
			end.held = a.Value.Duration()
		case "ended_by":
			end.endedBy = a.Value.String()
		case "last_new_traffic_before_end":
			end.lastNew = a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	h.end = end
	h.mu.Unlock()
	return nil
}

func (h *holdLog) get(t *testing.T) holdEnd {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.end == nil {
		t.Fatal("no \"lameduck: hold ended\" log line")
	}
	t.Logf("hold ended: %+v", *h.end)
	return *h.end
}

// endedAtMin reports whether the hold ended at its minimum with no new
// traffic. core says "min" (quiet already when the minimum ended; an
// earlier core said "quiet").
func endedAtMin(end holdEnd) bool {
	return end.lastNew == "none" && (end.endedBy == "min" || end.endedBy == "quiet") && end.held < minHold+250*time.Millisecond
}

// adaptiveEnv is an env whose lifecycle has the adaptive hold, max
// instead of maxHold if not zero, and logs the hold's end to the
// returned holdLog.
func adaptiveEnv(t *testing.T, max time.Duration) (*env, *holdLog) {
	t.Helper()
	if max == 0 {
		max = maxHold
	}
	log := &holdLog{}
	e := newEnv(t, envConfig{core: []core.Option{
		core.WithHold(minHold), core.WithAdaptiveHold(quietHold, max),
		core.WithLogger(slog.New(log)), core.WithDrainTimeout(5 * time.Second),
	}})
	return e, log
}

// fresh opens a new client connection to e's server, which the test
// closes.
func fresh(t *testing.T, e *env) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient("passthrough:///"+e.srv.Addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	return c
}

func invokeWork(ctx context.Context, c *grpc.ClientConn) error {
	return c.Invoke(ctx, workMethod, wrapperspb.UInt32(0), new(wrapperspb.StringValue))
}

// during calls f every 20ms from the hold's start until the drain, or
// until the time for runs out, and returns when the last call did.
func during(t *testing.T, e *env, until time.Duration, f func()) {
	t.Helper()
	<-e.lc.Reached(core.Holding)
	end := time.Now().Add(until)
	for time.Now().Before(end) {
		select {
		case <-e.lc.Reached(core.Draining):
			return
		default:
		}
		f()
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAdaptiveHoldPinnedConnection: RPCs on a connection opened before
// the shutdown, however many, do not extend the hold: it ends at its
// minimum, with no new traffic.
func TestAdaptiveHoldPinnedConnection(t *testing.T) {
	e, log := adaptiveEnv(t, 0)
	if err := e.work(t.Context()); err != nil { // the connection is up before the hold
		t.Fatalf("Work before the shutdown: %v", err)
	}
	done := shutdown(t.Context(), e.lc)
	var failed int
	during(t, e, maxHold, func() {
		for range 5 {
			// Once the drain began, the client's own Unavailable (the
			// GOAWAY came, nowhere to reconnect to) is the protocol's.
			if err := e.work(t.Context()); err != nil && strings.Contains(err.Error(), "lameduck") {
				t.Errorf("RPC on the pinned connection refused: %v", err)
				failed++
			} else if err != nil {
				t.Logf("RPC on the pinned connection at the drain: %v", err)
			}
		}
	})
	if err := within(t, "Shutdown", done, hang); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if failed > 0 {
		t.Errorf("%d RPCs on the pinned connection refused", failed)
	}
	end := log.get(t)
	if !endedAtMin(end) {
		t.Errorf("hold ended %+v, want it ended at its minimum ≈%v with no new traffic: RPCs on a pinned connection extended it", end, minHold)
	}
}

// TestAdaptiveHoldNewConnections: RPCs on connections opened in the hold
// extend it: until quiet after the last one, or to the maximum when they
// keep coming.
func TestAdaptiveHoldNewConnections(t *testing.T) {
	t.Run("quiet", func(t *testing.T) {
		e, log := adaptiveEnv(t, 0)
		const traffic = 600 * time.Millisecond // past the minimum
		done := shutdown(t.Context(), e.lc)
		var last time.Time
		start := time.Now()
		during(t, e, traffic, func() {
			c := fresh(t, e)
			defer c.Close()
			if err := invokeWork(t.Context(), c); err != nil {
				t.Errorf("Work on a new connection in the hold: %v", err)
			}
			last = time.Now()
		})
		if err := within(t, "Shutdown", done, hang); err != nil {
			t.Errorf("Shutdown = %v, want nil", err)
		}
		end := log.get(t)
		want := last.Sub(start) + quietHold
		if end.endedBy != "quiet" || end.lastNew == "none" || end.held < want-50*time.Millisecond || end.held > want+300*time.Millisecond {
			t.Errorf("hold ended %+v, want ended by quiet ≈%v after it began (last RPC on a new connection + %v)", end, want, quietHold)
		}
	})
	t.Run("max", func(t *testing.T) {
		const max = time.Second
		e, log := adaptiveEnv(t, max)
		done := shutdown(t.Context(), e.lc)
		during(t, e, hang, func() { // until the drain
			c := fresh(t, e)
			defer c.Close()
			_ = invokeWork(t.Context(), c) // may race the drain
		})
		if err := within(t, "Shutdown", done, hang); err != nil {
			t.Errorf("Shutdown = %v, want nil", err)
		}
		if end := log.get(t); end.endedBy != "max" || end.held < max || end.held > max+300*time.Millisecond {
			t.Errorf("hold ended %+v, want ended by max at ≈%v", end, max)
		}
	})
	t.Run("stream", func(t *testing.T) {
		e, log := adaptiveEnv(t, 0)
		done := shutdown(t.Context(), e.lc)
		<-e.lc.Reached(core.Holding)
		time.Sleep(minHold / 2)
		c := fresh(t, e)
		defer c.Close()
		s, err := c.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, ticksMethod)
		if err != nil {
			t.Fatalf("open Ticks: %v", err)
		}
		if err := s.SendMsg(wrapperspb.UInt32(0)); err != nil {
			t.Fatalf("send: %v", err)
		}
		if err := s.RecvMsg(new(wrapperspb.UInt32Value)); err != nil {
			t.Fatalf("first tick: %v", err)
		}
		opened := time.Now()
		if err := within(t, "Shutdown", done, hang); err != nil {
			t.Errorf("Shutdown = %v, want nil", err)
		}
		if end := log.get(t); end.endedBy != "quiet" || end.lastNew == "none" || time.Since(opened) < quietHold-50*time.Millisecond {
			t.Errorf("hold ended %+v, %v after a stream opened on a new connection, want ended by quiet %v after it", end, time.Since(opened), quietHold)
		}
	})
}

// TestAdaptiveHoldProbes: the kubelet's gRPC probe, a Check on a fresh
// connection every period, never extends the hold; nor does Watch.
func TestAdaptiveHoldProbes(t *testing.T) {
	e, log := adaptiveEnv(t, 0)
	done := shutdown(t.Context(), e.lc)
	during(t, e, maxHold, func() {
		c := fresh(t, e)
		defer c.Close()
		hc := healthpb.NewHealthClient(c)
		if _, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("Check on a new connection in the hold: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		if w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			_, _ = w.Recv()
		}
	})
	if err := within(t, "Shutdown", done, hang); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if end := log.get(t); !endedAtMin(end) {
		t.Errorf("hold ended %+v, want it ended at its minimum ≈%v with no new traffic: probes extended it", end, minHold)
	}
}
