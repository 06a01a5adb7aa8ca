package core_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

// capacity measures how many bytes a loopback TCP connection whose
// sender has a send buffer of sndbuf and whose receiver has a receive
// buffer of rcvbuf and reads nothing takes before a write blocks.
func capacity(t *testing.T, sndbuf, rcvbuf int) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.(*net.TCPConn).SetReadBuffer(rcvbuf); err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if err := server.(*net.TCPConn).SetWriteBuffer(sndbuf); err != nil {
		t.Fatal(err)
	}
	total := 0
	buf := make([]byte, 256)
	for total < 64<<20 { // bounded
		_ = server.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := server.Write(buf)
		total += n
		if err != nil {
			return total
		}
	}
	t.Fatal("the connection took 64 MiB without blocking")
	return 0
}

// TestForcedCountsBlockedFinalFlush: the handler returns with its last
// bytes in net/http's buffer, and a client that reads nothing keeps them
// there or in the kernel's send queue: either way the response is cut at
// the drain timeout, and counted.
func TestForcedCountsBlockedFinalFlush(t *testing.T) {
	const sndbuf, rcvbuf = 4096, 4096
	c := capacity(t, sndbuf, rcvbuf)
	for i := range 10 {
		l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(100*time.Millisecond))
		returned := make(chan struct{}, 1)
		ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Nearly fill what the connection takes, then leave 3 KiB in
			// net/http's 4 KiB buffer: flushed after the return, it
			// cannot fit.
			w.Header().Set("Content-Length", strconv.Itoa(c-1024+3072))
			if _, err := w.Write(make([]byte, c-1024)); err != nil {
				return
			}
			_, _ = w.Write(make([]byte, 3072))
			returned <- struct{}{}
		}), func(s *http.Server) {
			next := s.ConnState
			s.ConnState = func(c net.Conn, st http.ConnState) {
				if st == http.StateNew {
					for {
						nc, ok := c.(interface{ NetConn() net.Conn })
						if !ok {
							break
						}
						c = nc.NetConn()
					}
					_ = c.(*net.TCPConn).SetWriteBuffer(sndbuf)
				}
				next(c, st)
			}
		})
		conn, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.(*net.TCPConn).SetReadBuffer(rcvbuf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		recv(t, returned, "the handler's return")
		err = l.Shutdown(t.Context()) // the client never reads
		conn.Close()
		var fe *core.ForcedError
		if !errors.As(err, &fe) || fe.Abandoned != 1 {
			t.Fatalf("run %d (capacity %d): Shutdown: got %v, want a ForcedError with the response counted as abandoned", i, c, err)
		}
	}
}
