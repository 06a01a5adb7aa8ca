package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Server behaviours on SIGTERM, in the order they are run.
const (
	behaviourExit     = "exit"     // no handler: the signal kills the process
	behaviourShutdown = "shutdown" // http.Server.Shutdown as soon as SIGTERM arrives
	behaviourLameduck = "lameduck" // core.Lifecycle: a fixed hold, then drain
	behaviourAdaptive = "adaptive" // core.Lifecycle with core.WithAdaptiveHold
)

// Load balancer modes.
const (
	modeL4 = "l4" // TCP proxy: picks a backend per connection (kube-proxy)
	modeL7 = "l7" // HTTP reverse proxy: picks a backend per request (an ingress)
)

var (
	allBehaviours = []string{behaviourExit, behaviourShutdown, behaviourLameduck, behaviourAdaptive}
	allModes      = []string{modeL4, modeL7}
)

// config is the demo's command line.
type config struct {
	Backends     int
	Behaviours   []string
	Modes        []string
	Workers      int
	Requests     int64
	RunTimeout   time.Duration
	Settle       time.Duration
	Hold         time.Duration
	HoldQuiet    time.Duration
	HoldMax      time.Duration
	DrainTimeout time.Duration
	DelayMin     time.Duration
	DelayMax     time.Duration
	Seed         uint64
	MSMin        int
	MSMax        int
	PostRatio    float64
	NewConnRatio float64
	ReqTimeout   time.Duration
	SVG          string
	Verbose      bool
	Proto        string // http or grpc
	Rate         int    // grpc: RPCs per second, in all
	GRPCConns    int    // grpc: pick_first channels
}

// defaultConfig returns the defaults, chosen so that the eight runs
// finish in well under a minute on two cores. The endpoint removal lands
// after the fixed hold: the lameduck row shows what a hold that is a
// guess loses, the adaptive row (the same hold as its minimum) that a
// hold which ends when the new traffic stops loses nothing.
func defaultConfig() config {
	return config{
		Backends:     3,
		Behaviours:   allBehaviours,
		Modes:        allModes,
		Workers:      16,
		Requests:     500000,
		RunTimeout:   60 * time.Second,
		Settle:       300 * time.Millisecond,
		Hold:         time.Second,
		HoldQuiet:    300 * time.Millisecond,
		HoldMax:      5 * time.Second,
		DrainTimeout: 5 * time.Second,
		DelayMin:     1100 * time.Millisecond,
		DelayMax:     1500 * time.Millisecond,
		Seed:         1,
		MSMin:        0,
		MSMax:        50,
		PostRatio:    0.5,
		NewConnRatio: 0.5,
		ReqTimeout:   5 * time.Second,
		Proto:        protoHTTP,
		Rate:         400,
		GRPCConns:    4,
	}
}

// The defaults that -proto grpc changes, unless given: the endpoint
// removal lands within the hold, as the hold should be sized, so that
// the table shows what a hold does for gRPC clients pinned by an L4
// balancer (see docs/rollout.md).
const (
	grpcDefaultHold     = 1500 * time.Millisecond
	grpcDefaultDelayMin = 300 * time.Millisecond
	grpcDefaultDelayMax = time.Second
)

const usageHeader = `Usage: go run ./examples/rollout [flags]

Rolling restarts of a pool of backend processes behind an in-process load
balancer, under load, once for each server behaviour and load balancer mode,
with identical conditions (same seed, same load, same delays).

Each backend is this program re-executed, so every SIGTERM is a real one.
For each backend in turn the demo starts its replacement, waits until its
/readyz answers 200 and adds it to the load balancer, then does what
Kubernetes does when it deletes a pod: it sends SIGTERM to the old process
and, at the same time, schedules the removal of its endpoint from the load
balancer after a random delay in [-delay-min, -delay-max] (the time the
endpoint change takes to reach kube-proxy or an ingress).

Behaviours (what the backend does on SIGTERM):
  exit      nothing: the signal kills the process (no handler installed)
  shutdown  http.Server.Shutdown at once, the common Go pattern
  lameduck  core.Lifecycle: readiness fails, everything is served for
            -hold, then the drain (at most -drain-timeout)
  adaptive  core.Lifecycle with core.WithAdaptiveHold: the same, but the
            hold lasts at least -hold, then ends once no request has come
            on a connection opened during the hold for -hold-quiet (the
            balancer has stopped routing here), at most -hold-max

By default the endpoint removal lands after -hold: the fixed hold ends
while the balancer still routes to the old backend, and a fixed hold long
enough for the slowest removal would make every backend wait that long.

Load balancer modes:
  l4  a TCP proxy that picks a backend from the current endpoint list only
      when it accepts a client connection, then relays bytes both ways for
      the life of that connection: removing an endpoint leaves established
      keep-alive connections where they are (kube-proxy and conntrack)
  l7  an HTTP reverse proxy that picks a backend for every request, keeps
      its own keep-alive connections to the backends and never retries a
      failed request: a failed upstream is a 502 to the client

The load: -workers clients send GET and POST /work?ms=N (N drawn in
[-ms-min, -ms-max]); a share -new-conn of them are short-lived clients
(other pods' jobs, scripts) that open a new connection for every request,
the others keep one connection alive. A POST has a body and no
Idempotency-Key, so no client may safely retry it. Behind the l4 balancer
the short-lived clients are what keeps reaching a backend still listed:
the keep-alive ones are told to reconnect during the hold and then stay
where they land.

With -proto grpc the backends serve gRPC instead: a unary Work RPC (it
waits N ms) and grpc.health.v1, which the demo polls before adding a
backend. The behaviours are then exit (no handler), gracefulstop
(grpc.Server.GracefulStop as soon as SIGTERM arrives) and lameduck
(grpcadapter.Listen and Run: health NOT_SERVING and everything served for
-hold, then GracefulStop), behind the l4 balancer only. The load is -rate
unary RPCs a second from -workers workers over -grpc-conns pick_first
channels through the balancer, with grpc-go's client defaults (no retry
policy, no wait-for-ready): each channel stays on one backend until its
connection breaks. Unless given, -hold is 1.5s and the removal delay
300ms-1s, within the hold.

Flags:
`

// parseFlags parses args (without the program name). It returns
// flag.ErrHelp for -h, and otherwise an error that says which value is
// wrong, before anything is started.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("rollout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	behaviours := strings.Join(c.Behaviours, ",")
	modes := strings.Join(c.Modes, ",")
	fs.IntVar(&c.Backends, "backends", c.Backends, "`number` of backend processes in the pool (1-20)")
	fs.StringVar(&behaviours, "behaviours", behaviours, "comma-separated `list` of server behaviours to run: exit, shutdown, lameduck, adaptive")
	fs.StringVar(&modes, "modes", modes, "comma-separated `list` of load balancer modes to run: l4, l7")
	fs.IntVar(&c.Workers, "workers", c.Workers, "`number` of concurrent clients, each on its own keep-alive connection (1-1000)")
	fs.Int64Var(&c.Requests, "requests", c.Requests, "at most this many requests per run (a bound; runs normally end before)")
	fs.DurationVar(&c.RunTimeout, "run-timeout", c.RunTimeout, "a run that takes longer than this is abandoned (a bound)")
	fs.DurationVar(&c.Settle, "settle", c.Settle, "load before the first restart and after the last one")
	fs.DurationVar(&c.Hold, "hold", c.Hold, "lameduck: how long to keep serving after SIGTERM; adaptive: the hold's minimum")
	fs.DurationVar(&c.HoldQuiet, "hold-quiet", c.HoldQuiet, "adaptive: the hold ends after this long without new traffic (a request on a connection opened during the hold)")
	fs.DurationVar(&c.HoldMax, "hold-max", c.HoldMax, "adaptive: the hold's maximum (at least -hold)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "lameduck, adaptive and shutdown: how long in-flight requests may take to finish after the listener closes")
	fs.DurationVar(&c.DelayMin, "delay-min", c.DelayMin, "shortest delay between SIGTERM and the endpoint's removal from the load balancer")
	fs.DurationVar(&c.DelayMax, "delay-max", c.DelayMax, "longest delay between SIGTERM and the endpoint's removal from the load balancer")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the removal delays and of the load (the same for every run)")
	fs.IntVar(&c.MSMin, "ms-min", c.MSMin, "shortest work of a request, in `milliseconds`")
	fs.IntVar(&c.MSMax, "ms-max", c.MSMax, "longest work of a request, in `milliseconds` (at most 60000)")
	fs.Float64Var(&c.PostRatio, "post", c.PostRatio, "share of POST requests, from 0 to 1")
	fs.Float64Var(&c.NewConnRatio, "new-conn", c.NewConnRatio, "share of the clients that open a new connection for every request, from 0 to 1 (the others keep theirs alive)")
	fs.DurationVar(&c.ReqTimeout, "request-timeout", c.ReqTimeout, "a request that takes longer fails as a timeout")
	fs.StringVar(&c.SVG, "svg", "", "write a timeline of successes and failures to this `file` (SVG)")
	fs.BoolVar(&c.Verbose, "v", false, "show the backends' logs (stderr) and every step")
	fs.StringVar(&c.Proto, "proto", c.Proto, "`protocol` of the backends and the load: http, or grpc (behaviours exit, gracefulstop, lameduck; l4 only)")
	fs.IntVar(&c.Rate, "rate", c.Rate, "grpc: unary RPCs per second, in all (1-100000)")
	fs.IntVar(&c.GRPCConns, "grpc-conns", c.GRPCConns, "grpc: `number` of pick_first client channels the workers share (1-100)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	switch c.Proto = strings.ToLower(c.Proto); c.Proto {
	case protoHTTP:
	case protoGRPC:
		if !set["behaviours"] {
			behaviours = strings.Join(allGRPCBehaviours, ",")
		}
		if c.Behaviours, err = parseList("behaviours", behaviours, allGRPCBehaviours); err != nil {
			return c, fmt.Errorf("%w (with -proto grpc)", err)
		}
		if set["modes"] && modes != modeL4 {
			return c, fmt.Errorf("-modes: -proto grpc runs behind the l4 balancer only, got %q", modes)
		}
		c.Modes = []string{modeL4}
		for _, f := range []string{"hold-quiet", "hold-max", "post", "new-conn"} {
			if set[f] {
				return c, fmt.Errorf("-%s does not apply to -proto grpc", f)
			}
		}
		if !set["hold"] {
			c.Hold = grpcDefaultHold
		}
		if !set["delay-min"] {
			c.DelayMin = grpcDefaultDelayMin
		}
		if !set["delay-max"] {
			c.DelayMax = max(grpcDefaultDelayMax, c.DelayMin)
		}
		c.HoldMax = max(c.HoldMax, c.Hold)
		return c, c.validate()
	default:
		return c, fmt.Errorf("-proto: unknown protocol %q, want http or grpc", c.Proto)
	}
	for _, f := range []string{"rate", "grpc-conns"} {
		if set[f] {
			return c, fmt.Errorf("-%s applies to -proto grpc only", f)
		}
	}
	if c.Behaviours, err = parseList("behaviours", behaviours, allBehaviours); err != nil {
		return c, err
	}
	if c.Modes, err = parseList("modes", modes, allModes); err != nil {
		return c, err
	}
	return c, c.validate()
}

// parseList parses a comma-separated list of known names, without
// duplicates, into the order of known.
func parseList(flagName, s string, known []string) ([]string, error) {
	seen := map[string]bool{}
	for name := range strings.SplitSeq(s, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("-%s: unknown name %q, want some of %s", flagName, name, strings.Join(known, ", "))
		}
		if seen[name] {
			return nil, fmt.Errorf("-%s: %q given twice", flagName, name)
		}
		seen[name] = true
	}
	var out []string
	for _, name := range known {
		if seen[name] {
			out = append(out, name)
		}
	}
	return out, nil
}

// longestHold is how long a backend of the behaviour may hold.
func (c config) longestHold(behaviour string) time.Duration {
	switch behaviour {
	case behaviourLameduck:
		return c.Hold
	case behaviourAdaptive:
		return c.HoldMax
	}
	return 0
}

func (c config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Backends < 1 || c.Backends > 20 {
		bad("-backends must be from 1 to 20, got %d", c.Backends)
	}
	if c.Workers < 1 || c.Workers > 1000 {
		bad("-workers must be from 1 to 1000, got %d", c.Workers)
	}
	if c.Requests < 1 {
		bad("-requests must be positive, got %d", c.Requests)
	}
	if c.RunTimeout <= 0 {
		bad("-run-timeout must be positive, got %v", c.RunTimeout)
	}
	if c.Settle < 0 {
		bad("-settle must not be negative, got %v", c.Settle)
	}
	if c.Hold < 0 {
		bad("-hold must not be negative, got %v", c.Hold)
	}
	if c.HoldQuiet <= 0 {
		bad("-hold-quiet must be positive, got %v", c.HoldQuiet)
	}
	if c.HoldMax < c.Hold {
		bad("-hold-max %v must not be less than -hold %v, the adaptive hold's minimum", c.HoldMax, c.Hold)
	}
	if c.DrainTimeout <= 0 {
		bad("-drain-timeout must be positive, got %v", c.DrainTimeout)
	}
	if c.DelayMin < 0 {
		bad("-delay-min must not be negative, got %v", c.DelayMin)
	}
	if c.DelayMax < c.DelayMin {
		bad("-delay-max %v must not be less than -delay-min %v", c.DelayMax, c.DelayMin)
	}
	if c.MSMin < 0 {
		bad("-ms-min must not be negative, got %d", c.MSMin)
	}
	if c.MSMax < c.MSMin || c.MSMax > 60000 {
		bad("-ms-max must be from -ms-min (%d) to 60000, got %d", c.MSMin, c.MSMax)
	}
	if !(c.PostRatio >= 0 && c.PostRatio <= 1) { // also rejects NaN
		bad("-post must be from 0 to 1, got %v", c.PostRatio)
	}
	if !(c.NewConnRatio >= 0 && c.NewConnRatio <= 1) {
		bad("-new-conn must be from 0 to 1, got %v", c.NewConnRatio)
	}
	if c.Rate < 1 || c.Rate > 100000 {
		bad("-rate must be from 1 to 100000, got %d", c.Rate)
	}
	if c.GRPCConns < 1 || c.GRPCConns > 100 {
		bad("-grpc-conns must be from 1 to 100, got %d", c.GRPCConns)
	}
	if c.ReqTimeout <= 0 {
		bad("-request-timeout must be positive, got %v", c.ReqTimeout)
	}
	return errors.Join(errs...)
}
