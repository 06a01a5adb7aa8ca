package core

import (
	"net"
	"net/http"
	"time"
)

// Test hooks: the tests of the lifecycle's logic drive it without Run.

// MarkReady moves a Starting lifecycle to Serving, as Run does.
func (l *Lifecycle) MarkReady() { l.markReady() }

// InFlight returns the number of units of work between Begin and End.
func (l *Lifecycle) InFlight() int64 { return l.inFlight() }

// WithProgressInterval sets how often a drain logs its progress.
func WithProgressInterval(d time.Duration) Option { return func(c *config) { c.progress = d } }

// IsProbePath is isProbePath.
var IsProbePath = isProbePath

// Wrap returns next behind the request handling of ListenHTTP.
func (l *Lifecycle) Wrap(next, probes http.Handler) http.Handler {
	return &handler{l: l, next: next, probes: probes}
}

// CanFreezeAccepts reports whether this kernel lets freezeAccepts attach
// its socket filter.
func CanFreezeAccepts() bool {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false
	}
	defer ln.Close()
	return freezeAccepts(ln.(*net.TCPListener))
}
