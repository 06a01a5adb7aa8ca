package testutil

import "testing"

// TestListenAddrLine: the address Addr returns is the one of the
// process's own "msg=listening" line, not one of the lines lameduck logs
// for each HTTP server it listens for (msg="lameduck: listening"), nor
// the example's admin line, whichever comes first.
func TestListenAddrLine(t *testing.T) {
	const stderr = `time=2026-01-01T00:00:00.000Z level=INFO msg="lameduck: listening" addr=127.0.0.1:1111
time=2026-01-01T00:00:00.001Z level=INFO msg="lameduck: listening" addr=127.0.0.1:2222
time=2026-01-01T00:00:00.002Z level=INFO msg="admin listening" admin_addr=127.0.0.1:2222
time=2026-01-01T00:00:00.003Z level=INFO msg=listening addr=127.0.0.1:3333
time=2026-01-01T00:00:00.004Z level=INFO msg="lameduck: serving"
`
	if got, ok := fieldValue(stderr, listeningField, "addr"); !ok || got != "127.0.0.1:3333" {
		t.Errorf("fieldValue: got %q %v, want 127.0.0.1:3333", got, ok)
	}
	for _, partial := range []string{
		`level=INFO msg="lameduck: listening" addr=127.0.0.1:1111` + "\n",
		`level=INFO msg=listening_soon addr=127.0.0.1:1111` + "\n",
		`level=INFO msg=listening` + "\n",
	} {
		if got, ok := fieldValue(partial, listeningField, "addr"); ok {
			t.Errorf("fieldValue(%q): got %q, want none", partial, got)
		}
	}
}
