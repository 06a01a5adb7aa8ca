package core_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

// testTLS returns a certificate for 127.0.0.1 and a client config that
// trusts it, borrowed from httptest.
func testTLS(t *testing.T) (tls.Certificate, *tls.Config) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	defer ts.Close()
	return ts.TLS.Certificates[0], ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
}

// TestTLSServedByLameduck checks what a handler sees over the TLS that
// ListenHTTP terminates itself: Request.TLS, with the protocol ALPN chose
// as net/http's ServeTLS would (HTTP/2 unless srv.Protocols excludes it),
// and that a client speaking plain HTTP to the port gets net/http's 400.
func TestTLSServedByLameduck(t *testing.T) {
	cert, clientTLS := testTLS(t)
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "no Request.TLS", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %s %v", r.Proto, r.TLS.NegotiatedProtocol, r.TLS.HandshakeComplete)
	})
	http1Only := new(http.Protocols)
	http1Only.SetHTTP1(true)
	cases := []struct {
		name      string
		protocols *http.Protocols // the server's
		client    func() *http.Transport
		want      string
	}{
		{"HTTP/1.1 client", nil, func() *http.Transport {
			return &http.Transport{TLSClientConfig: clientTLS.Clone()} // offers no ALPN
		}, "HTTP/1.1  true"},
		{"HTTP/2 client", nil, func() *http.Transport {
			return &http.Transport{TLSClientConfig: clientTLS.Clone(), ForceAttemptHTTP2: true}
		}, "HTTP/2.0 h2 true"},
		{"HTTP/2 client, HTTP/1 server", http1Only, func() *http.Transport {
			return &http.Transport{TLSClientConfig: clientTLS.Clone(), ForceAttemptHTTP2: true}
		}, "HTTP/1.1 http/1.1 true"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(time.Minute))
			ts := startServer(t, l, echo, func(s *http.Server) {
				s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
				s.Protocols = tc.protocols
			})
			tr := tc.client()
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Get("https://" + ts.addr + "/work")
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || string(body) != tc.want {
				t.Fatalf("got %d %q %v, want 200 %q", resp.StatusCode, body, err, tc.want)
			}

			resp, err = http.Get("http://" + ts.addr + "/work")
			if err != nil {
				t.Fatalf("plain HTTP to the TLS port: %v", err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
				t.Fatalf("plain HTTP to the TLS port: got %d %q, want net/http's 400", resp.StatusCode, body)
			}
			if err := recv(t, shutdownAsync(t.Context(), l), "Shutdown"); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		})
	}
}
