package chiadapter_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/internal/testutil"
)

// h2cClient speaks HTTP/2 with prior knowledge, over plain TCP.
func h2cClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// protoGet gets url with c and returns the body (the request's r.Proto,
// as the server saw it) and whether the response carries
// "Connection: close".
func protoGet(t *testing.T, c *http.Client, url string) (proto string, closes bool) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %q %v, want 200", url, resp.StatusCode, b, err)
	}
	if resp.Proto != string(b) {
		t.Errorf("GET %s: response %s, request %s", url, resp.Proto, b)
	}
	return string(b), resp.Close || resp.Header.Get("Connection") != ""
}

// TestH2C: the server speaks HTTP/1.1 and h2c (prior knowledge) on the
// same port; during the hold HTTP/1 responses carry "Connection: close"
// and HTTP/2 ones do not (their connections get the drain's GOAWAY).
func TestH2C(t *testing.T) {
	lc := newLifecycle(t, core.WithHold(time.Hour))
	r := chi.NewRouter()
	r.Get("/proto", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })
	s := start(t, r, newHealth(t, lc), lc)
	h2, h1 := h2cClient(t), testutil.NewClient(t)

	for _, phase := range []string{"serving", "holding"} {
		if phase == "holding" {
			s.stop()
			<-lc.Reached(core.Holding)
		}
		if proto, closes := protoGet(t, h2, s.url+"/proto"); proto != "HTTP/2.0" || closes {
			t.Errorf("%s: h2c client: %s, Connection header %v; want HTTP/2.0 without one", phase, proto, closes)
		}
		if proto, closes := protoGet(t, h1, s.url+"/proto"); proto != "HTTP/1.1" || closes != (phase == "holding") {
			t.Errorf("%s: HTTP/1.1 client: %s, Connection: close %v; want HTTP/1.1, close only in the hold", phase, proto, closes)
		}
	}
	lc.Force(nil) // the hour-long hold
	if err := s.wait(t); err == nil {
		t.Error("Run after Force: got nil, want a *core.ForcedError")
	}
}
