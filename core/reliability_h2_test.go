package core_test

import (
	"io"
	"log"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

// TestReliabilityH2LastResponseNotCutOff parks one long poll on each of
// many HTTP/2 cleartext connections; at the drain every handler answers
// and returns. The stream that ends last on a connection turns it idle,
// and its answer must still reach the client in full: an HTTP/2 server
// reports StateIdle when the last frame is queued in its write buffer,
// before it is flushed to the socket, so closing the connection at that
// event cuts the answer off.
func TestReliabilityH2LastResponseNotCutOff(t *testing.T) {
	const conns = 100
	l, err := core.New(core.WithLogger(quiet), core.WithSignals(), core.WithHold(0), core.WithDrainTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	parked := make(chan struct{}, conns)
	srv := &http.Server{
		ErrorLog: log.New(io.Discard, "", 0),
		Addr:     "127.0.0.1:0",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			parked <- struct{}{}
			<-l.Reached(core.Draining)
			_, _ = io.WriteString(w, "done")
		}),
		Protocols: new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	if err := l.ListenHTTP(srv, nil); err != nil {
		t.Fatal(err)
	}
	run(t, l)

	type res struct {
		status int
		body   string
		err    error
	}
	results := make([]res, conns)
	var wg sync.WaitGroup
	for i := range conns {
		// One transport per poll: one connection per poll.
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: time.Minute}
		wg.Go(func() {
			resp, err := c.Get("http://" + srv.Addr + "/poll")
			if err != nil {
				results[i] = res{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			results[i] = res{resp.StatusCode, string(b), err}
		})
	}
	for range conns {
		recv(t, parked, "poll parked")
	}
	if err := recv(t, shutdownAsync(t.Context(), l), "Shutdown"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil", err)
	}
	wg.Wait()
	lost := 0
	for i, r := range results {
		if r.err != nil || r.status != http.StatusOK || r.body != "done" {
			if lost == 0 {
				t.Errorf("poll %d: got %d %q %v, want 200 \"done\"", i, r.status, r.body, r.err)
			}
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d answers cut off at the drain", lost, conns)
	}
}
