package testutil

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"
)

// Response is what a client got for one request.
type Response struct {
	Status int
	Header http.Header
	Body   string
	Close  bool // the server asked to close the connection (Connection: close)
	Err    error
	At     time.Time // when the body had been read, or the error seen
}

// NewClient returns a client with its own connection pool, so that tests
// do not share keep-alive connections by accident.
func NewClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// Do sends one request and reads the whole response.
func Do(c *http.Client, method, url string) Response {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return Response{Err: err, At: time.Now()}
	}
	return read(c.Do(req))
}

// Get is Do with GET, failing the test on a transport error.
func Get(t testing.TB, c *http.Client, url string) Response {
	t.Helper()
	r := Do(c, http.MethodGet, url)
	if r.Err != nil {
		t.Fatalf("GET %s: %v", url, r.Err)
	}
	return r
}

// DoAsync is Do in the background: the response arrives on the returned
// channel. Use [StartRequest] when the server must have the request first.
func DoAsync(c *http.Client, method, url string) <-chan Response {
	out := make(chan Response, 1)
	go func() { out <- Do(c, method, url) }()
	return out
}

// StartRequest sends a request in the background and returns once it has been
// fully written to the connection, so the server has it. The response
// arrives on the returned channel.
func StartRequest(t testing.TB, c *http.Client, method, url string) <-chan Response {
	t.Helper()
	wrote := make(chan struct{})
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Response, 1)
	go func() { out <- read(c.Do(req)) }()
	select {
	case <-wrote:
	case r := <-out:
		t.Fatalf("%s %s failed before it was written: %v", method, url, r.Err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s %s not written within 10s", method, url)
	}
	return out
}

func read(resp *http.Response, err error) Response {
	if err != nil {
		return Response{Err: err, At: time.Now()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Close: resp.Close, Err: err, At: time.Now()}
}
