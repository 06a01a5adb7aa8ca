package k8s_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/examples/k8s"
)

// TestManifests checks every manifest of this directory and pins the
// budget of each, so that the checker cannot pass a manifest by reading
// nothing out of it.
func TestManifests(t *testing.T) {
	want := map[string][]string{
		"chi.yaml":               {"lameduck-chi/chi: preStop none 0s + hold 10s + drain 15s + margin 3s = 28s ≤ grace 30s"},
		"chi-prestop-sleep.yaml": {"lameduck-chi/chi: preStop sleep 8s + hold 2s + drain 15s + margin 3s = 28s ≤ grace 30s"},
		"chi-prestop-exec.yaml":  {"lameduck-chi/chi: preStop exec sleep 8s + hold 2s + drain 15s + margin 3s = 28s ≤ grace 30s"},
		"chi-prestop-http.yaml":  {"lameduck-chi/chi: preStop httpGet trigger 0s + hold 10s + drain 15s + margin 3s = 28s ≤ grace 30s"},
		"grpc.yaml":              {"lameduck-grpc/grpc: preStop none 0s + hold 10s + drain 15s + margin 3s = 28s ≤ grace 30s"},
	}
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yml, err := filepath.Glob("*.yml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, yml...)
	if len(files) == 0 {
		t.Fatal("no manifests found")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			budgets, err := k8s.Check(data)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			var got []string
			for _, b := range budgets {
				got = append(got, b.String())
			}
			w, ok := want[f]
			if !ok {
				t.Fatalf("no budget pinned for %s; it is %q: add it to the test", f, got)
			}
			if !slices.Equal(got, w) {
				t.Errorf("budgets:\n got %q\nwant %q", got, w)
			}
		})
	}
	for f := range want {
		if !slices.Contains(files, f) {
			t.Errorf("%s is pinned but missing", f)
		}
	}
}

// TestCheckRejects breaks the manifests one way at a time and checks that
// Check names the problem. Each case rewrites a correct manifest, so that
// it breaks exactly one thing.
func TestCheckRejects(t *testing.T) {
	cases := []struct {
		name string
		file string
		edit []string // old, new pairs; each old must occur
		want string
	}{
		{"unknown_field", "chi.yaml",
			[]string{"minReadySeconds: 5", "minReadySecond: 5"}, "unknown field"},
		{"unknown_field_in_probe", "chi.yaml",
			[]string{"periodSeconds: 2", "periodSeconds: 2\n            terminationGracePeriodSeconds: 5"}, "unknown field"},
		{"wrong_type", "chi.yaml",
			[]string{"replicas: 3", "replicas: three"}, "replicas"},
		{"duplicate_key", "chi.yaml",
			[]string{"replicas: 3", "replicas: 3\n  replicas: 4"}, "already defined"},
		{"unknown_kind", "chi.yaml",
			[]string{"apiVersion: policy/v1\nkind: PodDisruptionBudget", "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget"}, "unsupported apiVersion"},
		{"budget_over_grace", "chi.yaml",
			[]string{"terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 26", "-grace=30s", "-grace=26s"},
			"timing budget lameduck-chi/chi: preStop none 0s + hold 10s + drain 15s + margin 2.6s = 27.6s > grace 26s"},
		{"flags_over_grace", "chi.yaml",
			[]string{"-drain-timeout=15s", "-drain-timeout=25s"}, "margin 3s = 38s > grace 30s"},
		{"process_grace_too_short", "chi.yaml",
			[]string{"-grace=30s", "-grace=20s"}, "the example exits 2: lameduck: hold 10s + drain timeout 15s + margin 2s = 27s exceeds the grace period 20s"},
		{"grace_flag_disagrees", "chi.yaml",
			[]string{"-grace=30s", "-grace=40s"}, "-grace 40s, want terminationGracePeriodSeconds 30s"},
		{"grace_not_set", "chi.yaml",
			[]string{"      terminationGracePeriodSeconds: 30\n", ""}, "terminationGracePeriodSeconds is not set"},
		{"sleep_not_subtracted_from_grace", "chi-prestop-sleep.yaml",
			[]string{"-grace=22s", "-grace=30s"}, "want terminationGracePeriodSeconds 30s - preStop 8s = 22s"},
		{"sleep_over_budget", "chi-prestop-sleep.yaml",
			[]string{"seconds: 8", "seconds: 12"}, "= 32s > grace 30s"},
		{"exec_not_a_sleep", "chi-prestop-exec.yaml",
			[]string{`command: ["sleep", "8"]`, `command: ["/bin/drain.sh"]`}, "not a plain sleep"},
		{"exec_shell_sleep_over_budget", "chi-prestop-exec.yaml",
			[]string{`command: ["sleep", "8"]`, `command: ["/bin/sh", "-c", "sleep 20"]`}, "> grace 30s"},
		{"no_readiness_probe", "chi.yaml",
			[]string{"readinessProbe:", "x-readinessProbe:"}, "unknown field"},
		{"missing_readiness_probe", "chi.yaml",
			[]string{"          readinessProbe:\n            httpGet:\n              path: /readyz\n              port: http\n            periodSeconds: 2\n            timeoutSeconds: 1\n            failureThreshold: 1\n", ""},
			"no readinessProbe"},
		{"missing_startup_probe", "chi.yaml",
			[]string{"          startupProbe:\n            httpGet:\n              path: /healthz\n              port: http\n            periodSeconds: 1\n            failureThreshold: 30\n", ""},
			"no startupProbe"},
		{"readiness_on_healthz", "chi.yaml",
			[]string{"path: /readyz", "path: /healthz"}, `readinessProbe: path "/healthz", want "/readyz"`},
		{"liveness_on_readyz", "chi.yaml",
			[]string{"      livenessProbe:\n            httpGet:\n              path: /healthz", "      livenessProbe:\n            httpGet:\n              path: /readyz"},
			`livenessProbe: path "/readyz"`},
		{"probe_on_wrong_port", "chi.yaml",
			[]string{"path: /readyz\n              port: http", "path: /readyz\n              port: 9091"}, "port 9091, want the serving port 8080"},
		{"grpc_liveness_on_readiness_service", "grpc.yaml",
			[]string{"          livenessProbe:\n            grpc:\n              port: 9090\n              service: liveness", "          livenessProbe:\n            grpc:\n              port: 9090"},
			`livenessProbe: gRPC service "", want "liveness"`},
		{"grpc_readiness_on_liveness_service", "grpc.yaml",
			[]string{"port: 9090 # service \"\": readiness", "port: 9090\n              service: liveness"},
			`readinessProbe: gRPC service "liveness", want ""`},
		{"grpc_default_port_mismatch", "grpc.yaml",
			[]string{`"-addr=:9090", `, `"-addr=:9091", `}, "-addr port 9091 is not among the container's ports"},
		{"max_unavailable", "chi.yaml",
			[]string{"maxUnavailable: 0 #", "maxUnavailable: 1 #"}, "maxUnavailable 1"},
		{"max_unavailable_percent", "chi.yaml",
			[]string{"maxUnavailable: 0 #", "maxUnavailable: 50% #"}, "maxUnavailable 50%"},
		{"no_surge", "chi.yaml",
			[]string{"maxSurge: 1 ", "maxSurge: 0 "}, "maxSurge 0"},
		{"recreate", "chi.yaml",
			[]string{"type: RollingUpdate", "type: Recreate"}, "want RollingUpdate"},
		{"single_replica", "chi.yaml",
			[]string{"replicas: 3", "replicas: 1"}, "replicas 1"},
		{"no_pdb", "chi.yaml",
			[]string{"kind: PodDisruptionBudget\nmetadata:\n  name: lameduck-chi\n  labels:\n    app.kubernetes.io/name: lameduck-chi\nspec:\n  maxUnavailable: 1\n  # A pod that is not ready serves nothing: let drains evict it.\n  unhealthyPodEvictionPolicy: AlwaysAllow\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: lameduck-chi",
				"kind: PodDisruptionBudget\nmetadata:\n  name: lameduck-chi\n  labels:\n    app.kubernetes.io/name: lameduck-chi\nspec:\n  maxUnavailable: 1\n  # A pod that is not ready serves nothing: let drains evict it.\n  unhealthyPodEvictionPolicy: AlwaysAllow\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: other"},
			"no PodDisruptionBudget"},
		{"pdb_blocks_drains", "chi.yaml",
			[]string{"spec:\n  maxUnavailable: 1\n", "spec:\n  minAvailable: 3\n"}, "blocks every eviction"},
		{"no_service", "chi.yaml",
			[]string{"targetPort: http", "targetPort: 8081"}, "no Service targets the serving port 8080"},
		{"trigger_without_admin_addr", "chi-prestop-http.yaml",
			[]string{`"-admin-addr=:9091", `, ""}, "-admin-addr is not set"},
		{"admin_addr_without_trigger", "chi.yaml",
			[]string{`"-addr=:8080", `, `"-addr=:8080", "-admin-addr=:9091", `}, "no preStop hook calls it"},
		{"admin_on_localhost", "chi-prestop-http.yaml",
			[]string{`"-admin-addr=:9091"`, `"-admin-addr=127.0.0.1:9091"`}, "the kubelet calls the pod IP"},
		{"admin_on_serving_port", "chi-prestop-http.yaml",
			[]string{`"-admin-addr=:9091"`, `"-admin-addr=:8080"`}, "is the serving port"},
		{"admin_port_in_service", "chi-prestop-http.yaml",
			[]string{"      targetPort: http\n      protocol: TCP\n", "      targetPort: http\n      protocol: TCP\n    - name: admin\n      port: 9091\n      targetPort: admin\n"},
			"exposes the admin port 9091"},
		{"admin_port_in_network_policy", "chi-prestop-http.yaml",
			[]string{"        - port: 8080\n", "        - port: 8080\n        - port: admin\n"}, "NetworkPolicy lameduck-chi allows the admin port 9091"},
		{"no_network_policy", "chi-prestop-http.yaml",
			[]string{"  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: lameduck-chi", "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: other"},
			"open to every pod in the cluster"},
		{"trigger_wrong_path", "chi-prestop-http.yaml",
			[]string{"path: /prestop", "path: /shutdown"}, `path "/shutdown", want "/prestop"`},
		{"two_prestop_actions", "chi-prestop-sleep.yaml",
			[]string{"              sleep:\n                seconds: 8\n", "              sleep:\n                seconds: 8\n              exec:\n                command: [\"sleep\", \"8\"]\n"},
			"exactly one of httpGet, sleep and exec"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			s := string(data)
			for i := 0; i < len(tc.edit); i += 2 {
				if !strings.Contains(s, tc.edit[i]) {
					t.Fatalf("%s lacks %q: the case no longer breaks anything", tc.file, tc.edit[i])
				}
				s = strings.ReplaceAll(s, tc.edit[i], tc.edit[i+1])
			}
			_, err = k8s.Check([]byte(s))
			if err == nil {
				t.Fatalf("Check passed the broken manifest, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check error:\n%v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestBudgetAgreesWithCore checks that Check decides as core.CheckBudget
// does, at the boundary: a budget whose printed total is exactly the
// grace period fits, one a millisecond longer does not.
func TestBudgetAgreesWithCore(t *testing.T) {
	data, err := os.ReadFile("chi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		grace, hold time.Duration
		fits        bool
		want        string
	}{
		{20 * time.Second, 3 * time.Second, true, "hold 3s + drain 15s + margin 2s = 20s ≤ grace 20s"},
		{20 * time.Second, 3001 * time.Millisecond, false, "hold 3.001s + drain 15s + margin 2s = 20.001s > grace 20s"},
		{30 * time.Second, 12 * time.Second, true, "hold 12s + drain 15s + margin 3s = 30s ≤ grace 30s"},
		{30 * time.Second, 12001 * time.Millisecond, false, "hold 12.001s + drain 15s + margin 3s = 30.001s > grace 30s"},
		{2 * time.Minute, 93 * time.Second, true, "hold 1m33s + drain 15s + margin 12s = 2m0s ≤ grace 2m0s"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			s := strings.NewReplacer(
				"terminationGracePeriodSeconds: 30", fmt.Sprintf("terminationGracePeriodSeconds: %d", int(tc.grace.Seconds())),
				"-grace=30s", "-grace="+tc.grace.String(),
				"-hold=10s", "-hold="+tc.hold.String(),
			).Replace(string(data))
			budgets, err := k8s.Check([]byte(s))
			if len(budgets) != 1 {
				t.Fatalf("%d budgets, want 1 (%v)", len(budgets), err)
			}
			b := budgets[0]
			if !strings.Contains(b.String(), tc.want) {
				t.Errorf("budget %q, want %q", b, tc.want)
			}
			coreFits := core.CheckBudget(tc.grace, tc.hold, b.DrainTimeout) == nil
			if b.Fits() != tc.fits || coreFits != tc.fits || (err == nil) != tc.fits {
				t.Errorf("Fits() = %v, core.CheckBudget passes: %v, Check error %v; want fits = %v", b.Fits(), coreFits, err, tc.fits)
			}
		})
	}
}
