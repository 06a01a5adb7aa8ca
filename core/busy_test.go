package core_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

// A connection can stay busy after its handler has returned; a drain
// forced then cuts the response off, and must say so: reported as forced,
// with the response counted as abandoned. Each case runs many times: the
// report once depended on which of two ready channels a select took.

// TestForcedCountsH2StreamWaitingForWindow: an HTTP/2 client that grants
// no flow-control window; the handler's few bytes wait in the server.
func TestForcedCountsH2StreamWaitingForWindow(t *testing.T) {
	for i := range 20 {
		l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(100*time.Millisecond))
		returned := make(chan struct{}, 1)
		ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "cut off")
			returned <- struct{}{}
		}), h2cServer)
		conn, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(h2Request(ts.addr)); err != nil {
			t.Fatal(err)
		}
		recv(t, returned, "the handler's return")
		err = l.Shutdown(t.Context())
		conn.Close()
		var fe *core.ForcedError
		if !errors.As(err, &fe) || fe.Abandoned != 1 {
			t.Fatalf("run %d: Shutdown: got %v, want a ForcedError with the stream counted as abandoned", i, err)
		}
	}
}

// h2Request is an HTTP/2 client's preface, a SETTINGS frame that makes
// every stream's initial window 0, and a GET / with END_STREAM.
func h2Request(authority string) []byte {
	var b bytes.Buffer
	b.WriteString("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	frame := func(typ, flags byte, stream uint32, payload []byte) {
		var h [9]byte
		h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
		h[3], h[4] = typ, flags
		binary.BigEndian.PutUint32(h[5:], stream)
		b.Write(h[:])
		b.Write(payload)
	}
	frame(0x4, 0, 0, []byte{0, 0x4, 0, 0, 0, 0}) // SETTINGS_INITIAL_WINDOW_SIZE = 0
	// HPACK: :method GET, :scheme http, :path / from the static table,
	// :authority as a literal with an indexed name.
	hdr := []byte{0x82, 0x86, 0x84, 0x41, byte(len(authority))}
	hdr = append(hdr, authority...)
	frame(0x1, 0x5, 1, hdr) // HEADERS, END_STREAM|END_HEADERS
	return b.Bytes()
}

// TestForcedCountsSlowUploadAfterTheHandler: the handler answers without
// reading the body; net/http reads what is left of it before it sends the
// answer, and the client uploads it slowly.
func TestForcedCountsSlowUploadAfterTheHandler(t *testing.T) {
	const size = 64 << 10 // under net/http's 256 KiB, which it reads
	for i := range 20 {
		l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(100*time.Millisecond))
		returned := make(chan struct{}, 1)
		ts := startServer(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			returned <- struct{}{}
		}), nil)
		conn, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		head := "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\nx"
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		recv(t, returned, "the handler's return")
		err = l.Shutdown(t.Context()) // the rest of the body never comes
		conn.Close()
		var fe *core.ForcedError
		if !errors.As(err, &fe) || fe.Abandoned != 1 {
			t.Fatalf("run %d: Shutdown: got %v, want a ForcedError with the request counted as abandoned", i, err)
		}
	}
}
