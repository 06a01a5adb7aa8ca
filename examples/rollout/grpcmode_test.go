package main

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRolloutGRPC runs -proto grpc briefly: real gRPC backend processes,
// real SIGTERMs, the L4 balancer, pick_first channels with grpc-go's
// defaults. lameduck must lose no RPC; exit on SIGTERM, the control, must
// lose some.
func TestRolloutGRPC(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags([]string{"-proto", "grpc", "-backends", "2", "-workers", "8", "-rate", "200",
		"-hold", "800ms", "-drain-timeout", "3s", "-delay-min", "100ms", "-delay-max", "300ms",
		"-settle", "200ms", "-ms-max", "20", "-run-timeout", "30s"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	rn := &runner{cfg: cfg, exe: exe, say: t.Logf}
	var results []*result
	for _, b := range cfg.Behaviours {
		t.Run(b, func(t *testing.T) {
			r, err := rn.runGRPC(t.Context(), b)
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, r)
			t.Logf("grpc %s: %d RPCs, %d failed %v %v", b, r.requests(), r.failed(), r.counts[:numGRPCKinds], r.examples)
			if r.counts[grpcKindOK] == 0 {
				t.Fatal("no RPC succeeded")
			}
			if len(r.steps) != cfg.Backends {
				t.Fatalf("got %d steps, want %d", len(r.steps), cfg.Backends)
			}
			wantStatus := map[string]string{behaviourExit: "TERM", behaviourGracefulStop: "0", behaviourLameduck: "0"}[b]
			for i, s := range r.steps {
				if s.status != wantStatus {
					t.Errorf("step %d: old backend ended with %s, want %s", i, s.status, wantStatus)
				}
			}
			switch b {
			case behaviourLameduck:
				if r.failed() != 0 {
					t.Errorf("lameduck lost %d of %d RPCs, want 0: %v", r.failed(), r.requests(), r.examples)
				}
				for i, s := range r.steps {
					if s.held < cfg.Hold {
						t.Errorf("step %d: held %v, want at least -hold %v", i, s.held, cfg.Hold)
					}
				}
			case behaviourExit:
				if r.failed() == 0 {
					t.Errorf("exit on SIGTERM lost nothing in %d RPCs: the control failed, the test cannot tell", r.requests())
				}
			}
		})
	}
	if len(results) > 0 {
		var table bytes.Buffer
		printTableGRPC(&table, results)
		t.Logf("\n%s", table.String())
	}
}

func TestParseFlagsGRPC(t *testing.T) {
	c, err := parseFlags([]string{"-proto", "grpc"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Behaviours, allGRPCBehaviours) || !slices.Equal(c.Modes, []string{modeL4}) {
		t.Errorf("-proto grpc: behaviours %v modes %v, want %v behind l4", c.Behaviours, c.Modes, allGRPCBehaviours)
	}
	// The removal lands within the hold, unless told otherwise.
	if c.Hold != grpcDefaultHold || c.DelayMax >= c.Hold {
		t.Errorf("-proto grpc: hold %v, delay-max %v: want %v and a removal within it", c.Hold, c.DelayMax, grpcDefaultHold)
	}
	c, err = parseFlags([]string{"-proto", "grpc", "-hold", "3s", "-behaviours", "lameduck,exit"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hold != 3*time.Second || !slices.Equal(c.Behaviours, []string{behaviourExit, behaviourLameduck}) {
		t.Errorf("got hold %v behaviours %v", c.Hold, c.Behaviours)
	}
	// The HTTP defaults do not move.
	h, err := parseFlags(nil, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if d := defaultConfig(); h.Proto != protoHTTP || h.Hold != d.Hold || h.DelayMin != d.DelayMin || !slices.Equal(h.Behaviours, allBehaviours) {
		t.Errorf("without -proto: %+v, want the defaults", h)
	}
	for _, args := range [][]string{
		{"-proto", "udp"},
		{"-proto", "grpc", "-modes", "l7"},
		{"-proto", "grpc", "-behaviours", "adaptive"},
		{"-proto", "grpc", "-hold-quiet", "1s"},
		{"-proto", "grpc", "-rate", "0"},
		{"-rate", "100"},
	} {
		if _, err := parseFlags(args, new(bytes.Buffer)); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	var stderr bytes.Buffer
	_, _ = parseFlags([]string{"-h"}, &stderr)
	for _, s := range []string{"-proto", "-rate", "-grpc-conns", "gracefulstop", "GracefulStop", "pick_first"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("-h does not mention %s", s)
		}
	}
}
