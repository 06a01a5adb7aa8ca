package core

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// frame returns an HTTP/2 frame of type typ, with flags, on stream, with
// a payload of n bytes.
func frame(typ, flags byte, stream uint32, n int) []byte {
	f := make([]byte, 9+n)
	f[0], f[1], f[2] = byte(n>>16), byte(n>>8), byte(n)
	f[3], f[4] = typ, flags
	binary.BigEndian.PutUint32(f[5:], stream)
	for i := range n {
		f[9+i] = byte(i)
	}
	return f
}

// recordConn records what is written to it.
type recordConn struct {
	net.Conn // nil: only Write is called
	mu       sync.Mutex
	buf      bytes.Buffer
}

func (c *recordConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

// splitFrames splits a stream of frames into frames, and reports where
// header blocks are open (between a HEADERS without END_HEADERS and the
// CONTINUATION that ends them).
func splitFrames(t *testing.T, p []byte) (frames [][]byte, inBlock []bool) {
	t.Helper()
	block := false
	for len(p) > 0 {
		if len(p) < 9 {
			t.Fatalf("%d bytes after the last frame", len(p))
		}
		n := 9 + (int(p[0])<<16 | int(p[1])<<8 | int(p[2]))
		if len(p) < n {
			t.Fatalf("a frame of %d bytes with %d left", n, len(p))
		}
		inBlock = append(inBlock, block)
		frames = append(frames, p[:n])
		switch p[3] {
		case frameHeaders, framePushPromise, frameContinuation:
			block = p[4]&flagEndHeaders == 0
		}
		p = p[n:]
	}
	return frames, inBlock
}

// TestH2ConnInsertsBetweenFrames writes a stream of frames (data, header
// blocks split over CONTINUATIONs, empty frames) in random pieces, as
// net/http's buffered writer does, asks for the GOAWAY at a random point,
// and checks that it comes out once, whole, between two frames and
// outside every header block, and that nothing else changed.
func TestH2ConnInsertsBetweenFrames(t *testing.T) {
	stream := frame(0x4, 0, 0, 18) // SETTINGS, which must come first
	for i := range 40 {
		id := uint32(2*i + 1)
		stream = append(stream, frame(frameHeaders, 0, id, 20)...)
		stream = append(stream, frame(frameContinuation, 0, id, 3)...)
		stream = append(stream, frame(frameContinuation, flagEndHeaders, id, 0)...)
		stream = append(stream, frame(0x0, 0, id, 1000+i*97)...) // DATA
		stream = append(stream, frame(frameHeaders, flagEndHeaders, id, 5)...)
		stream = append(stream, frame(0x8, 0, 0, 4)...) // WINDOW_UPDATE
	}
	want, _ := splitFrames(t, stream)
	for seed := range uint64(500) {
		rnd := rand.New(rand.NewPCG(seed, 0))
		rec := &recordConn{}
		hc := &h2Conn{Conn: rec, acked: make(chan struct{}), closed: make(chan struct{})}
		hc.h2.Store(true)
		askAt := rnd.IntN(len(stream) + 1)
		var asked bool
		ask := func() {
			// What goAway's goroutine does, in line, so that the point
			// it runs at is the seed's.
			asked = true
			frames := goAwayFrames
			hc.insert.Store(&frames)
			hc.wmu.Lock()
			if hc.out.between() {
				hc.writeInserted()
			}
			hc.wmu.Unlock()
		}
		for p := stream; ; {
			if !asked && len(stream)-len(p) >= askAt {
				ask()
			}
			if len(p) == 0 {
				break
			}
			n := min(len(p), 1+rnd.IntN(5000))
			if m, err := hc.Write(p[:n]); m != n || err != nil {
				t.Fatalf("seed %d: Write: got %d, %v, want %d, nil", seed, m, err, n)
			}
			p = p[n:]
		}
		got, inBlock := splitFrames(t, rec.buf.Bytes())
		at := -1
		for i, f := range got {
			if bytes.Equal(f, goAwayFrames[:17]) {
				if at >= 0 {
					t.Fatalf("seed %d: two GOAWAYs, frames %d and %d", seed, at, i)
				}
				at = i
			}
		}
		if at < 0 || at+1 >= len(got) || !bytes.Equal(got[at+1], goAwayFrames[17:]) {
			t.Fatalf("seed %d: no GOAWAY followed by the PING in %d frames", seed, len(got))
		}
		if inBlock[at] || at == 0 {
			t.Fatalf("seed %d: the GOAWAY is frame %d, inside a header block or before the SETTINGS", seed, at)
		}
		rest := append(append([][]byte(nil), got[:at]...), got[at+2:]...)
		if len(rest) != len(want) {
			t.Fatalf("seed %d: got %d frames besides the GOAWAY and PING, want %d", seed, len(rest), len(want))
		}
		for i := range want {
			if !bytes.Equal(rest[i], want[i]) {
				t.Fatalf("seed %d: frame %d changed", seed, i)
			}
		}
	}
}

// feedConn returns its chunks to Read, one per call.
type feedConn struct {
	net.Conn
	chunks [][]byte
}

func (c *feedConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// TestH2ConnReadsTheAck reads the client preface and frames split at
// every byte, and checks that only the ACKs of lameduck's two PINGs, in
// order and whole, close acked, once net/http reads on past them: not a
// PING that asks for one, not another's ACK, not an ACK of another
// length.
func TestH2ConnReadsTheAck(t *testing.T) {
	ping := func(flags byte, data string) []byte {
		f := frame(framePing, flags, 0, len(data))
		copy(f[9:], data)
		return f
	}
	acked := func(stream []byte, split int) (h2, acked bool) {
		hc := &h2Conn{acked: make(chan struct{}), closed: make(chan struct{})}
		hc.asked.Store(true)
		hc.Conn = &feedConn{chunks: [][]byte{stream[:split], stream[split:]}}
		buf := make([]byte, len(stream))
		for {
			if _, err := hc.Read(buf); err != nil {
				break
			}
		}
		select {
		case <-hc.acked:
			acked = true
		default:
		}
		return hc.h2.Load(), acked
	}
	base := append([]byte(clientPreface), frame(0x4, 0, 0, 12)...) // SETTINGS
	base = append(base, frame(frameHeaders, flagEndHeaders, 1, 30)...)
	cases := []struct {
		name      string
		stream    []byte
		h2, acked bool
	}{
		{"both ACKs", append(append(append(bytes.Clone(base), ping(0, "otherone")...), ping(flagAck, pings[0])...), ping(flagAck, pings[1])...), true, true},
		{"the first ACK only", append(bytes.Clone(base), ping(flagAck, pings[0])...), true, false},
		{"the second ACK first", append(append(bytes.Clone(base), ping(flagAck, pings[1])...), ping(flagAck, pings[0])...), true, false},
		{"PINGs, not ACKs", append(append(bytes.Clone(base), ping(0, pings[0])...), ping(0, pings[1])...), true, false},
		{"another's ACK", append(bytes.Clone(base), ping(flagAck, "netshttp")...), true, false},
		{"ACKs with longer payloads", append(append(bytes.Clone(base), ping(flagAck, pings[0]+"x")...), ping(flagAck, pings[1]+"x")...), true, false},
		{"HTTP/1", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false, false},
	}
	for _, tc := range cases {
		for split := 1; split < len(tc.stream); split++ {
			if h2, ack := acked(tc.stream, split); h2 != tc.h2 || ack != tc.acked {
				t.Fatalf("%s, split at %d: got HTTP/2 %v, acked %v, want %v, %v", tc.name, split, h2, ack, tc.h2, tc.acked)
			}
		}
	}
}
