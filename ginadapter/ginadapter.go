package ginadapter

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// Listen listens on addr now and adds to lc an *http.Server that serves e
// and the probes of h (see [core.Lifecycle.ListenHTTP]); [core.Lifecycle.Run]
// serves it. It returns the bound address (with the chosen port when addr
// has port 0). The server's ReadHeaderTimeout is 10 seconds.
//
// The server speaks HTTP/1.1 and unencrypted HTTP/2 with prior knowledge
// (h2c) on the same port, through [net/http.Server.Protocols]: an HTTP/2
// client needs a transport that allows unencrypted HTTP/2 (for Go, an
// [net/http.Transport] whose Protocols has SetUnencryptedHTTP2), and
// HTTP/1.1 clients are served as ever. The "Upgrade: h2c" dance of
// HTTP/1.1 is not supported. From the hold on, HTTP/1 responses carry
// "Connection: close" and HTTP/2 responses do not: HTTP/2 connections get
// a GOAWAY that refuses no stream instead, as
// [core.Lifecycle.ListenHTTP] says.
//
// With a nil h, e serves the probe paths itself, still untracked. Listen
// returns an error for a nil lc or e, the listen error (a port in use,
// say), or [core.ErrShuttingDown] once the shutdown has started.
func Listen(lc *core.Lifecycle, addr string, e *gin.Engine, h *health.Health) (net.Addr, error) {
	if lc == nil {
		return nil, errors.New("ginadapter: Listen with a nil *core.Lifecycle")
	}
	if e == nil {
		return nil, errors.New("ginadapter: Listen with a nil *gin.Engine")
	}
	var probes http.Handler // a nil h must stay a nil interface
	if h != nil {
		probes = h
	}
	srv := &http.Server{Addr: addr, Handler: e, ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge, on the same port
	if err := lc.ListenHTTP(srv, probes); err != nil {
		return nil, err
	}
	return net.ResolveTCPAddr("tcp", srv.Addr) // ListenHTTP set it to the bound address
}
