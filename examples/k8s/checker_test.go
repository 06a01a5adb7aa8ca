package k8s

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/lameduck/lameduck/core"
)

// Probe endpoints of the examples (DESIGN.md sections 3 and 5).
const (
	readinessPath   = "/readyz"
	preStopPath     = "/prestop"
	livenessService = "liveness" // the liveness service of grpcadapter.Listen
)

var livenessPaths = []string{"/healthz", "/livez"}

// Preset addresses of the examples: HTTP on 8080, gRPC on 9090.
const (
	defaultHTTPAddr = ":8080"
	defaultGRPCAddr = ":9090"
)

// margin returns the margin that [core.CheckBudget] requires for a grace
// period, max(2 s, 10 % of grace), for display only: whether a budget fits
// is for core.CheckBudget to say ([Budget.Fits]). A margin is needed
// because the drain timeout is not the end: after it the process closes
// what is left, flushes its telemetry and exits, the kubelet's SIGTERM
// comes a moment after the preStop hook ends, and a container throttled
// at its CPU limit runs its timers late.
func margin(grace time.Duration) time.Duration { return max(2*time.Second, grace/10) }

// A Budget is the shutdown timeline of one container, from the moment the
// kubelet starts terminating its pod.
type Budget struct {
	// Deployment and Container name the container.
	Deployment, Container string
	// PreStop is the preStop choice: "none", "sleep", "exec sleep" or
	// "httpGet trigger".
	PreStop string
	// PreStopTime is the time the preStop hook adds before SIGTERM:
	// the sleep, or 0 for none and for the trigger (whose hold is the
	// process's own).
	PreStopTime time.Duration
	// Hold and DrainTimeout are the container's -hold (its -hold-max with
	// an adaptive hold: the longest it may be) and -drain-timeout.
	Hold, DrainTimeout time.Duration
	// Margin is the margin core.CheckBudget requires for Grace.
	Margin time.Duration
	// Grace is the pod's terminationGracePeriodSeconds.
	Grace time.Duration
	// ProcessGrace is the container's -grace.
	ProcessGrace time.Duration
}

// Total returns preStop + hold + drain timeout + margin, which must not
// exceed Grace.
func (b Budget) Total() time.Duration { return b.PreStopTime + b.Hold + b.DrainTimeout + b.Margin }

// Fits reports whether the budget fits in the grace period, by the rule
// of [core.CheckBudget], the one the example services apply to their own
// flags: the time before the hold (the preStop sleep) counts as hold.
func (b Budget) Fits() bool {
	return core.CheckBudget(b.Grace, b.PreStopTime+b.Hold, b.DrainTimeout) == nil
}

// String returns the budget as a sum, such as
// "chi/chi: preStop none 0s + hold 10s + drain 15s + margin 3s = 28s ≤ grace 30s".
func (b Budget) String() string {
	op := "≤"
	if !b.Fits() {
		op = ">"
	}
	return fmt.Sprintf("%s/%s: preStop %s %v + hold %v + drain %v + margin %v = %v %s grace %v",
		b.Deployment, b.Container, b.PreStop, b.PreStopTime, b.Hold, b.DrainTimeout, b.Margin, b.Total(), op, b.Grace)
}

// exampleFlags is the command line of the example services (DESIGN.md
// section 5; see examples/chi/main.go).
type exampleFlags struct {
	Addr, AdminAddr           string
	Hold, DrainTimeout, Grace time.Duration
	// HoldMax is the adaptive hold's maximum (-hold-max, -hold when not
	// set), HoldQuiet its -hold-quiet.
	HoldMax, HoldQuiet time.Duration
}

// parseExampleFlags parses a container's args as the example services
// parse their command line, with their defaults, and rejects the values
// they reject before listening, but for the budget, which the caller
// checks with core.CheckBudget. flag's own errors are written to stderr.
func parseExampleFlags(name, defaultAddr string, args []string, stderr *bytes.Buffer) (exampleFlags, error) {
	var f exampleFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.Addr, "addr", defaultAddr, "")
	fs.DurationVar(&f.Hold, "hold", 10*time.Second, "")
	fs.DurationVar(&f.DrainTimeout, "drain-timeout", 15*time.Second, "")
	fs.DurationVar(&f.Grace, "grace", 30*time.Second, "")
	fs.StringVar(&f.AdminAddr, "admin-addr", "", "")
	fs.DurationVar(&f.HoldMax, "hold-max", 0, "")
	fs.DurationVar(&f.HoldQuiet, "hold-quiet", time.Second, "")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	maxSet := false
	fs.Visit(func(fl *flag.Flag) { maxSet = maxSet || fl.Name == "hold-max" })
	if !maxSet {
		f.HoldMax = f.Hold
	}
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments: %q", fs.Args())
	case f.Addr == "":
		err = errors.New("-addr must not be empty")
	case f.Hold < 0:
		err = fmt.Errorf("-hold must not be negative, got %v", f.Hold)
	case f.DrainTimeout <= 0:
		err = fmt.Errorf("-drain-timeout must be positive, got %v", f.DrainTimeout)
	case f.Grace <= 0:
		err = fmt.Errorf("-grace must be positive, got %v", f.Grace)
	case f.HoldMax < f.Hold:
		err = fmt.Errorf("-hold-max %v is shorter than -hold %v, the hold's minimum", f.HoldMax, f.Hold)
	case f.HoldQuiet <= 0:
		err = fmt.Errorf("-hold-quiet must be positive, got %v", f.HoldQuiet)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
	}
	return f, err
}

// manifest is one file's decoded objects.
type manifest struct {
	deployments []deployment
	services    []serviceObject
	pdbs        []podDisruptionBudget
	policies    []networkPolicy
}

// Check decodes a YAML manifest of one or more documents strictly (see
// the package doc), checks every Deployment in it against the Services,
// PodDisruptionBudgets and NetworkPolicies of the same manifest, and
// returns the timing budget of each container. The error lists every
// problem found; a manifest that does not decode yields no budgets.
func Check(data []byte) ([]Budget, error) {
	m, err := decode(data)
	if err != nil {
		return nil, err
	}
	if len(m.deployments) == 0 {
		return nil, errors.New("k8s: no Deployment in the manifest")
	}
	var (
		budgets []Budget
		errs    []error
	)
	for _, d := range m.deployments {
		b, err := m.checkDeployment(d)
		budgets = append(budgets, b...)
		if err != nil {
			errs = append(errs, fmt.Errorf("k8s: Deployment %s: %w", d.Metadata.Name, err))
		}
	}
	return budgets, errors.Join(errs...)
}

func decode(data []byte) (*manifest, error) {
	file, err := parser.ParseBytes(data, parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("k8s: %w", err)
	}
	m := &manifest{}
	for i, doc := range file.Docs {
		if doc.Body == nil {
			continue // an empty document, such as after a trailing ---
		}
		if err := m.add(doc.Body); err != nil {
			return nil, fmt.Errorf("k8s: document %d: %w", i+1, err)
		}
	}
	return m, nil
}

// add decodes one document strictly into the type its apiVersion and kind
// name.
func (m *manifest) add(body ast.Node) error {
	var tm typeMeta
	if err := yaml.NodeToValue(body, &tm); err != nil {
		return err
	}
	strict := []yaml.DecodeOption{yaml.Strict()}
	switch tm {
	case typeMeta{"apps/v1", "Deployment"}:
		var d deployment
		if err := yaml.NodeToValue(body, &d, strict...); err != nil {
			return err
		}
		m.deployments = append(m.deployments, d)
	case typeMeta{"v1", "Service"}:
		var s serviceObject
		if err := yaml.NodeToValue(body, &s, strict...); err != nil {
			return err
		}
		m.services = append(m.services, s)
	case typeMeta{"policy/v1", "PodDisruptionBudget"}:
		var p podDisruptionBudget
		if err := yaml.NodeToValue(body, &p, strict...); err != nil {
			return err
		}
		m.pdbs = append(m.pdbs, p)
	case typeMeta{"networking.k8s.io/v1", "NetworkPolicy"}:
		var p networkPolicy
		if err := yaml.NodeToValue(body, &p, strict...); err != nil {
			return err
		}
		m.policies = append(m.policies, p)
	default:
		return fmt.Errorf("unsupported apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	return nil
}

func (m *manifest) checkDeployment(d deployment) ([]Budget, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	spec := d.Spec
	pod := spec.Template
	labels := pod.Metadata.Labels

	replicas := 1 // the API's default
	if spec.Replicas != nil {
		replicas = *spec.Replicas
	}
	if replicas < 2 {
		fail("replicas %d: a rollout or a node drain of a single pod leaves no pod to serve; want 2 or more", replicas)
	}
	if !spec.Selector.selects(labels) {
		fail("selector %v does not select the pod template's labels %v", spec.Selector.MatchLabels, labels)
	}
	if err := checkStrategy(spec.Strategy, replicas); err != nil {
		errs = append(errs, err)
	}
	if pod.Spec.TerminationGracePeriodSeconds == nil {
		fail("terminationGracePeriodSeconds is not set: say it, and set -grace to match")
	}
	if len(pod.Spec.Containers) == 0 {
		fail("no containers")
	}

	var budgets []Budget
	for _, c := range pod.Spec.Containers {
		b, ports, err := m.checkContainer(d, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.Name, err))
		}
		if b != nil {
			budgets = append(budgets, *b)
		}
		if err := m.checkExposure(labels, c, ports); err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.Name, err))
		}
	}
	if err := m.checkPDB(labels, replicas); err != nil {
		errs = append(errs, err)
	}
	return budgets, errors.Join(errs...)
}

// checkStrategy requires a rolling update that starts a new pod before it
// stops an old one: with maxUnavailable above 0 the rollout deletes ready
// pods before their replacements are ready, and the capacity dips.
func checkStrategy(s deploymentStrategy, replicas int) error {
	if s.Type != "RollingUpdate" {
		return fmt.Errorf("strategy.type %q, want RollingUpdate (set it: the default may change under you)", s.Type)
	}
	ru := s.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil || ru.MaxSurge == nil {
		return errors.New("strategy.rollingUpdate must set maxUnavailable: 0 and maxSurge ≥ 1 (the defaults are 25% each)")
	}
	unavailable, err := ru.MaxUnavailable.scaled(replicas, false)
	if err != nil {
		return fmt.Errorf("maxUnavailable: %w", err)
	}
	surge, err := ru.MaxSurge.scaled(replicas, true)
	if err != nil {
		return fmt.Errorf("maxSurge: %w", err)
	}
	if unavailable != 0 {
		return fmt.Errorf("maxUnavailable %v lets the rollout delete %d ready pod(s) before their replacements are ready; want 0", ru.MaxUnavailable, unavailable)
	}
	if surge < 1 {
		return fmt.Errorf("maxSurge %v is %d pods: with maxUnavailable 0 the rollout could never start; want ≥ 1", ru.MaxSurge, surge)
	}
	return nil
}

// containerPorts are what checkContainer learned of a container's ports.
type containerPorts struct {
	serving int // the -addr port
	admin   int // the -admin-addr port, 0 when there is none
}

func (m *manifest) checkContainer(d deployment, c container) (*Budget, containerPorts, error) {
	var (
		errs  []error
		ports containerPorts
	)
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// The examples' own flag parser, with the examples' defaults: a gRPC
	// readiness probe means the gRPC example.
	defaultAddr := defaultHTTPAddr
	if c.ReadinessProbe != nil && c.ReadinessProbe.GRPC != nil {
		defaultAddr = defaultGRPCAddr
	}
	var stderr bytes.Buffer
	cfg, err := parseExampleFlags(c.Name, defaultAddr, c.Args, &stderr)
	if err != nil {
		return nil, ports, fmt.Errorf("args %q: %s", c.Args, strings.TrimSpace(stderr.String()))
	}
	if ports.serving, err = addrPort(cfg.Addr); err != nil {
		fail("-addr: %v", err)
	} else if !c.declares(ports.serving) {
		fail("-addr port %d is not among the container's ports", ports.serving)
	}
	if cfg.AdminAddr != "" {
		if ports.admin, err = addrPort(cfg.AdminAddr); err != nil {
			fail("-admin-addr: %v", err)
		} else if ports.admin == ports.serving {
			fail("-admin-addr port %d is the serving port: the preStop trigger must not be reachable by the public", ports.admin)
		}
	}

	if err := checkProbes(c, ports.serving); err != nil {
		errs = append(errs, err)
	}

	kind, preStop, err := preStopChoice(c, cfg, ports.admin)
	if err != nil {
		errs = append(errs, err)
	}
	if d.Spec.Template.Spec.TerminationGracePeriodSeconds == nil || err != nil {
		return nil, ports, errors.Join(errs...)
	}
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	b := &Budget{
		Deployment: d.Metadata.Name, Container: c.Name,
		PreStop: kind, PreStopTime: preStop,
		Hold: cfg.HoldMax, DrainTimeout: cfg.DrainTimeout, // the longest hold
		Margin: margin(grace), Grace: grace, ProcessGrace: cfg.Grace,
	}
	if !b.Fits() {
		fail("timing budget %v: the kubelet SIGKILLs before the drain timeout plus margin; "+
			"raise terminationGracePeriodSeconds to at least %v or shorten the hold or drain", b, b.minGrace())
	}
	// The kubelet's grace period counts from the start of the preStop
	// hook and SIGTERM comes after it, so the process gets the grace
	// period less the sleep between SIGTERM and SIGKILL. The trigger's
	// hold is inside the hook, and the process counts it from the
	// trigger, as the kubelet does.
	if want := grace - preStop; cfg.Grace != want {
		fail("-grace %v, want terminationGracePeriodSeconds %v - preStop %v = %v: the process must know when SIGKILL comes",
			cfg.Grace, grace, preStop, want)
	}
	// The process checks its flags with the same rule and exits 2 when
	// they do not fit. With -grace as required above, a budget that fits
	// the pod fits the process too; this catches the others.
	if err := core.CheckBudget(cfg.Grace, cfg.HoldMax, cfg.DrainTimeout); err != nil && b.Fits() {
		fail("args %q: the example exits 2: %v", c.Args, err)
	}
	return b, ports, errors.Join(errs...)
}

// minGrace returns the shortest whole-second grace period in which the
// budget fits, by core.CheckBudget.
func (b Budget) minGrace() time.Duration {
	g := ceilSeconds(b.PreStopTime + b.Hold + b.DrainTimeout + margin(b.Grace))
	for core.CheckBudget(g, b.PreStopTime+b.Hold, b.DrainTimeout) != nil {
		g += time.Second
	}
	return g
}

func ceilSeconds(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// checkProbes requires the three probes of a lameduck service, all on the
// serving port: readiness on the endpoint that fails from the hold on,
// liveness and startup on the one that passes until exit.
func checkProbes(c container, port int) error {
	var errs []error
	if c.ReadinessProbe == nil {
		errs = append(errs, errors.New("no readinessProbe: the pod would be ready before it serves and stay ready during the hold"))
	} else if err := c.checkProbe(c.ReadinessProbe, port, false); err != nil {
		errs = append(errs, fmt.Errorf("readinessProbe: %w", err))
	}
	if c.LivenessProbe == nil {
		errs = append(errs, errors.New("no livenessProbe: a wedged process would never be restarted"))
	} else if err := c.checkProbe(c.LivenessProbe, port, true); err != nil {
		errs = append(errs, fmt.Errorf("livenessProbe: %w", err))
	}
	if c.StartupProbe == nil {
		errs = append(errs, errors.New("no startupProbe: a slow start would be killed by the liveness probe"))
	} else if err := c.checkProbe(c.StartupProbe, port, true); err != nil {
		errs = append(errs, fmt.Errorf("startupProbe: %w", err))
	}
	return errors.Join(errs...)
}

// checkProbe checks one probe: on the serving port, at the readiness
// endpoint or (liveness) at the liveness endpoint.
func (c container) checkProbe(p *probe, port int, liveness bool) error {
	switch {
	case p.HTTPGet != nil && p.GRPC == nil:
		if got, err := c.resolve(p.HTTPGet.Port); err != nil {
			return err
		} else if got != port {
			return fmt.Errorf("port %d, want the serving port %d", got, port)
		}
		path := p.HTTPGet.Path
		if liveness && !slices.Contains(livenessPaths, path) {
			return fmt.Errorf("path %q, want one of %q: liveness must pass until the process exits", path, livenessPaths)
		}
		if !liveness && path != readinessPath {
			return fmt.Errorf("path %q, want %q: readiness must fail from the first moment of the hold", path, readinessPath)
		}
	case p.GRPC != nil && p.HTTPGet == nil:
		if p.GRPC.Port != port {
			return fmt.Errorf("port %d, want the serving port %d", p.GRPC.Port, port)
		}
		svc := ""
		if p.GRPC.Service != nil {
			svc = *p.GRPC.Service
		}
		if liveness && svc != livenessService {
			return fmt.Errorf("gRPC service %q, want %q: service \"\" turns NOT_SERVING in the hold, which would restart the container", svc, livenessService)
		}
		if !liveness && svc != "" {
			return fmt.Errorf("gRPC service %q, want \"\" (readiness)", svc)
		}
	default:
		return errors.New("want exactly one of httpGet and grpc")
	}
	return nil
}

// preStopChoice classifies the container's preStop hook and returns the
// time it adds before SIGTERM.
func preStopChoice(c container, cfg exampleFlags, adminPort int) (string, time.Duration, error) {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		if adminPort != 0 {
			return "", 0, errors.New("-admin-addr serves the preStop trigger, but no preStop hook calls it")
		}
		return "none", 0, nil
	}
	h := c.Lifecycle.PreStop
	set := 0
	for _, ok := range []bool{h.HTTPGet != nil, h.Sleep != nil, h.Exec != nil} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return "", 0, errors.New("preStop must set exactly one of httpGet, sleep and exec")
	}
	switch {
	case h.Sleep != nil:
		if h.Sleep.Seconds < 0 {
			return "", 0, fmt.Errorf("preStop sleep %ds is negative", h.Sleep.Seconds)
		}
		return "sleep", time.Duration(h.Sleep.Seconds) * time.Second, nil
	case h.Exec != nil:
		d, err := execSleep(h.Exec.Command)
		if err != nil {
			return "", 0, fmt.Errorf("preStop exec: %w", err)
		}
		return "exec sleep", d, nil
	default:
		g := h.HTTPGet
		if g.Path != preStopPath {
			return "", 0, fmt.Errorf("preStop httpGet path %q, want %q", g.Path, preStopPath)
		}
		if g.Scheme != "" && g.Scheme != "HTTP" {
			return "", 0, fmt.Errorf("preStop httpGet scheme %q, want HTTP: the admin listener is plaintext", g.Scheme)
		}
		if adminPort == 0 {
			return "", 0, errors.New("preStop httpGet calls the trigger, but -admin-addr is not set: the hook fails and SIGTERM comes at once")
		}
		port, err := c.resolve(g.Port)
		if err != nil {
			return "", 0, fmt.Errorf("preStop httpGet: %w", err)
		}
		if port != adminPort {
			return "", 0, fmt.Errorf("preStop httpGet port %d, want the -admin-addr port %d", port, adminPort)
		}
		if host, _, _ := net.SplitHostPort(cfg.AdminAddr); host != "" && host != "0.0.0.0" && host != "::" {
			return "", 0, fmt.Errorf("-admin-addr %q: the kubelet calls the pod IP, so listen on all interfaces (\":%d\")", cfg.AdminAddr, adminPort)
		}
		if cfg.Hold == 0 {
			return "", 0, errors.New("preStop httpGet with -hold=0 holds nothing: drop the hook")
		}
		return "httpGet trigger", 0, nil
	}
}

// execSleep returns how long an exec preStop sleeps: ["sleep", "N"] or
// ["sh", "-c", "sleep N"] (with any path to sleep or sh). Any other
// command takes a time the checker cannot know.
func execSleep(cmd []string) (time.Duration, error) {
	var arg string
	switch {
	case len(cmd) == 2 && base(cmd[0]) == "sleep":
		arg = cmd[1]
	case len(cmd) == 3 && (base(cmd[0]) == "sh" || base(cmd[0]) == "bash") && cmd[1] == "-c":
		f := strings.Fields(cmd[2])
		if len(f) != 2 || base(f[0]) != "sleep" {
			return 0, fmt.Errorf("command %q is not a plain sleep: its duration cannot be checked", cmd)
		}
		arg = f[1]
	default:
		return 0, fmt.Errorf("command %q is not a plain sleep: its duration cannot be checked", cmd)
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(arg, "s"), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("sleep %q: want whole seconds", arg)
	}
	return time.Duration(n) * time.Second, nil
}

func base(p string) string { return p[strings.LastIndex(p, "/")+1:] }

// checkExposure checks that a Service selects the pods and targets the
// serving port, and that nothing exposes the admin port: not a Service,
// and not the NetworkPolicy that must select the pods when there is one.
func (m *manifest) checkExposure(labels map[string]string, c container, ports containerPorts) error {
	var errs []error
	served := false
	for _, s := range m.services {
		if len(s.Spec.Selector) == 0 || !subset(s.Spec.Selector, labels) {
			continue
		}
		for _, sp := range s.Spec.Ports {
			port, err := c.resolve(sp.TargetPort)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("Service %s port %s: %w", s.Metadata.Name, sp.Name, err))
			case ports.admin != 0 && port == ports.admin:
				errs = append(errs, fmt.Errorf("Service %s port %s exposes the admin port %d: anyone could take pods out of service", s.Metadata.Name, sp.Name, port))
			case port == ports.serving:
				served = true
			}
		}
	}
	if !served && ports.serving != 0 {
		errs = append(errs, fmt.Errorf("no Service targets the serving port %d of the pods", ports.serving))
	}
	if ports.admin == 0 {
		return errors.Join(errs...)
	}
	closed := false
	for _, p := range m.policies {
		if !p.Spec.PodSelector.selects(labels) || !slices.Contains(p.Spec.PolicyTypes, "Ingress") {
			continue
		}
		closed = true
		for _, r := range p.Spec.Ingress {
			if len(r.Ports) == 0 {
				errs = append(errs, fmt.Errorf("NetworkPolicy %s allows every port, the admin port %d too", p.Metadata.Name, ports.admin))
			}
			for _, np := range r.Ports {
				if np.Port == nil {
					errs = append(errs, fmt.Errorf("NetworkPolicy %s allows every port, the admin port %d too", p.Metadata.Name, ports.admin))
					continue
				}
				if port, err := c.resolve(*np.Port); err == nil && port == ports.admin {
					errs = append(errs, fmt.Errorf("NetworkPolicy %s allows the admin port %d", p.Metadata.Name, port))
				}
			}
		}
	}
	if !closed {
		errs = append(errs, fmt.Errorf("the admin port %d is open to every pod in the cluster: add an ingress NetworkPolicy for the pods that leaves it out", ports.admin))
	}
	return errors.Join(errs...)
}

// checkPDB requires a PodDisruptionBudget that selects the pods and lets
// a node drain evict one of them at a time.
func (m *manifest) checkPDB(labels map[string]string, replicas int) error {
	found := false
	for _, p := range m.pdbs {
		if !p.Spec.Selector.selects(labels) {
			continue
		}
		found = true
		s := p.Spec
		switch {
		case (s.MinAvailable == nil) == (s.MaxUnavailable == nil):
			return fmt.Errorf("PodDisruptionBudget %s: set exactly one of minAvailable and maxUnavailable", p.Metadata.Name)
		case s.MaxUnavailable != nil:
			n, err := s.MaxUnavailable.scaled(replicas, true)
			if err != nil {
				return fmt.Errorf("PodDisruptionBudget %s: maxUnavailable: %w", p.Metadata.Name, err)
			}
			if n < 1 {
				return fmt.Errorf("PodDisruptionBudget %s: maxUnavailable %v blocks every eviction: node drains would hang", p.Metadata.Name, s.MaxUnavailable)
			}
		default:
			n, err := s.MinAvailable.scaled(replicas, true)
			if err != nil {
				return fmt.Errorf("PodDisruptionBudget %s: minAvailable: %w", p.Metadata.Name, err)
			}
			if n >= replicas {
				return fmt.Errorf("PodDisruptionBudget %s: minAvailable %v of %d replicas blocks every eviction: node drains would hang", p.Metadata.Name, s.MinAvailable, replicas)
			}
		}
	}
	if !found {
		return errors.New("no PodDisruptionBudget selects the pods: a node drain may evict them all at once")
	}
	return nil
}

// resolve returns the number of a port given by number or by the name of
// one of the container's ports.
func (c container) resolve(p intOrString) (int, error) {
	if !p.IsStr {
		return p.IntVal, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", p.StrVal)
}

// declares reports whether the container lists port among its ports.
func (c container) declares(port int) bool {
	for _, cp := range c.Ports {
		if cp.ContainerPort == port {
			return true
		}
	}
	return false
}

// addrPort returns the port of a host:port listen address.
func addrPort(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q of %q: want 1 to 65535 (a pod's port cannot be picked at random)", p, addr)
	}
	return n, nil
}
