package k8s_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/lameduck/lameduck/examples/k8s"
)

// Check a manifest in CI: here chi.yaml, the chi example without a
// preStop hook.
func ExampleCheck() {
	data, err := os.ReadFile("chi.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	budgets, err := k8s.Check(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, b := range budgets {
		fmt.Println(b)
	}
	// Output:
	// lameduck-chi/chi: preStop none 0s + hold 10s + drain 15s + margin 3s = 28s ≤ grace 30s
}

// A grace period cut to 26 s still holds the 10 s hold and the 15 s drain
// timeout (the process itself would start), but leaves no margin for
// closing, flushing and exiting: the kubelet could SIGKILL mid-drain.
func ExampleCheck_sigkill() {
	data, err := os.ReadFile("chi.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	broken := strings.NewReplacer(
		"terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 26",
		"-grace=30s", "-grace=26s",
	).Replace(string(data))
	_, err = k8s.Check([]byte(broken))
	fmt.Println(err)
	// Output:
	// k8s: Deployment lameduck-chi: container chi: timing budget lameduck-chi/chi: preStop none 0s + hold 10s + drain 15s + margin 2.6s = 27.6s > grace 26s: the kubelet SIGKILLs before the drain timeout plus margin; raise terminationGracePeriodSeconds to at least 28s or shorten the hold or drain
}
