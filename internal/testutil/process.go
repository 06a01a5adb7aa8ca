// Package testutil holds helpers shared by the tests of every lameduck module: it
// builds the example binaries and runs them as real processes, with real
// signals, on loopback ports.
package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{}
	binDir  string
)

// BuildBinary builds the main package pkg (such as "./examples/chi",
// relative to the repository root) once per test binary and returns the path
// of the executable. It is built with -race when the test binary is.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[pkg]; ok {
		return bin
	}
	if binDir == "" {
		d, err := os.MkdirTemp("", "lameduck-bin-")
		if err != nil {
			t.Fatalf("temp dir: %v", err)
		}
		binDir = d
	}
	root := ModuleRoot(t)
	bin := filepath.Join(binDir, strings.NewReplacer("/", "_", ".", "_").Replace(pkg))
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	// Built from its own directory, so that the go command finds the
	// package's module with or without the workspace (go.work).
	cmd := exec.Command(goTool(), append(args, ".")...)
	cmd.Dir = filepath.Join(root, filepath.FromSlash(pkg))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = bin
	return bin
}

// Cleanup removes the binaries built by BuildBinary. Call it from TestMain
// after m.Run.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

func goTool() string {
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
}

// ModuleRoot returns the root of the repository: the directory holding
// the go.mod of module github.com/lameduck/lameduck (and go.work). The
// examples and the e2e tests are modules of their own below it.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isRootModule(b) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("the go.mod of github.com/lameduck/lameduck not found above the working directory")
		}
		dir = parent
	}
}

func isRootModule(gomod []byte) bool {
	for _, line := range strings.Split(string(gomod), "\n") {
		if strings.TrimSpace(line) == "module github.com/lameduck/lameduck" {
			return true
		}
	}
	return false
}

// FreeAddr returns a 127.0.0.1 address whose port the kernel picked as
// free. The port is released before returning, so a process started
// right after can listen on it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Process is a running example binary.
type Process struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   chan struct{}
	err    error
}

// Start starts bin with args and env (added to the test's environment).
// The process is killed, if still running, when the test ends.
func Start(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	return StartCmd(t, cmd)
}

// StartCmd starts cmd, capturing its output (any Stdout or Stderr set on
// cmd is replaced). The process is killed, if still running, when the
// test ends, and its stderr is logged if the test failed.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{t: t, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &p.stdout
	cmd.Stderr = &p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", filepath.Base(cmd.Path), p.Stderr())
		}
	})
	return p
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Done returns a channel closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to exit and returns its exit
// code. It fails the test on timeout.
func (p *Process) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("process still running after %v; stderr:\n%s", timeout, p.Stderr())
	}
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	p.t.Fatalf("wait: %v", p.err)
	return -1
}

// WaitLog waits up to timeout until the process's stderr contains substr.
func (p *Process) WaitLog(substr string, timeout time.Duration) {
	p.t.Helper()
	if err := p.stderr.waitFor(substr, timeout, p.done); err != nil {
		p.t.Fatalf("%v; stderr:\n%s", err, p.Stderr())
	}
}

// Stdout returns what the process has written to stdout so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr returns what the process has written to stderr so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// syncBuffer is a bytes.Buffer safe for one writer and many readers, that
// wakes readers waiting for some text.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) waitFor(substr string, timeout time.Duration, exited <-chan struct{}) error {
	has := func(text string) bool { return strings.Contains(text, substr) }
	return b.waitUntil(has, fmt.Sprintf("%q", substr), timeout, exited)
}

// waitUntil waits until ok holds for the text written so far; what
// names the awaited text in the error.
func (b *syncBuffer) waitUntil(ok func(string) bool, what string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		b.mu.Lock()
		if ok(b.buf.String()) {
			b.mu.Unlock()
			return nil
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-exited:
			if ok(b.String()) {
				return nil
			}
			return fmt.Errorf("process exited before logging %s", what)
		case <-ctx.Done():
			return fmt.Errorf("%s not logged within %v", what, timeout)
		}
	}
}

// listeningField marks the line of a process's own listen address: the
// examples and the test servers log "msg=listening addr=HOST:PORT".
// lameduck itself logs msg="lameduck: listening" addr=HOST:PORT for every
// HTTP server (the admin listener's too), which is not that line.
const listeningField = "msg=listening"

// Addr waits until the process has logged the address it listens on (the
// line with the field msg=listening, see [listeningField]) and returns it.
func (p *Process) Addr(timeout time.Duration) string {
	p.t.Helper()
	var addr string
	found := func(text string) bool {
		var ok bool
		addr, ok = fieldValue(text, listeningField, "addr")
		return ok
	}
	if err := p.stderr.waitUntil(found, "a line with "+listeningField+" and addr=", timeout, p.done); err != nil {
		p.t.Fatalf("%v; stderr:\n%s", err, p.Stderr())
	}
	return addr
}

// fieldValue returns the value of the key=value field of the first line
// of text that has field as one of its space-separated fields.
func fieldValue(text, field, key string) (string, bool) {
	for _, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		if !slices.Contains(fields, field) {
			continue
		}
		for _, f := range fields {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// LogValue waits until a stderr line containing marker has been logged
// and returns the value of its key=value field.
func (p *Process) LogValue(marker, key string, timeout time.Duration) string {
	p.t.Helper()
	p.WaitLog(marker, timeout)
	for _, line := range strings.Split(p.Stderr(), "\n") {
		if !strings.Contains(line, marker) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				return v
			}
		}
	}
	p.t.Fatalf("no %s= in the line with %q; stderr:\n%s", key, marker, p.Stderr())
	return ""
}

// Main is the TestMain of a package that runs example binaries: it runs
// the tests, removes the binaries built by BuildBinary and, when the tests
// passed, fails on goroutines left running (goleak). It does not return.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
