package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"testing"
	"time"
)

// startIDServer serves its id on every path, on 127.0.0.1:0.
func startIDServer(t *testing.T, id string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, id)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// deadAddr returns an address on which nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// keepAliveClient is a client with one keep-alive connection.
func keepAliveClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type answer struct {
	status int
	body   string
	reused bool
	local  string
	header http.Header
}

func get(t *testing.T, c *http.Client, url string) (answer, error) {
	t.Helper()
	var a answer
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		a.reused, a.local = i.Reused, i.Conn.LocalAddr().String()
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, url+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	a.status, a.body, a.header = resp.StatusCode, string(b), resp.Header
	return a, err
}

func mustGet(t *testing.T, c *http.Client, url string) answer {
	t.Helper()
	a, err := get(t, c, url)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newTestBalancer(t *testing.T, mode string) balancer {
	t.Helper()
	lb, err := newBalancer(mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lb.Close(); err != nil {
			t.Error(err)
		}
	})
	return lb
}

func TestL4KeepsEstablishedConnectionOnRemovedBackend(t *testing.T) {
	a, b := startIDServer(t, "a"), startIDServer(t, "b")
	lb := newTestBalancer(t, modeL4)
	lb.Endpoints().Add(a)
	old := keepAliveClient(t)
	if got := mustGet(t, old, lb.URL()); got.body != "a" {
		t.Fatalf("first request: got %q, want a", got.body)
	}
	lb.Endpoints().Add(b)
	lb.Endpoints().Remove(a)

	got := mustGet(t, old, lb.URL())
	if !got.reused {
		t.Fatal("second request: got a new connection, want the established one")
	}
	if got.body != "a" {
		t.Errorf("request on the established connection: got %q, want a (removal must not move it)", got.body)
	}
	for i := range 3 {
		if got := mustGet(t, keepAliveClient(t), lb.URL()); got.body != "b" {
			t.Errorf("new connection %d: got %q, want b (a was removed)", i, got.body)
		}
	}
}

func TestL7RoutesEveryRequest(t *testing.T) {
	a, b := startIDServer(t, "a"), startIDServer(t, "b")
	lb := newTestBalancer(t, modeL7)
	lb.Endpoints().Add(a)
	c := keepAliveClient(t)
	if got := mustGet(t, c, lb.URL()); got.body != "a" {
		t.Fatalf("first request: got %q, want a", got.body)
	}
	lb.Endpoints().Add(b)
	lb.Endpoints().Remove(a)
	for i := range 3 {
		got := mustGet(t, c, lb.URL())
		if !got.reused {
			t.Errorf("request %d: got a new connection to the balancer, want the keep-alive one", i)
		}
		if got.body != "b" {
			t.Errorf("request %d on the same connection: got %q, want b (a was removed)", i, got.body)
		}
	}
}

func TestBalancersRoundRobin(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode, func(t *testing.T) {
			lb := newTestBalancer(t, mode)
			lb.Endpoints().Add(startIDServer(t, "a"))
			lb.Endpoints().Add(startIDServer(t, "b"))
			seen := map[string]int{}
			for range 4 {
				// A new client each time: L4 picks per connection.
				seen[mustGet(t, keepAliveClient(t), lb.URL()).body]++
			}
			if seen["a"] != 2 || seen["b"] != 2 {
				t.Errorf("got %v, want a and b twice each", seen)
			}
		})
	}
}

func TestRemoveAfterDelay(t *testing.T) {
	e := newEndpoints()
	defer e.Close()
	e.Add("a")
	e.Add("b")
	const delay = 50 * time.Millisecond
	start := time.Now()
	removed := e.RemoveAfter("a", delay)
	if got := e.List(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("right after RemoveAfter: got %v, want [a b]: the removal must wait", got)
	}
	select {
	case at := <-removed:
		if d := at.Sub(start); d < delay {
			t.Errorf("removed after %v, want at least %v", d, delay)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not removed within 10s")
	}
	if got := e.List(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("after the removal: got %v, want [b]", got)
	}
}

func TestRemoveAfterDroppedAtClose(t *testing.T) {
	e := newEndpoints()
	e.Add("a")
	removed := e.RemoveAfter("a", time.Hour)
	e.Close() // must not wait an hour, nor leak the timer's goroutine
	select {
	case <-removed:
		t.Error("a removal pending at Close was carried out")
	default:
	}
}

func TestL4RefusedBackend(t *testing.T) {
	lb := newTestBalancer(t, modeL4)
	lb.Endpoints().Add(deadAddr(t))
	ld := &load{cfg: loadConfig{RefusedConn: lb.RefusedConn}}
	// The reset reaches the client either during its connect or after
	// it wrote the request; both must count as refused.
	for i := range 10 {
		a, err := get(t, keepAliveClient(t), lb.URL())
		if err == nil {
			t.Fatalf("request %d: got %d %q, want an error: the backend does not listen", i, a.status, a.body)
		}
		if got := ld.classify(err, a.local); got != kindRefused {
			t.Errorf("request %d: %v classified as %s, want %s", i, err, kindNames[got], kindNames[kindRefused])
		}
		if a.local != "" && lb.RefusedConn(a.local) {
			t.Errorf("request %d: RefusedConn: got true twice, want the record forgotten once read", i)
		}
	}
}

func TestL7Errors(t *testing.T) {
	cases := []struct {
		name      string
		endpoints []string
		want      int
	}{
		{"backend_refuses", []string{deadAddr(t)}, http.StatusBadGateway},
		{"no_endpoints", nil, http.StatusServiceUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lb := newTestBalancer(t, modeL7)
			for _, a := range tc.endpoints {
				lb.Endpoints().Add(a)
			}
			got := mustGet(t, keepAliveClient(t), lb.URL())
			if got.status != tc.want {
				t.Errorf("status: got %d, want %d", got.status, tc.want)
			}
			if got.header.Get(lbHeader) == "" {
				t.Errorf("the balancer's own error lacks the %s header", lbHeader)
			}
		})
	}
}

func TestL4CloseEndsEstablishedConnections(t *testing.T) {
	lb, err := newBalancer(modeL4)
	if err != nil {
		t.Fatal(err)
	}
	lb.Endpoints().Add(startIDServer(t, "a"))
	c := keepAliveClient(t)
	mustGet(t, c, lb.URL())
	done := make(chan error, 1)
	go func() { done <- lb.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s with an idle keep-alive connection open")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, lb.URL()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Error("a request after Close succeeded")
	}
}
