package core_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		opts []core.Option
		want []string // substrings of the error
	}{
		{"negative hold", []core.Option{core.WithHold(-time.Second)}, []string{"hold", "-1s"}},
		{"zero drain timeout", []core.Option{core.WithDrainTimeout(0)}, []string{"drain timeout", "0s"}},
		{"negative drain timeout", []core.Option{core.WithDrainTimeout(-time.Millisecond)}, []string{"drain timeout", "-1ms"}},
		{"hold plus drain over grace", []core.Option{core.WithHold(10 * time.Second), core.WithDrainTimeout(25 * time.Second), core.WithGracePeriod(30 * time.Second)},
			[]string{"10s", "25s", "30s", "35s"}},
		{"zero grace", []core.Option{core.WithGracePeriod(0)}, []string{"grace period", "0s"}},
		{"negative grace", []core.Option{core.WithGracePeriod(-time.Second)}, []string{"grace period", "-1s"}},
		{"no signals", []core.Option{core.WithSignals()}, []string{"WithSignals"}},
		{"zero progress interval", []core.Option{core.WithProgressInterval(0)}, []string{"progress interval", "0s"}},
		{"negative progress interval", []core.Option{core.WithProgressInterval(-time.Second)}, []string{"progress interval", "-1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := core.New(tt.opts...)
			if err == nil {
				t.Fatalf("New: got a lifecycle and no error, want an error")
			}
			if l != nil {
				t.Errorf("New: got a non-nil lifecycle with the error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "lameduck: ") {
				t.Errorf("error %q: want the prefix %q", msg, "lameduck: ")
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q: want it to contain %q", msg, w)
				}
			}
		})
	}
}

func TestNewValid(t *testing.T) {
	tests := []struct {
		name      string
		opts      []core.Option
		hold      time.Duration
		drainTime time.Duration
	}{
		{"defaults", nil, core.DefaultHold, core.DefaultDrainTimeout},
		{"zero hold", []core.Option{core.WithHold(0)}, 0, core.DefaultDrainTimeout},
		{"hold plus drain equals grace", []core.Option{core.WithHold(10 * time.Second), core.WithDrainTimeout(20 * time.Second), core.WithGracePeriod(30 * time.Second)},
			10 * time.Second, 20 * time.Second},
		{"other signals", []core.Option{core.WithSignals(syscall.SIGUSR1)}, core.DefaultHold, core.DefaultDrainTimeout},
		{"nil providers and logger ignored", []core.Option{core.WithLogger(nil), core.WithTracerProvider(nil), core.WithMeterProvider(nil)},
			core.DefaultHold, core.DefaultDrainTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := core.New(tt.opts...)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := l.Hold(); got != tt.hold {
				t.Errorf("Hold(): got %v, want %v", got, tt.hold)
			}
			if got := l.DrainTimeout(); got != tt.drainTime {
				t.Errorf("DrainTimeout(): got %v, want %v", got, tt.drainTime)
			}
			if got := l.Phase(); got != core.Starting {
				t.Errorf("Phase(): got %v, want %v", got, core.Starting)
			}
		})
	}
}

func TestPhaseString(t *testing.T) {
	tests := []struct {
		p    core.Phase
		want string
	}{
		{core.Starting, "starting"}, {core.Serving, "serving"}, {core.Holding, "holding"},
		{core.Draining, "draining"}, {core.Stopped, "stopped"}, {core.Phase(7), "phase(7)"}, {core.Phase(-1), "phase(-1)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.p.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
