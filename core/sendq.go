package core

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Polling bounds of [waitSent]: a send queue cannot signal that it
// emptied, so the wait polls, first often and then every sendPollMax, which
// bounds how long after the peer's last acknowledgement the wait returns.
const (
	sendPollMin = time.Millisecond
	sendPollMax = 16 * time.Millisecond
)

// waitSent returns nil once no conn's socket holds bytes the peer has not
// acknowledged (see [unsent]; a conn whose queue cannot be read counts as
// empty, so elsewhere than on Linux it returns at once), or ctx's error
// first. Call it before closing the conns: a closed socket cannot be read.
func waitSent(ctx context.Context, conns ...net.Conn) error {
	pending := make([]net.Conn, 0, len(conns))
	var timer *time.Timer
	for d := sendPollMin; ; d = min(2*d, sendPollMax) {
		pending = pending[:0]
		for _, c := range conns {
			if n, ok := unsent(c); ok && n > 0 {
				pending = append(pending, c)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		conns = pending
		if err := ctx.Err(); err != nil {
			return err
		}
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sendQueues makes the closes of the connections accepted through its
// listeners, once [sendQueues.begin] has been called, keep the socket open
// until the peer has acknowledged everything written, so that exiting
// right after [sendQueues.wait] cannot cut a response still queued in the
// kernel. The zero value is ready; it must not be copied after first use.
type sendQueues struct {
	ctx atomic.Pointer[context.Context] // of begin; nil before it

	mu        sync.Mutex
	lingering int           // closed connections whose socket is still open
	idle      chan struct{} // closed when lingering drops to 0; nil: none yet
}

// listener returns ln with its accepted connections subject to q. A
// connection whose send queue cannot be read (any on other platforms than
// Linux) is returned as accepted. Wrap the TCP listener itself, under TLS
// ([net/http.Server.ServeTLS] does that), so that net/http still sees a
// [*tls.Conn].
func (q *sendQueues) listener(ln net.Listener) net.Listener {
	return &sendListener{Listener: ln, q: q}
}

// begin makes the connections closed from now on linger, each until its
// peer has acknowledged what was written or ctx ends, whichever is first.
// Close does not wait for that; [sendQueues.wait] does. Call it when the
// shutdown begins (at the hold, not only at the drain: a response that
// ends just before the drain may still be queued), with a ctx that ends
// at the drain timeout at the latest: a peer that never reads holds its
// connection until then.
func (q *sendQueues) begin(ctx context.Context) {
	q.ctx.Store(&ctx)
}

// wait returns nil once no closed connection lingers, or ctx's error
// first. Connections closed after it returned may linger again.
func (q *sendQueues) wait(ctx context.Context) error {
	q.mu.Lock()
	if q.lingering == 0 {
		q.mu.Unlock()
		return nil
	}
	idle := q.idle
	q.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pending returns the number of closed connections whose socket still
// lingers with bytes the peer has not acknowledged.
func (q *sendQueues) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lingering
}

// linger closes c once its peer has acknowledged what was written or ctx
// ends, counting it as lingering until then. It runs in its own goroutine.
func (q *sendQueues) linger(ctx context.Context, c net.Conn) {
	q.mu.Lock()
	if q.lingering == 0 {
		q.idle = make(chan struct{})
	}
	q.lingering++
	q.mu.Unlock()
	go func() {
		_ = waitSent(ctx, c)
		_ = c.Close()
		q.mu.Lock()
		if q.lingering--; q.lingering == 0 {
			close(q.idle)
		}
		q.mu.Unlock()
	}()
}

// sendListener is a listener of [sendQueues.listener].
type sendListener struct {
	net.Listener
	q *sendQueues
}

// Accept returns the next connection, as a [*sendConn] when its send queue
// can be read.
func (l *sendListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	if _, ok := unsent(c); !ok {
		return c, nil
	}
	return &sendConn{Conn: c, q: l.q}, nil
}

// sendConn is a connection of a [sendListener]. Once closed it fails every
// call, as a closed socket does, even while its socket lingers.
type sendConn struct {
	net.Conn // a *net.TCPConn
	q        *sendQueues

	mu     sync.Mutex // orders the deadline setters against Close
	closed atomic.Bool
}

// NetConn returns the accepted connection, as [*tls.Conn.NetConn] does.
func (c *sendConn) NetConn() net.Conn { return c.Conn }

// Close closes the connection. After [sendQueues.begin], while the peer
// has not acknowledged everything written, it interrupts pending calls and
// returns at once, but leaves the socket open until the peer has or the
// context of begin ends; [sendQueues.wait] waits for that.
func (c *sendConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Swap(true) {
		return c.opError("close", net.ErrClosed)
	}
	if p := c.q.ctx.Load(); p != nil && (*p).Err() == nil {
		if n, ok := unsent(c.Conn); ok && n > 0 {
			// Not CloseWrite: a FIN along with the last bytes makes
			// Linux peers delay their acknowledgement by 40 ms.
			_ = c.Conn.SetDeadline(time.Now()) // wake blocked calls
			c.q.linger(*p, c.Conn)
			return nil
		}
	}
	return c.Conn.Close()
}

// opError returns err as the underlying connection would report it.
func (c *sendConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// failed returns err, or the closed-connection error once c is closed.
func (c *sendConn) failed(op string, err error) error {
	if err != nil && c.closed.Load() {
		return c.opError(op, net.ErrClosed)
	}
	return err
}

// Read reads from the connection.
func (c *sendConn) Read(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, c.opError("read", net.ErrClosed)
	}
	n, err := c.Conn.Read(b)
	return n, c.failed("read", err)
}

// Write writes to the connection.
func (c *sendConn) Write(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, c.opError("write", net.ErrClosed)
	}
	n, err := c.Conn.Write(b)
	return n, c.failed("write", err)
}

// ReadFrom copies r to the connection, with sendfile or splice where the
// underlying connection can, as net/http's responses do.
func (c *sendConn) ReadFrom(r io.Reader) (int64, error) {
	if c.closed.Load() {
		return 0, c.opError("readfrom", net.ErrClosed)
	}
	var n int64
	var err error
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.Conn}, r)
	}
	return n, c.failed("readfrom", err)
}

// CloseWrite shuts down the writing side, as [*net.TCPConn.CloseWrite]
// does; net/http calls it before closing after some errors.
func (c *sendConn) CloseWrite() error {
	if c.closed.Load() {
		return c.opError("close", net.ErrClosed)
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SetDeadline sets the read and write deadlines.
func (c *sendConn) SetDeadline(t time.Time) error {
	return c.setDeadline(c.Conn.SetDeadline, t)
}

// SetReadDeadline sets the read deadline.
func (c *sendConn) SetReadDeadline(t time.Time) error {
	return c.setDeadline(c.Conn.SetReadDeadline, t)
}

// SetWriteDeadline sets the write deadline.
func (c *sendConn) SetWriteDeadline(t time.Time) error {
	return c.setDeadline(c.Conn.SetWriteDeadline, t)
}

// setDeadline calls set unless c is closed: a later deadline must not undo
// the one with which Close woke the pending calls.
func (c *sendConn) setDeadline(set func(time.Time) error, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return c.opError("set", net.ErrClosed)
	}
	return set(t)
}
