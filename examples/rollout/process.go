package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// backend is one backend process.
type backend struct {
	addr  string
	cmd   *exec.Cmd
	done  chan struct{} // closed once the process has been reaped
	state *os.ProcessState
	exit  time.Time // when it was reaped
	log   *logWatch // its stderr
}

// held is how long the backend held, from its "lameduck: hold ended"
// line; 0 if it logged none (exit, shutdown, or not yet).
func (b *backend) held() time.Duration {
	b.log.mu.Lock()
	defer b.log.mu.Unlock()
	return b.log.held
}

// logWatch is a backend's stderr: it passes it on to logs, if any, and
// picks the length of the hold out of the lifecycle's log line.
type logWatch struct {
	mu   sync.Mutex
	logs io.Writer
	line []byte // the unfinished line
	held time.Duration
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.logs != nil {
		_, _ = w.logs.Write(p)
	}
	w.line = append(w.line, p...)
	for {
		i := bytes.IndexByte(w.line, '\n')
		if i < 0 {
			break
		}
		w.scan(string(w.line[:i]))
		w.line = w.line[i+1:]
	}
	if len(w.line) > 64<<10 { // no line of ours is that long
		w.line = w.line[:0]
	}
	return len(p), nil
}

// scan reads held=… from the lifecycle's "lameduck: hold ended" line.
func (w *logWatch) scan(line string) {
	if !strings.Contains(line, "lameduck: hold ended") {
		return
	}
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "held="); ok {
			if d, err := time.ParseDuration(v); err == nil {
				w.held = d
			}
		}
	}
}

// spawner starts backends: this program, re-executed.
type spawner struct {
	exe       string
	behaviour string
	args      []string
	logs      io.Writer // backends' stderr; nil discards it
}

// start starts a backend and waits until it has told its address.
func (s *spawner) start(ctx context.Context) (*backend, error) {
	cmd := exec.Command(s.exe, s.args...)
	cmd.Env = append(os.Environ(), backendEnv+"="+s.behaviour)
	watch := &logWatch{logs: s.logs}
	cmd.Stderr = watch // Wait returns once it has had all of it
	cmd.SysProcAttr = sysProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// The backend exits when its stdin closes: when we exit, even killed.
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("rollout: starting a backend: %w", err)
	}
	b := &backend{cmd: cmd, done: make(chan struct{}), log: watch}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- strings.TrimSpace(sc.Text())
		} else {
			line <- ""
		}
		_, _ = io.Copy(io.Discard, stdout) // until the process exits
		_ = cmd.Wait()                     // reaps it; a non-zero status is not an error here
		b.state = cmd.ProcessState
		b.exit = time.Now()
		close(b.done)
	}()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case b.addr = <-line:
		if b.addr == "" {
			<-b.done
			return nil, fmt.Errorf("rollout: a %s backend exited before listening (%v)", s.behaviour, b.state)
		}
		return b, nil
	case <-timer.C:
		err = errors.New("rollout: a backend did not tell its address within 10s")
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	b.kill()
	return nil, err
}

// waitReady polls /readyz, as the kubelet does, until it answers 200.
func (b *backend) waitReady(ctx context.Context, timeout time.Duration) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := c.Get("http://" + b.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rollout: backend %s not ready within %v", b.addr, timeout)
		}
		select {
		case <-tick.C:
		case <-b.done:
			return fmt.Errorf("rollout: backend %s exited before it was ready (%v)", b.addr, b.state)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// signal sends sig to the process.
func (b *backend) signal(sig os.Signal) error { return b.cmd.Process.Signal(sig) }

// kill kills the process, if it still runs, and reaps it.
func (b *backend) kill() {
	_ = b.cmd.Process.Kill()
	<-b.done
}

// exitStatus is how the process ended: its exit code, or the signal
// that killed it, such as "TERM".
func (b *backend) exitStatus() string {
	switch {
	case b.state == nil:
		return "?"
	case b.state.Exited():
		return fmt.Sprint(b.state.ExitCode())
	}
	if ws, ok := b.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return strings.TrimPrefix(unixSignalName(ws.Signal()), "SIG")
	}
	return b.state.String()
}

func unixSignalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return s.String()
}
