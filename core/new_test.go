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
			[]string{"10s", "25s", "30s", "38s", "margin 3s"}},
		{"no room for the margin", []core.Option{core.WithHold(10 * time.Second), core.WithDrainTimeout(20 * time.Second), core.WithGracePeriod(30 * time.Second)},
			[]string{"10s", "20s", "margin 3s", "33s", "30s"}},
		{"the margin is at least 2s", []core.Option{core.WithHold(1 * time.Second), core.WithDrainTimeout(2 * time.Second), core.WithGracePeriod(4 * time.Second)},
			[]string{"margin 2s", "5s", "4s"}},
		{"nil option", []core.Option{nil}, []string{"nil Option"}},
		{"zero grace", []core.Option{core.WithGracePeriod(0)}, []string{"grace period", "0s"}},
		{"negative grace", []core.Option{core.WithGracePeriod(-time.Second)}, []string{"grace period", "-1s"}},
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
		name string
		opts []core.Option
	}{
		{"defaults", nil},
		{"zero hold", []core.Option{core.WithHold(0)}},
		{"hold plus drain plus margin equals grace", []core.Option{core.WithHold(10 * time.Second), core.WithDrainTimeout(17 * time.Second), core.WithGracePeriod(30 * time.Second)}},
		{"no signals", []core.Option{core.WithSignals()}},
		{"other signals", []core.Option{core.WithSignals(syscall.SIGUSR1)}},
		{"nil providers and logger ignored", []core.Option{core.WithLogger(nil), core.WithTracerProvider(nil), core.WithMeterProvider(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := core.New(tt.opts...)
			if err != nil {
				t.Fatalf("New: %v", err)
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
