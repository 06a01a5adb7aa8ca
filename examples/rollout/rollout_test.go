package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRollout runs the demo's logic with tiny durations: real backend
// processes (this test binary, re-executed), real SIGTERMs, both
// balancers. lameduck must lose nothing; exit on SIGTERM, the control,
// must lose something, or the test could not tell them apart.
func TestRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.Backends = 2
	cfg.Workers = 8
	cfg.Behaviours = []string{behaviourExit, behaviourLameduck}
	cfg.Hold = time.Second // generous: removal lands at most 300ms after SIGTERM
	cfg.DrainTimeout = 3 * time.Second
	cfg.DelayMin, cfg.DelayMax = 100*time.Millisecond, 300*time.Millisecond
	cfg.Settle = 200 * time.Millisecond
	cfg.MSMax = 20
	cfg.RunTimeout = 30 * time.Second
	rn := &runner{cfg: cfg, exe: exe, say: t.Logf}

	var results []*result
	for _, mode := range cfg.Modes {
		for _, b := range cfg.Behaviours {
			t.Run(b+"_"+mode, func(t *testing.T) {
				res, err := rn.run(t.Context(), b, mode)
				if err != nil {
					t.Fatal(err)
				}
				results = append(results, res)
				checkRun(t, cfg, res)
			})
		}
	}
	if len(results) == 0 {
		return
	}
	var table bytes.Buffer
	printTable(&table, cfg, results)
	t.Logf("\n%s", table.String())
	for _, r := range results {
		if !strings.Contains(table.String(), r.behaviour) {
			t.Errorf("the table has no row for %s", r.behaviour)
		}
	}
	var svg bytes.Buffer
	if err := writeSVG(&svg, cfg, results); err != nil {
		t.Fatal(err)
	}
	checkXML(t, svg.Bytes())
}

func checkRun(t *testing.T, cfg config, r *result) {
	t.Helper()
	t.Logf("%s/%s: %d requests, %d failed %v", r.behaviour, r.mode, r.requests(), r.failed(), r.counts)
	for k, ex := range r.examples {
		t.Logf("  first %s: %s", kindNames[k], ex)
	}
	if r.counts[kindOK] == 0 {
		t.Fatal("no request succeeded")
	}
	var sum int64
	for _, n := range r.counts {
		sum += n
	}
	if sum != r.requests() {
		t.Errorf("outcomes by kind add up to %d, want %d requests", sum, r.requests())
	}
	if len(r.steps) != cfg.Backends {
		t.Fatalf("got %d steps, want one per backend (%d)", len(r.steps), cfg.Backends)
	}
	wantStatus := map[string]string{behaviourExit: "TERM", behaviourLameduck: "0"}[r.behaviour]
	for i, s := range r.steps {
		if s.status != wantStatus {
			t.Errorf("step %d: old backend ended with %s, want %s", i, s.status, wantStatus)
		}
		if s.delay < cfg.DelayMin || s.delay > cfg.DelayMax {
			t.Errorf("step %d: delay %v outside [%v, %v]", i, s.delay, cfg.DelayMin, cfg.DelayMax)
		}
		if s.removed < s.sigterm || s.exited < s.sigterm || s.sigterm < s.ready {
			t.Errorf("step %d: events out of order: %+v", i, s)
		}
	}
	switch r.behaviour {
	case behaviourLameduck:
		if r.failed() != 0 {
			t.Errorf("lameduck lost %d of %d requests, want 0: %v %v", r.failed(), r.requests(), r.counts, r.examples)
		}
		// The hold is what makes zero: the old process outlives the
		// removal of its endpoint.
		for i, s := range r.steps {
			if s.exited < s.removed {
				t.Errorf("step %d: lameduck backend exited at %v, before its endpoint was removed at %v", i, s.exited, s.removed)
			}
		}
	case behaviourExit:
		if r.failed() == 0 {
			t.Errorf("exit on SIGTERM lost nothing in %d requests: the control failed, the test cannot tell", r.requests())
		}
	}
}

func checkXML(t *testing.T, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	var root string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Errorf("root element: got %q, want svg", root)
	}
}
