// Command rollout shows, on one machine and with nothing else installed,
// the requests a rolling restart loses and the ones lameduck keeps.
//
//	go run ./examples/rollout
//	go run ./examples/rollout -svg timeline.svg
//	go run ./examples/rollout -proto grpc
//	go run ./examples/rollout -h
//
// It restarts a pool of backend processes (this program, re-executed, so
// every SIGTERM is real) behind an in-process load balancer, under load,
// the way Kubernetes rolls a Deployment: for each backend, start the
// replacement and wait until it is ready, then send SIGTERM to the old
// process and, at the same time, schedule the removal of its endpoint from
// the load balancer after a random delay (the endpoint change propagating
// to kube-proxy or an ingress).
//
// It does so for four server behaviours: exit (no SIGTERM handler),
// shutdown (http.Server.Shutdown as soon as SIGTERM arrives, the common Go
// pattern), lameduck (core.Lifecycle with health and ListenHTTP, a fixed
// hold) and adaptive (the same with core.WithAdaptiveHold: the hold ends
// once no new traffic has come for a quiet time, so it lasts as long as
// the balancer takes to stop routing to the backend, no more); and
// behind two load balancers: l4, a TCP proxy that picks a backend per
// connection and leaves established keep-alive connections where they
// are, as kube-proxy and conntrack do, and l7, an HTTP reverse proxy that
// picks a backend per request and retries nothing. Every run has the same
// seed, the same load (GET and non-idempotent POST requests over
// keep-alive connections) and the same removal delays.
//
// By default the endpoint removal lands after the fixed hold, as it does
// when a load balancer is slower than the guess the hold was: the fixed
// hold loses requests, the adaptive one, with the same minimum, none.
//
// It prints a table of requests, failures by kind, the holds and the time
// each rollout took, and with -svg writes a timeline of successes and failures
// that shows where each failure happened.
//
// With -proto grpc it does the same with gRPC backends (a unary RPC and
// grpc.health.v1) behind the l4 balancer, under paced unary load over a
// few pick_first channels, for three behaviours: exit, gracefulstop
// (grpc.Server.GracefulStop at SIGTERM) and lameduck (grpcadapter).
//
// Exit status: 0 when every run completed (whatever it lost), 1 when a
// run could not be carried out, 2 for bad flags, 130 on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if b := os.Getenv(backendEnv); b != "" {
		os.Exit(backendMain(b, os.Args[1:]))
	}
	os.Exit(demoMain(os.Args[1:], os.Stdout, os.Stderr))
}

// demoMain is the demo; it returns the exit status.
func demoMain(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "rollout: %v\n(see go run ./examples/rollout -h)\n", strings.ReplaceAll(err.Error(), "\n", "\nrollout: "))
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "rollout: cannot find this program to re-execute it as a backend: %v\n", err)
		return 1
	}
	var svg *os.File
	if cfg.SVG != "" {
		// Created now, so that a path we cannot write fails before the runs.
		if svg, err = os.Create(cfg.SVG); err != nil {
			fmt.Fprintf(stderr, "rollout: -svg: %v\n", err)
			return 2
		}
		defer svg.Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rn := &runner{cfg: cfg, exe: exe, say: func(string, ...any) {}}
	if cfg.Verbose {
		rn.logs = stderr
		rn.say = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	}
	run, intro, table := runAll, printIntro, printTable
	if cfg.Proto == protoGRPC {
		run, intro = runAllGRPC, printIntroGRPC
		table = func(w io.Writer, _ config, results []*result) { printTableGRPC(w, results) }
	}
	intro(stdout, cfg)
	fmt.Fprintln(stdout)
	results, err := run(ctx, rn, stdout)
	if len(results) > 0 {
		fmt.Fprintln(stdout)
		table(stdout, cfg, results)
	}
	if svg != nil && len(results) > 0 {
		if werr := writeSVG(svg, cfg, results); werr != nil {
			fmt.Fprintf(stderr, "rollout: -svg: %v\n", werr)
			return 1
		}
		if cerr := svg.Close(); cerr != nil {
			fmt.Fprintf(stderr, "rollout: -svg: %v\n", cerr)
			return 1
		}
		fmt.Fprintf(stdout, "\ntimeline written to %s\n", cfg.SVG)
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "rollout: interrupted; every backend was stopped")
		return 130
	case err != nil:
		fmt.Fprintf(stderr, "rollout: %v\n", err)
		return 1
	}
	return 0
}

// runAll runs every behaviour behind every mode, in order, and returns
// the results of the runs that completed.
func runAll(ctx context.Context, rn *runner, stdout io.Writer) ([]*result, error) {
	var results []*result
	for _, mode := range rn.cfg.Modes {
		for _, b := range rn.cfg.Behaviours {
			fmt.Fprintf(stdout, "  %-8s behind %s ... ", b, strings.ToUpper(mode))
			res, err := rn.run(ctx, b, mode)
			if err != nil {
				fmt.Fprintln(stdout, "failed")
				return results, err
			}
			fmt.Fprintf(stdout, "%d requests, %d failed\n", res.requests(), res.failed())
			results = append(results, res)
		}
	}
	return results, nil
}

func printIntro(w io.Writer, c config) {
	fmt.Fprintf(w, "Rolling restart of %d backends under load (%d clients, %d of them opening a new connection per request,\n"+
		"GET and POST /work?ms=%d-%d, %.0f%% POST).\n",
		c.Backends, c.Workers, int(float64(c.Workers)*c.NewConnRatio+0.5), c.MSMin, c.MSMax, 100*c.PostRatio)
	fmt.Fprintf(w, "Endpoint removal lands %v-%v after SIGTERM; lameduck holds %v; adaptive holds at least %v, then until no new\n"+
		"traffic for %v, at most %v; both drain for at most %v; seed %d.\n",
		c.DelayMin, c.DelayMax, c.Hold, c.Hold, c.HoldQuiet, c.HoldMax, c.DrainTimeout, c.Seed)
	if slices.Contains(c.Behaviours, behaviourLameduck) && c.DelayMax >= c.Hold {
		some := "some endpoints are"
		if c.DelayMin > c.Hold {
			some = "every endpoint is"
		}
		fmt.Fprintf(w, "Note: -delay-max %v is not shorter than -hold %v: %s removed only after the fixed hold,\n"+
			"and lameduck loses the requests routed there meanwhile; a fixed hold long enough for the slowest removal\n"+
			"would lose none but wait that long on every backend. The adaptive hold ends when the new traffic stops.\n",
			c.DelayMax, c.Hold, some)
	}
	if slices.Contains(c.Behaviours, behaviourAdaptive) && c.DelayMax >= c.HoldMax {
		fmt.Fprintf(w, "Note: -delay-max %v is not shorter than -hold-max %v: the adaptive hold may end before a removal, and lose requests.\n",
			c.DelayMax, c.HoldMax)
	}
}

// printTable prints one line per run, then what the kinds mean.
func printTable(w io.Writer, c config, results []*result) {
	head := []string{"behaviour", "LB", "requests", "ok", "failed", "POST failed"}
	for k := kindOK + 1; k < numKinds; k++ {
		head = append(head, kindNames[k])
	}
	head = append(head, "holds", "rollout", "per backend", "old exit")
	rows := [][]string{head}
	for _, r := range results {
		var postFailed int64
		for _, o := range r.outcomes {
			if o.post && o.kind != kindOK {
				postFailed++
			}
		}
		row := []string{r.behaviour, strings.ToUpper(r.mode), fmt.Sprint(r.requests()), fmt.Sprint(r.counts[kindOK]),
			fmt.Sprint(r.failed()), fmt.Sprint(postFailed)}
		for k := kindOK + 1; k < numKinds; k++ {
			row = append(row, fmt.Sprint(r.counts[k]))
		}
		var statuses, holds []string
		for _, s := range r.steps {
			statuses = append(statuses, s.status)
			if s.held > 0 {
				holds = append(holds, fmt.Sprintf("%.1f", s.held.Seconds()))
			}
		}
		if len(holds) == 0 {
			holds = []string{"-"}
		}
		per := time.Duration(0)
		if len(r.steps) > 0 {
			per = r.rollout / time.Duration(len(r.steps))
		}
		row = append(row, strings.Join(holds, " "), fmt.Sprintf("%.1fs", r.rollout.Seconds()), fmt.Sprintf("%.1fs", per.Seconds()),
			strings.Join(statuses, " "))
		rows = append(rows, row)
	}
	printColumns(w, rows)

	fmt.Fprintln(w)
	fmt.Fprintln(w, "refused: a new connection reached a backend that no longer listens (the balancer still listed it).")
	fmt.Fprintln(w, "reset/EOF: a connection broke under a request: killed process, or a keep-alive connection closed as the request was sent.")
	fmt.Fprintln(w, "LB 502/503: the L7 balancer could not get an answer from the backend it chose.")
	fmt.Fprintln(w, "holds: how long each replaced backend held, in seconds (from its log line \"lameduck: hold ended held=…\").")
	fmt.Fprintln(w, "rollout: from the first replacement's start until the last old process had exited and its endpoint was removed.")
	fmt.Fprintln(w, "old exit: how each replaced process ended (TERM: killed by the signal).")
	var shown bool
	for _, r := range results {
		for k := kindOK + 1; k < numKinds; k++ {
			if ex, ok := r.examples[k]; ok {
				if !shown {
					fmt.Fprintln(w, "\nFirst failure of each kind:")
					shown = true
				}
				fmt.Fprintf(w, "  %s/%s %s: %s\n", r.behaviour, strings.ToUpper(r.mode), kindNames[k], truncate(ex, 110))
			}
		}
	}
}

// printColumns prints rows as aligned columns: the first two on the left,
// the others right-aligned.
func printColumns(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, cell := range r {
			width[i] = max(width[i], len(cell))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, cell := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			if i < 2 || i == len(r)-1 {
				fmt.Fprintf(&b, "%-*s", width[i], cell)
			} else {
				fmt.Fprintf(&b, "%*s", width[i], cell)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
