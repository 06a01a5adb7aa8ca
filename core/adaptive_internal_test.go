package core

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// adaptiveRig is a ready lifecycle with an adaptive hold of min 1s,
// quiet 500ms and max 3s, inside a synctest bubble: time is the bubble's,
// exact and instant.
type adaptiveRig struct {
	t     *testing.T
	l     *Lifecycle
	start time.Time // of the shutdown
	res   chan error
	wg    sync.WaitGroup // of at
}

func newAdaptiveRig(t *testing.T, opts ...Option) *adaptiveRig {
	opts = append([]Option{WithLogger(slog.New(slog.DiscardHandler)), WithSignals(),
		WithHold(time.Second), WithAdaptiveHold(500*time.Millisecond, 3*time.Second), WithDrainTimeout(time.Minute)}, opts...)
	l, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	l.markReady()
	return &adaptiveRig{t: t, l: l}
}

// shutdown starts the shutdown and returns at once.
func (r *adaptiveRig) shutdown() {
	r.res = make(chan error, 1)
	r.start = time.Now()
	go func() { r.res <- r.l.Shutdown(context.Background()) }()
	synctest.Wait()
	if r.l.Phase() != Holding {
		r.t.Fatalf("phase after Shutdown: got %v, want holding", r.l.Phase())
	}
}

// held waits for the drain and returns how long the hold lasted.
func (r *adaptiveRig) held() time.Duration {
	<-r.l.Reached(Draining)
	d := time.Since(r.start)
	if err := <-r.res; err != nil && !errors.As(err, new(*ForcedError)) {
		r.t.Fatalf("Shutdown: %v", err)
	}
	r.wg.Wait() // the bubble ends with its goroutines
	return d
}

// request serves one request through the handler of ListenHTTP on a
// connection accepted at accepted.
func (r *adaptiveRig) request(path string, accepted time.Time) {
	h := &handler{l: r.l, next: http.NotFoundHandler(), probes: http.NotFoundHandler()}
	ctx := context.WithValue(context.Background(), connKey{}, &connInfo{accepted: accepted})
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil).WithContext(ctx))
}

// at runs f at offset d from the shutdown's start, on a goroutine.
func (r *adaptiveRig) at(d time.Duration, f func()) {
	r.wg.Go(func() {
		time.Sleep(time.Until(r.start.Add(d))) // the bubble's clock: exact
		f()
	})
}

func TestAdaptiveHold(t *testing.T) {
	tests := []struct {
		name string
		load func(r *adaptiveRig)
		want time.Duration
	}{
		{"ends at the minimum when nothing new arrives", func(r *adaptiveRig) {}, time.Second},
		{"extends while new connections bring requests", func(r *adaptiveRig) {
			for _, d := range []time.Duration{900 * time.Millisecond, 1300 * time.Millisecond, 1700 * time.Millisecond} {
				r.at(d, func() { r.request("/work", time.Now()) })
			}
		}, 2200 * time.Millisecond},
		{"ends at the maximum under continuous traffic", func(r *adaptiveRig) {
			for d := 100 * time.Millisecond; d < 5*time.Second; d += 100 * time.Millisecond {
				r.at(d, func() {
					if r.l.Phase() == Holding {
						r.request("/work", time.Now())
					}
				})
			}
		}, 3 * time.Second},
		{"probes never extend it", func(r *adaptiveRig) {
			for d := 100 * time.Millisecond; d < 3*time.Second; d += 100 * time.Millisecond {
				r.at(d, func() {
					r.request("/readyz", time.Now())
					r.request("/healthz", time.Now())
				})
			}
		}, time.Second},
		{"connections accepted before the hold never extend it", func(r *adaptiveRig) {
			before := r.start.Add(-time.Millisecond)
			for d := 100 * time.Millisecond; d < 3*time.Second; d += 100 * time.Millisecond {
				r.at(d, func() { r.request("/work", before) })
			}
		}, time.Second},
		{"arrivals from any server count", func(r *adaptiveRig) {
			r.at(800*time.Millisecond, func() { r.l.Arrived(time.Now()) }) // a server of one's own, gRPC
			r.at(1200*time.Millisecond, func() { r.request("/work", time.Now()) })
		}, 1700 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newAdaptiveRig(t)
				r.shutdown()
				tc.load(r)
				if got := r.held(); got != tc.want {
					t.Errorf("hold: got %v, want %v", got, tc.want)
				}
			})
		})
	}
}

func TestAdaptiveHoldForced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newAdaptiveRig(t)
		r.shutdown()
		for d := 100 * time.Millisecond; d < 3*time.Second; d += 100 * time.Millisecond {
			r.at(d, func() { r.request("/work", time.Now()) })
		}
		r.at(1500*time.Millisecond, func() { r.l.Force(ErrSecondSignal) })
		if got := r.held(); got != 1500*time.Millisecond {
			t.Errorf("hold: got %v, want the force at 1.5s to end it", got)
		}
	})
}

// TestAdaptiveHoldShutdownCtx checks that a Shutdown whose ctx ends
// during an adaptive hold returns then, and the hold goes on.
func TestAdaptiveHoldShutdownCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newAdaptiveRig(t)
		r.shutdown()
		r.at(900*time.Millisecond, func() { r.request("/work", time.Now()) })
		ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
		defer cancel()
		if err := r.l.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown with a 1.2s ctx: got %v, want DeadlineExceeded", err)
		}
		if got := r.held(); got != 1400*time.Millisecond {
			t.Errorf("hold: got %v, want 1.4s", got)
		}
	})
}

func TestAdaptiveHoldNeverReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := New(WithLogger(slog.New(slog.DiscardHandler)), WithSignals(),
			WithHold(time.Second), WithAdaptiveHold(500*time.Millisecond, 3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := l.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("a service never ready held %v, want no hold", d)
		}
	})
}

func TestAdaptiveHoldOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"quiet not positive", []Option{WithAdaptiveHold(0, time.Minute)}, "quiet time must be positive, got 0s"},
		{"max under the hold", []Option{WithHold(5 * time.Second), WithAdaptiveHold(time.Second, 4*time.Second)}, "maximum 4s is shorter than the hold 5s"},
		{"max over the budget", []Option{WithHold(time.Second), WithAdaptiveHold(time.Second, 20*time.Second), WithDrainTimeout(15 * time.Second), WithGracePeriod(30 * time.Second)},
			"hold 20s + drain timeout 15s + margin 3s = 38s exceeds the grace period 30s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestAdaptiveHoldPreStop checks that a preStop call answers when the
// adaptive hold ends, not at its minimum.
func TestAdaptiveHoldPreStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newAdaptiveRig(t)
		r.start = time.Now()
		answered := make(chan time.Duration, 1)
		go func() {
			w := httptest.NewRecorder()
			r.l.PreStopHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/prestop", nil))
			if w.Code != http.StatusOK {
				t.Errorf("preStop: got %d, want 200", w.Code)
			}
			answered <- time.Since(r.start)
		}()
		synctest.Wait()
		r.at(900*time.Millisecond, func() { r.request("/work", time.Now()) })
		if got, want := <-answered, 1400*time.Millisecond; got != want {
			t.Errorf("preStop answered after %v, want %v: when the adaptive hold ends", got, want)
		}
		r.wg.Wait()
		r.l.Force(nil) // the drain waits for nothing; end it
		<-r.l.Reached(Stopped)
	})
}
