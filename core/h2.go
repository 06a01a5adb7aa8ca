package core

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
)

// net/http's HTTP/2 server sends a one-step GOAWAY: it names the last
// stream it has seen, so the streams the client opened in the GOAWAY's
// round trip are refused, and a client cannot resend one whose body it
// cannot rewind. RFC 9113 §6.8 describes the graceful way, which grpc-go
// follows: a GOAWAY with the highest stream id, so that the client opens
// no more streams and loses none, then a PING, whose acknowledgement
// tells that the client has read the GOAWAY. net/http offers no way to
// send either frame, so [h2Conn] writes them itself, between the frames
// net/http writes, and the drain calls Shutdown, which sends net/http's
// GOAWAY, only once every connection is closed.
//
// Go's client numbers a stream and writes it in two steps, so a stream it
// numbered before it read the GOAWAY can still come after the
// acknowledgement. h2Conn waits for the acknowledgement of a second PING,
// sent once the first is acknowledged, and counts an acknowledgement only
// once net/http reads on past it (it has then processed every frame
// before); the drain then closes an idle connection no sooner than
// idleGrace later.

// goAwayFrames is the first step: GOAWAY(2^31-1, NO_ERROR), then a PING
// with the payload "lameduck"; pingFrame is the second PING.
var (
	goAwayFrames = []byte{
		0, 0, 8, frameGoAway, 0, 0, 0, 0, 0,
		0x7f, 0xff, 0xff, 0xff, // last stream id: the highest
		0, 0, 0, 0, // NO_ERROR
		0, 0, 8, framePing, 0, 0, 0, 0, 0,
		'l', 'a', 'm', 'e', 'd', 'u', 'c', 'k',
	}
	pingFrame = []byte{
		0, 0, 8, framePing, 0, 0, 0, 0, 0,
		'l', 'a', 'm', 'e', 'd', 'u', 'c', '2',
	}
)

// pingLen is the length of a PING's payload.
const pingLen = 8

// pings are the payloads of the two PINGs, in order.
var pings = [2]string{string(goAwayFrames[len(goAwayFrames)-pingLen:]), string(pingFrame[len(pingFrame)-pingLen:])}

// clientPreface opens every HTTP/2 connection (RFC 9113 §3.4).
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// The frame types and flags h2Conn looks at (RFC 9113 §6).
const (
	frameHeaders      = 0x1
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameContinuation = 0x9

	flagAck        = 0x1
	flagEndHeaders = 0x4
)

// frameCursor follows a byte stream of HTTP/2 frames. Only the 9-byte
// headers are looked at (lengths, types and flags): that is all h2Conn
// needs, so it does not pull in an HTTP/2 implementation.
type frameCursor struct {
	hdr  [9]byte
	nhdr int // bytes of hdr seen; 9 while in a payload
	left int // bytes of the current payload still to come
	// block: a header block goes on in the next frame (a HEADERS,
	// PUSH_PROMISE or CONTINUATION without END_HEADERS), which must
	// follow at once: no other frame may come in between.
	block bool
	// begun: a first frame has started. A server's first frame must be
	// its SETTINGS (RFC 9113 §3.4).
	begun bool
}

// between reports whether the stream is between two frames, after the
// first and outside a header block: where another frame may be inserted.
func (f *frameCursor) between() bool {
	return f.begun && f.nhdr == 0 && !f.block
}

// step moves over the start of p, up to the end of the current header or
// payload, and returns the number of bytes it moved over; p is not empty.
// At the end of a header, onHeader (if not nil) is called.
func (f *frameCursor) step(p []byte, onHeader func(*frameCursor)) int {
	if f.nhdr < 9 {
		f.begun = true
		n := copy(f.hdr[f.nhdr:], p)
		if f.nhdr += n; f.nhdr < 9 {
			return n
		}
		f.left = int(f.hdr[0])<<16 | int(f.hdr[1])<<8 | int(f.hdr[2])
		switch f.hdr[3] {
		case frameHeaders, framePushPromise, frameContinuation:
			f.block = f.hdr[4]&flagEndHeaders == 0
		}
		if onHeader != nil {
			onHeader(f)
		}
		if f.left == 0 {
			f.nhdr = 0
		}
		return n
	}
	n := min(f.left, len(p))
	if f.left -= n; f.left == 0 {
		f.nhdr = 0
	}
	return n
}

// advance moves over p.
func (f *frameCursor) advance(p []byte) {
	for len(p) > 0 {
		p = p[f.step(p, nil):]
	}
}

// insertAt returns the length of the shortest start of p after which a
// frame may be inserted (0: before p), or -1 if there is no such point in
// p (or at its end). f does not move.
func (f *frameCursor) insertAt(p []byte) int {
	g := *f
	for i := 0; ; {
		if g.between() {
			return i
		}
		if i == len(p) {
			return -1
		}
		i += g.step(p[i:], nil)
	}
}

// h2Conn is a connection of [Lifecycle.ListenHTTP] that may speak
// HTTP/2: cleartext with prior knowledge, or TLS, which lameduck then
// terminates itself (the frames are written inside the encryption). It
// watches the client's frames for the acknowledgement of its PING and
// inserts [goAwayFrames] between the frames net/http writes.
type h2Conn struct {
	net.Conn           // the accepted connection, or the *tls.Conn over it
	tls      *tls.Conn // nil: cleartext
	tlsState atomic.Pointer[tls.ConnectionState]

	// Read side, used by the reading goroutine only (net/http reads a
	// connection from one goroutine at a time).
	preface int // bytes of clientPreface matched; -1: not HTTP/2
	in      frameCursor
	ping    []byte // the payload of a PING ACK being read
	// acks: the PINGs acknowledged, 2 once both are, counted when the
	// next read begins.
	acks, seen int
	// answered: a failed handshake was answered (net/http reads again).
	answered bool

	h2     atomic.Bool            // the client sent the preface: the rest is frames
	asked  atomic.Bool            // goAway was called
	insert atomic.Pointer[[]byte] // frames waiting to be written
	acked  chan struct{}
	closed chan struct{}
	once   [2]sync.Once // of acked, closed

	wmu    sync.Mutex // held while writing: orders the inserted frames
	out    frameCursor
	broken error // an inserted write failed: the stream is cut
}

func newH2Conn(c net.Conn, cfg *tls.Config) *h2Conn {
	hc := &h2Conn{Conn: c, acked: make(chan struct{}), closed: make(chan struct{})}
	if cfg != nil {
		hc.tls = tls.Server(c, cfg)
		hc.Conn = hc.tls
	}
	return hc
}

// NetConn returns the connection hc serves: the accepted one, or the
// *tls.Conn over it.
func (hc *h2Conn) NetConn() net.Conn { return hc.Conn }

// state returns the TLS state of hc's handshake, nil for cleartext.
func (hc *h2Conn) state() *tls.ConnectionState {
	if hc.tls == nil {
		return nil
	}
	if s := hc.tlsState.Load(); s != nil {
		return s
	}
	s := hc.tls.ConnectionState()
	hc.tlsState.Store(&s)
	return &s
}

// goAway sends the first step of the graceful GOAWAY, once, if hc speaks
// HTTP/2; [h2Conn.acked] is closed once the client has acknowledged both
// PINGs.
func (hc *h2Conn) goAway() {
	if hc.h2.Load() && !hc.asked.Swap(true) {
		hc.queue(goAwayFrames)
	}
}

// queue has frames written at the next point where they may go.
func (hc *h2Conn) queue(frames []byte) {
	hc.insert.Store(&frames)
	// A write of net/http's may hold wmu for as long as the client does
	// not read: do not wait for it here.
	go func() {
		hc.wmu.Lock()
		defer hc.wmu.Unlock()
		if hc.insert.Load() != nil && hc.out.between() {
			hc.writeInserted()
		}
		// Otherwise net/http is inside a frame: its next write, which
		// ends the frame, inserts them.
	}()
}

// writeInserted writes the queued frames; wmu is held.
func (hc *h2Conn) writeInserted() {
	if p := hc.insert.Swap(nil); p != nil {
		if _, err := hc.Conn.Write(*p); err != nil {
			hc.broken = err
		}
	}
}

// Write writes p, inserting goAwayFrames at the first point where they may
// go once goAway has asked for them.
func (hc *h2Conn) Write(p []byte) (int, error) {
	if !hc.h2.Load() {
		return hc.Conn.Write(p)
	}
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	if hc.broken != nil {
		return 0, hc.broken
	}
	n := 0
	if k := -1; hc.insert.Load() != nil {
		if k = hc.out.insertAt(p); k > 0 {
			m, err := hc.Conn.Write(p[:k])
			hc.out.advance(p[:m])
			if n = m; err != nil {
				return n, err
			}
		}
		if k >= 0 {
			if hc.writeInserted(); hc.broken != nil {
				return n, hc.broken
			}
		}
	}
	m, err := hc.Conn.Write(p[n:])
	hc.out.advance(p[n : n+m])
	return n + m, err
}

// ReadFrom copies r to the connection, with sendfile or splice where the
// connection can (HTTP/1 responses over cleartext).
func (hc *h2Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := hc.Conn.(io.ReaderFrom); ok && !hc.h2.Load() {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{hc}, r)
}

// Read reads from the connection, watching for the client preface and
// then for the acknowledgement of the PING of goAwayFrames.
func (hc *h2Conn) Read(p []byte) (int, error) {
	// net/http reads on once it has processed every frame read so far:
	// those before an acknowledgement too.
	if hc.seen != hc.acks {
		if hc.seen = hc.acks; hc.acks == 1 {
			hc.queue(pingFrame)
		} else {
			hc.once[0].Do(func() { close(hc.acked) })
		}
	}
	n, err := hc.Conn.Read(p)
	if n > 0 && hc.preface >= 0 {
		hc.scan(p[:n])
	}
	if err != nil && hc.tls != nil && !hc.answered {
		// As net/http answers a client that speaks HTTP to its TLS port.
		hc.answered = true
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
	}
	return n, err
}

// scan follows what the client sent.
func (hc *h2Conn) scan(p []byte) {
	for hc.preface < len(clientPreface) {
		if len(p) == 0 {
			return
		}
		if p[0] != clientPreface[hc.preface] {
			hc.preface = -1 // HTTP/1
			return
		}
		p = p[1:]
		if hc.preface++; hc.preface == len(clientPreface) {
			hc.h2.Store(true)
		}
	}
	for len(p) > 0 {
		inPing := hc.ping != nil
		n := hc.in.step(p, hc.onHeader)
		if inPing {
			hc.ping = append(hc.ping, p[:n]...)
			if hc.in.nhdr == 0 {
				if hc.asked.Load() && hc.acks < 2 && string(hc.ping) == pings[hc.acks] {
					hc.acks++
				}
				hc.ping = nil
			}
		}
		p = p[n:]
	}
}

// onHeader starts collecting the payload of a PING ACK.
func (hc *h2Conn) onHeader(f *frameCursor) {
	if f.hdr[3] == framePing && f.hdr[4]&flagAck != 0 && f.left == pingLen {
		hc.ping = make([]byte, 0, pingLen)
	}
}

// Close closes the connection.
func (hc *h2Conn) Close() error {
	hc.once[1].Do(func() { close(hc.closed) })
	return hc.Conn.Close()
}

// CloseWrite shuts down the writing side, as net/http does before closing
// after some errors.
func (hc *h2Conn) CloseWrite() error {
	if cw, ok := hc.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// looksLikeHTTP reports whether the start of a TLS record is, in fact, an
// HTTP/1 request line, as net/http's check does.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// h2Listener wraps the connections it accepts in [h2Conn]s.
type h2Listener struct {
	net.Listener
	tls *tls.Config // nil: cleartext
}

func (ln *h2Listener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newH2Conn(c, ln.tls), nil
}

// serverProtocols returns the protocols srv serves over TLS, as net/http
// decides them: srv.Protocols, or HTTP/1 and HTTP/2 unless TLSNextProto
// is a map without "h2" (the historic way to turn HTTP/2 off).
func serverProtocols(srv *http.Server) http.Protocols {
	if srv.Protocols != nil {
		return *srv.Protocols
	}
	var p http.Protocols
	p.SetHTTP1(true)
	if _, h2 := srv.TLSNextProto["h2"]; h2 || srv.TLSNextProto == nil {
		p.SetHTTP2(true)
	}
	return p
}

// nextProtos returns the ALPN protocols to offer for p, as net/http's
// ServeTLS does: have without what p excludes, plus "h2" and "http/1.1"
// if p includes them.
func nextProtos(have []string, p http.Protocols) []string {
	out := slices.DeleteFunc(slices.Clone(have), func(s string) bool {
		return s == "h2" && !p.HTTP2() || s == "http/1.1" && !p.HTTP1()
	})
	if p.HTTP2() && !slices.Contains(out, "h2") {
		out = append(out, "h2")
	}
	if p.HTTP1() && !slices.Contains(out, "http/1.1") {
		out = append(out, "http/1.1")
	}
	return out
}
