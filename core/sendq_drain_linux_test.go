package core_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

// TestDrainWaitsForTheClientToHaveTheBytes checks that the drain of an
// HTTP server ends when a slow client has received the last byte of a
// large response, not when the handler returned and the kernel had the
// rest queued: in Kubernetes the pod's network is torn down once the
// process exits, and what was still queued would be lost.
func TestDrainWaitsForTheClientToHaveTheBytes(t *testing.T) {
	const size, chunk = 16 << 20, 64 << 10
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Minute))
	g := newGate()
	handlerDone := make(chan time.Time, 1)
	ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.started <- struct{}{}
		<-g.release
		buf := []byte(strings.Repeat("x", chunk))
		for range size / chunk {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
		handlerDone <- time.Now()
	}), nil)

	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	recv(t, g.started, "handler start")
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	g.open()

	// A slow reader: 64 KiB every 2 ms, about half a second for 16 MiB.
	lastByte := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, chunk)
		var n int64
		deadline := time.Now().Add(time.Minute)
		_ = conn.SetReadDeadline(deadline)
		for n < size {
			m, err := conn.Read(buf)
			n += int64(m)
			if err != nil {
				break
			}
			time.Sleep(2 * time.Millisecond) // the slowness under test, not a synchronization
		}
		lastByte <- time.Now()
	}()
	if err := recv(t, res, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil", err)
	}
	stopped := time.Now()
	last := recv(t, lastByte, "the client's last byte")
	done := recv(t, handlerDone, "the handler's return")
	t.Logf("handler returned %v before the last byte; the drain ended %v after it",
		last.Sub(done).Round(time.Millisecond), stopped.Sub(last).Round(time.Millisecond))
	// The client's kernel may hold up to its 64 KiB receive buffer that
	// the client has yet to read (2 ms a chunk), hence a little slack
	// before; after, 50 ms is the target and 250 ms absorbs a loaded
	// machine.
	if early := last.Sub(stopped); early > 20*time.Millisecond {
		t.Errorf("the drain ended %v before the client had the last byte", early)
	}
	if late := stopped.Sub(last); late > 250*time.Millisecond {
		t.Errorf("the drain ended %v after the client's last byte, want promptly (≤ 50 ms)", late)
	}
}
