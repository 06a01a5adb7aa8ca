package grpcadapter

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/grpc/peer"

	"github.com/lameduck/lameduck/core"
)

// accepts knows when the connections accepted during the hold were
// accepted, for the adaptive hold ([core.WithAdaptiveHold]): an RPC on
// one of them reports that time to [core.Lifecycle.Arrived], which
// extends the hold; RPCs on connections accepted before the hold, which
// say nothing about routing, are not reported.
//
// The listener of Listen (acceptListener) records a connection it accepts
// in the hold; an RPC finds its connection by its peer addresses, which
// grpc-go puts in the context of every RPC. Two cheaper-looking ways cost
// more:
//   - a grpc.StatsHandler whose TagConn stored the time in the
//     connection's context: once a stats handler is installed grpc-go
//     calls it on every RPC, with a copy of the incoming metadata and an
//     event per header, payload and trailer; measured with grpc-go
//     v1.85, one that does nothing adds 17 allocations (1.1 KB) to every
//     unary RPC;
//   - wrapping the accepted net.Conn: grpc-go then no longer sees a
//     *net.TCPConn, and silently drops TCP_USER_TIMEOUT (keepalive) and
//     its non-pinning, pooled reads.
//
// While serving, an RPC pays one atomic load (the phase) and the
// listener nothing but that load per connection. The entries are
// dropped at the drain, when [core.Lifecycle.Arrived] no longer does
// anything: until then there is one per connection accepted in the hold.
type accepts struct {
	conns sync.Map // connKey → time.Time of the accept
}

// connKey names a TCP connection by its two ends.
type connKey struct{ local, remote netip.AddrPort }

func keyOf(local, remote net.Addr) (connKey, bool) {
	l, ok1 := local.(*net.TCPAddr)
	r, ok2 := remote.(*net.TCPAddr)
	if !ok1 || !ok2 || l == nil || r == nil {
		return connKey{}, false
	}
	return connKey{l.AddrPort(), r.AddrPort()}, true
}

// arrived reports an RPC that is not a probe, with the context ctx, to
// lc's adaptive hold if its connection was accepted in the hold. The
// interceptors call it in the hold only, the one phase in which
// [core.Lifecycle.Arrived] does anything: while serving, they pay one
// atomic load (the phase) and no call.
func (a *accepts) arrived(lc *core.Lifecycle, ctx context.Context) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return
	}
	k, ok := keyOf(p.LocalAddr, p.Addr)
	if !ok {
		return
	}
	if at, ok := a.conns.Load(k); ok {
		lc.Arrived(at.(time.Time))
	}
}

// record records the accept of c if it happened in lc's hold. A
// connection accepted as the phase changes is recorded or not, either
// way it is on the right side of the hold's start: the lifecycle records
// the start before it enters the hold.
func (a *accepts) record(lc *core.Lifecycle, c net.Conn) {
	if lc.Phase() != core.Holding {
		return
	}
	if k, ok := keyOf(c.LocalAddr(), c.RemoteAddr()); ok {
		// A later connection between the same two ends replaces an
		// earlier one, closed by then: both were accepted in the hold.
		a.conns.Store(k, time.Now())
	}
}

// reset forgets every connection.
func (a *accepts) reset() { a.conns.Clear() }

// acceptListener is the listener of Listen: it records the connections
// accepted in the hold in accepts. It returns the connections unwrapped.
type acceptListener struct {
	net.Listener
	lc      *core.Lifecycle
	accepts *accepts
}

func (l *acceptListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepts.record(l.lc, c)
	}
	return c, err
}
