package main

import (
	"bytes"
	"errors"
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsDefaults(t *testing.T) {
	c, err := parseFlags(nil, new(bytes.Buffer))
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	want := defaultConfig()
	if c.Backends != want.Backends || c.Hold != want.Hold || c.DelayMax != want.DelayMax {
		t.Errorf("got %+v, want the defaults %+v", c, want)
	}
	// The story of the defaults: every removal lands after the fixed
	// hold, which the adaptive hold, with the same minimum, outlasts.
	if c.DelayMin <= c.Hold {
		t.Errorf("default -delay-min %v must be longer than the default -hold %v", c.DelayMin, c.Hold)
	}
	if c.DelayMax+c.HoldQuiet >= c.HoldMax {
		t.Errorf("default -delay-max %v + -hold-quiet %v must be shorter than the default -hold-max %v", c.DelayMax, c.HoldQuiet, c.HoldMax)
	}
	if !slices.Contains(c.Behaviours, behaviourAdaptive) {
		t.Errorf("default behaviours %v: want %s among them", c.Behaviours, behaviourAdaptive)
	}
}

func TestParseFlagsLists(t *testing.T) {
	c, err := parseFlags([]string{"-behaviours", " Lameduck,exit ", "-modes", "l7"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"exit", "lameduck"}; !slices.Equal(c.Behaviours, want) {
		t.Errorf("behaviours: got %v, want %v (known order)", c.Behaviours, want)
	}
	if want := []string{"l7"}; !slices.Equal(c.Modes, want) {
		t.Errorf("modes: got %v, want %v", c.Modes, want)
	}
}

func TestParseFlagsRejects(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"zero_backends", []string{"-backends", "0"}, "-backends"},
		{"too_many_backends", []string{"-backends", "21"}, "-backends"},
		{"zero_workers", []string{"-workers", "0"}, "-workers"},
		{"zero_requests", []string{"-requests", "0"}, "-requests"},
		{"zero_run_timeout", []string{"-run-timeout", "0s"}, "-run-timeout"},
		{"negative_settle", []string{"-settle", "-1s"}, "-settle"},
		{"negative_hold", []string{"-hold", "-1s"}, "-hold"},
		{"zero_drain_timeout", []string{"-drain-timeout", "0s"}, "-drain-timeout"},
		{"zero_hold_quiet", []string{"-hold-quiet", "0s"}, "-hold-quiet"},
		{"hold_max_below_hold", []string{"-hold", "3s", "-hold-max", "2s"}, "-hold-max"},
		{"negative_delay", []string{"-delay-min", "-1ms"}, "-delay-min"},
		{"delay_max_below_min", []string{"-delay-min", "2s", "-delay-max", "1s"}, "-delay-max"},
		{"negative_ms", []string{"-ms-min", "-1"}, "-ms-min"},
		{"ms_max_below_min", []string{"-ms-min", "10", "-ms-max", "5"}, "-ms-max"},
		{"ms_max_too_big", []string{"-ms-max", "60001"}, "-ms-max"},
		{"post_above_one", []string{"-post", "1.5"}, "-post"},
		{"post_nan", []string{"-post", "NaN"}, "-post"},
		{"new_conn_above_one", []string{"-new-conn", "2"}, "-new-conn"},
		{"zero_request_timeout", []string{"-request-timeout", "0s"}, "-request-timeout"},
		{"unknown_behaviour", []string{"-behaviours", "exit,sleep"}, `unknown name "sleep"`},
		{"empty_behaviours", []string{"-behaviours", ""}, "-behaviours"},
		{"duplicate_mode", []string{"-modes", "l4,L4"}, "given twice"},
		{"unknown_mode", []string{"-modes", "l3"}, "-modes"},
		{"bad_duration", []string{"-hold", "2"}, "invalid value"},
		{"unknown_flag", []string{"-nope"}, "not defined"},
		{"arguments", []string{"extra"}, "unexpected arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			_, err := parseFlags(tc.args, &stderr)
			if err == nil {
				t.Fatalf("parseFlags(%q): got no error, want one about %s", tc.args, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseFlags(%q): got %q, want it to mention %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestParseFlagsReportsEveryBadValue(t *testing.T) {
	_, err := parseFlags([]string{"-workers", "0", "-hold", "-1s"}, new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "-workers") || !strings.Contains(err.Error(), "-hold") {
		t.Errorf("got %v, want both -workers and -hold named", err)
	}
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	var stderr bytes.Buffer
	_, err := parseFlags([]string{"-h"}, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: got %v, want flag.ErrHelp", err)
	}
	help := stderr.String()
	for _, name := range []string{"-backends", "-behaviours", "-modes", "-workers", "-requests", "-run-timeout", "-settle",
		"-hold", "-hold-quiet", "-hold-max", "adaptive", "WithAdaptiveHold", "-drain-timeout", "-delay-min", "-delay-max", "-seed", "-ms-min", "-ms-max", "-post", "-new-conn", "-request-timeout",
		"-svg", "kube-proxy", "lameduck", "Shutdown"} {
		if !strings.Contains(help, name) {
			t.Errorf("-h does not mention %s", name)
		}
	}
}

func TestDemoMainExitStatus(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		status int
		stderr string
	}{
		{"help", []string{"-h"}, 0, "Usage"},
		{"bad_value", []string{"-backends", "0"}, 2, "rollout: -backends must be from 1 to 20, got 0"},
		{"unwritable_svg", []string{"-svg", filepath.Join(t.TempDir(), "no", "such", "dir.svg")}, 2, "rollout: -svg"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := demoMain(tc.args, &stdout, &stderr); got != tc.status {
				t.Errorf("status: got %d, want %d (stderr: %s)", got, tc.status, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr: got %q, want it to contain %q", stderr.String(), tc.stderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing: no run may start", stdout.String())
			}
		})
	}
}

func TestDelaysAreTheSameForEveryRunAndInRange(t *testing.T) {
	cfg := defaultConfig()
	cfg.Backends = 50
	rn := &runner{cfg: cfg}
	first, second := rn.delays(), rn.delays()
	if !slices.Equal(first, second) {
		t.Errorf("two runs with one seed: got %v and %v, want the same delays", first, second)
	}
	for i, d := range first {
		if d < cfg.DelayMin || d > cfg.DelayMax {
			t.Errorf("delay %d: got %v, want within [%v, %v]", i, d, cfg.DelayMin, cfg.DelayMax)
		}
	}
	cfg.Seed++
	if other := (&runner{cfg: cfg}).delays(); slices.Equal(first, other) {
		t.Error("another seed gave the same delays")
	}
	cfg.DelayMin, cfg.DelayMax = time.Second, time.Second
	for _, d := range (&runner{cfg: cfg}).delays() {
		if d != time.Second {
			t.Fatalf("-delay-min = -delay-max = 1s: got %v", d)
		}
	}
}
