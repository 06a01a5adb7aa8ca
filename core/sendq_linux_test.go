//go:build linux

package core

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

const (
	sqTotal = 16 << 20 // a large response
	sqChunk = 64 << 10 // the slow client reads this much ...
	sqPace  = time.Millisecond
	sqLimit = 30 * time.Second // bound of every wait in these tests

	// sqMaxDelay bounds how long after the client's last byte a wait
	// returns. It is typically a few ms, at most about sendPollMax plus
	// a delayed ACK; the margin is for a noisy, shared machine.
	sqMaxDelay = 250 * time.Millisecond
)

// sqPair returns an accepted connection of ln and the client's end, with a
// small receive buffer so that the client's kernel holds little more
// than the client has read.
// sqFill is how long a test writes to a socket its client does not read,
// to fill it: long enough for a loaded machine to start the write (50 ms
// once wrote nothing under the full race suite).
const sqFill = 200 * time.Millisecond

func sqPair(t *testing.T, ln net.Listener) (net.Conn, *net.TCPConn) {
	t.Helper()
	client, err := net.DialTimeout("tcp", ln.Addr().String(), sqLimit)
	if err != nil {
		t.Fatal(err)
	}
	tc := client.(*net.TCPConn)
	if err := tc.SetReadBuffer(sqChunk); err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, tc
}

func sqListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// slowClient reads c slowly until EOF, an error or sqLimit.
type slowClient struct {
	c    *net.TCPConn
	read atomic.Int64 // bytes read so far
	want atomic.Int64 // the total expected, once known; 0: not yet
	last atomic.Int64 // UnixNano of the read that reached want
	done chan error   // the end of the reading: nil for EOF
}

// startSlowClient reads c in a goroutine. want is the expected total,
// or 0 to take it from an HTTP/1 response head with a Content-Length.
func startSlowClient(c *net.TCPConn, want int64) *slowClient {
	s := &slowClient{c: c, done: make(chan error, 1)}
	s.want.Store(want)
	go func() { s.done <- s.run() }()
	return s
}

func (s *slowClient) run() error {
	if err := s.c.SetReadDeadline(time.Now().Add(sqLimit)); err != nil {
		return err
	}
	buf := make([]byte, sqChunk)
	var head []byte
	for range 1 << 20 {
		n, err := s.c.Read(buf)
		if n > 0 {
			got := s.read.Add(int64(n))
			if s.want.Load() == 0 {
				head = append(head, buf[:n]...)
				if want := headTotal(head); want > 0 {
					s.want.Store(want)
				}
			}
			if w := s.want.Load(); w > 0 && got >= w && s.last.Load() == 0 {
				s.last.Store(time.Now().UnixNano())
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		time.Sleep(sqPace) // a slow reader, not synchronization
	}
	return errors.New("too many reads")
}

// headTotal returns the length of the HTTP/1 response in p, head plus
// Content-Length, or 0 while the head is incomplete.
func headTotal(p []byte) int64 {
	i := bytes.Index(p, []byte("\r\n\r\n"))
	if i < 0 {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(p[:i+4])), nil)
	if err != nil || resp.ContentLength < 0 {
		return -1
	}
	return int64(i+4) + resp.ContentLength
}

// received returns at least what has reached the client when it is called:
// read, or queued in its socket's receive buffer (SIOCINQ).
func (s *slowClient) received(t *testing.T) int64 {
	t.Helper()
	rc, err := s.c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var q int32
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&q)))
	}); err != nil || errno != 0 {
		t.Fatal(err, errno)
	}
	// Read after the queue: a read in between counts twice, so this may
	// overcount what had arrived when the queue was read, never undercount.
	return s.read.Load() + int64(q)
}

// finish waits for the client to reach EOF and returns how long after its
// last byte ret was.
func (s *slowClient) finish(t *testing.T, ret time.Time) time.Duration {
	t.Helper()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("client: %v after %d bytes", err, s.read.Load())
		}
	case <-time.After(sqLimit):
		t.Fatal("client still reading")
	}
	if got, want := s.read.Load(), s.want.Load(); got != want {
		t.Fatalf("client read %d bytes, want %d", got, want)
	}
	return ret.Sub(time.Unix(0, s.last.Load()))
}

// checkDelay checks that a wait that returned at ret had all the bytes at
// the client, and no later than sqMaxDelay after its last read.
func (s *slowClient) checkDelay(t *testing.T, ret time.Time, atRet int64) {
	t.Helper()
	if want := s.want.Load(); atRet < want {
		t.Errorf("wait returned with %d bytes at the client, want %d", atRet, want)
	}
	d := s.finish(t, ret)
	t.Logf("returned %v after the client's last byte", d)
	if d > sqMaxDelay {
		t.Errorf("returned %v after the client's last byte, want ≤ %v", d, sqMaxDelay)
	}
}

func TestUnsent(t *testing.T) {
	ln := sqListen(t)
	server, client := sqPair(t, ln)
	if n, ok := unsent(server); !ok || n != 0 {
		t.Fatalf("idle: unsent = %d, %v; want 0, true", n, ok)
	}
	if err := server.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	written, err := server.Write(make([]byte, sqTotal)) // the client does not read
	if written == 0 || err == nil {
		t.Fatalf("Write = %d, %v; want a timeout after some bytes", written, err)
	}
	n, ok := unsent(server)
	if !ok || n <= 0 || n > written {
		t.Fatalf("unsent = %d, %v; want in (0, %d]", n, ok, written)
	}
	if n2, ok := unsent(tls.Server(server, nil)); !ok || n2 != n {
		t.Errorf("through *tls.Conn: unsent = %d, %v; want %d, true", n2, ok, n)
	}
	wrapped := &sendConn{Conn: server, q: new(sendQueues)}
	if n2, ok := unsent(wrapped); !ok || n2 != n {
		t.Errorf("through sendConn: unsent = %d, %v; want %d, true", n2, ok, n)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if _, ok := unsent(p1); ok {
		t.Error("net.Pipe: ok")
	}
	if _, ok := unsent(nil); ok {
		t.Error("nil: ok")
	}
	server.Close()
	if _, ok := unsent(server); ok {
		t.Error("closed: ok")
	}
	client.Close()
}

func TestUnsentExcludesFIN(t *testing.T) {
	ln := sqListen(t)
	server, client := sqPair(t, ln)
	if err := server.SetWriteDeadline(time.Now().Add(sqFill)); err != nil {
		t.Fatal(err)
	}
	written, err := server.Write(make([]byte, sqTotal)) // the client does not read yet
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write: %v; want a timeout", err)
	}
	before, _ := unsent(server)
	if err := server.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if after, ok := unsent(server); !ok || after != before || after == 0 {
		t.Fatalf("unsent = %d, %v after CloseWrite, %d before; want the same, not 0", after, ok, before)
	}
	s := startSlowClient(client, int64(written))
	ctx, cancel := context.WithTimeout(context.Background(), sqLimit)
	defer cancel()
	err = waitSent(ctx, server)
	ret := time.Now()
	atRet := s.received(t)
	if err != nil {
		t.Fatal(err)
	}
	s.checkDelay(t, ret, atRet)
}

func TestWaitSentReturnsWhenClientHasTheBytes(t *testing.T) {
	ln := sqListen(t)
	server, client := sqPair(t, ln)
	s := startSlowClient(client, sqTotal)
	if _, err := server.Write(make([]byte, sqTotal)); err != nil {
		t.Fatal(err)
	}
	if n, ok := unsent(server); !ok || n == 0 {
		t.Fatalf("after the write: unsent = %d, %v; want the client lagging", n, ok)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sqLimit)
	defer cancel()
	err := waitSent(ctx, server)
	ret := time.Now()
	atRet := s.received(t)
	if err != nil {
		t.Fatal(err)
	}
	server.Close() // EOF for the client
	s.checkDelay(t, ret, atRet)
}

func TestWaitSentBounded(t *testing.T) {
	ln := sqListen(t)
	server, _ := sqPair(t, ln) // the client never reads
	if err := server.SetWriteDeadline(time.Now().Add(sqFill)); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(make([]byte, sqTotal)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write: %v; want a timeout", err)
	}
	if n, ok := unsent(server); !ok || n == 0 {
		t.Fatalf("unsent = %d, %v; want the client lagging", n, ok)
	}
	const bound = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	start := time.Now()
	err := waitSent(ctx, server)
	if elapsed := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || elapsed < bound || elapsed > bound+sqMaxDelay {
		t.Fatalf("waitSent = %v after %v; want %v after %v", err, elapsed, context.DeadlineExceeded, bound)
	}
}

func TestWaitSentEndsAtReset(t *testing.T) {
	ln := sqListen(t)
	server, client := sqPair(t, ln)
	if err := server.SetWriteDeadline(time.Now().Add(sqFill)); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(make([]byte, sqTotal)); err == nil {
		t.Fatal("Write did not time out")
	}
	if err := client.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	client.Close() // a reset: the queue is dropped
	ctx, cancel := context.WithTimeout(context.Background(), sqLimit)
	defer cancel()
	start := time.Now()
	if err := waitSent(ctx, server); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > sqMaxDelay {
		t.Errorf("waitSent returned %v after the reset, want ≤ %v", elapsed, sqMaxDelay)
	}
}

func TestSendQueuesCloseLingers(t *testing.T) {
	var q sendQueues
	ln := q.listener(sqListen(t))
	server, client := sqPair(t, ln)
	if _, ok := server.(*sendConn); !ok {
		t.Fatalf("accepted a %T, want a *sendConn", server)
	}
	s := startSlowClient(client, sqTotal)
	ctx, cancel := context.WithTimeout(context.Background(), sqLimit)
	defer cancel()
	q.begin(ctx)
	if _, err := server.Write(make([]byte, sqTotal)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > sqMaxDelay {
		t.Errorf("Close took %v; want it not to wait", d)
	}
	if err := q.wait(cancelled()); err == nil {
		t.Fatal("nothing lingers; want the closed connection to")
	}
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want %v", err, net.ErrClosed)
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want %v", err, net.ErrClosed)
	}
	if err := server.SetDeadline(time.Time{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetDeadline after Close: %v, want %v", err, net.ErrClosed)
	}
	if err := server.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want %v", err, net.ErrClosed)
	}
	err := q.wait(ctx)
	ret := time.Now()
	atRet := s.received(t)
	if err != nil {
		t.Fatal(err)
	}
	s.checkDelay(t, ret, atRet)
	if _, ok := unsent(server); ok {
		t.Error("the socket is still open after wait")
	}
}

func TestSendQueuesNotDraining(t *testing.T) {
	var q sendQueues
	ln := q.listener(sqListen(t))
	server, _ := sqPair(t, ln) // the client never reads
	if err := server.SetWriteDeadline(time.Now().Add(sqFill)); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(make([]byte, sqTotal)); err == nil {
		t.Fatal("Write did not time out")
	}
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.wait(cancelled()); err != nil {
		t.Fatalf("wait: %v; want nothing lingering before the drain", err)
	}
	if _, ok := unsent(server); ok {
		t.Error("the socket is still open")
	}
}

func TestSendQueuesBoundedByDrain(t *testing.T) {
	var q sendQueues
	ln := q.listener(sqListen(t))
	server, _ := sqPair(t, ln) // the client never reads
	if err := server.SetWriteDeadline(time.Now().Add(sqFill)); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(make([]byte, sqTotal)); err == nil {
		t.Fatal("Write did not time out")
	}
	const bound = 50 * time.Millisecond
	drainCtx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	q.begin(drainCtx)
	start := time.Now()
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.wait(cancelled()); err == nil {
		t.Fatal("nothing lingers; want the closed connection to")
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), sqLimit)
	defer cancel2()
	if err := q.wait(ctx); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < bound || elapsed > bound+sqMaxDelay {
		t.Errorf("lingered %v; want the drain's %v", elapsed, bound)
	}
	// A close after the drain's end does not linger.
	server2, _ := sqPair(t, ln)
	server2.Close()
	if err := q.wait(cancelled()); err != nil {
		t.Errorf("wait: %v after a close past the drain", err)
	}
}

// TestSendQueuesHTTP drains a net/http server whose last response is still
// queued: Shutdown returns first, q.wait once the client has the bytes.
func TestSendQueuesHTTP(t *testing.T) {
	for _, keepAlive := range []bool{false, true} {
		t.Run("keepalive="+strconv.FormatBool(keepAlive), func(t *testing.T) {
			// The shutdown begins (the hold) before the last response.
			ctx, cancel := context.WithTimeout(context.Background(), sqLimit)
			defer cancel()
			var q sendQueues
			q.begin(ctx)
			ln := q.listener(sqListen(t))
			written := make(chan struct{})
			srv := &http.Server{
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Length", strconv.Itoa(sqTotal))
					w.Write(make([]byte, sqTotal))
					close(written)
				}),
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()

			c, err := net.DialTimeout("tcp", ln.Addr().String(), sqLimit)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			client := c.(*net.TCPConn)
			if err := client.SetReadBuffer(sqChunk); err != nil {
				t.Fatal(err)
			}
			conn := "close"
			if keepAlive {
				conn = "keep-alive"
			}
			if _, err := fmt.Fprintf(client, "GET / HTTP/1.1\r\nHost: x\r\nConnection: %s\r\n\r\n", conn); err != nil {
				t.Fatal(err)
			}
			s := startSlowClient(client, 0)
			select {
			case <-written:
			case <-time.After(sqLimit):
				t.Fatal("no response")
			}

			if err := srv.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			lingered := q.wait(cancelled()) != nil
			err = q.wait(ctx)
			ret := time.Now()
			atRet := s.received(t)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("lingering after Shutdown: %v", lingered)
			s.checkDelay(t, ret, atRet)
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		})
	}
}

// cancelled returns a context that is done.
func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
