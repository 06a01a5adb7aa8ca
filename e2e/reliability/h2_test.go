package reliability_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

// The load of TestH2NonReplayablePOSTs.
const (
	h2Clients    = 4                    // transports, each its own connection
	h2Workers    = 32                   // concurrent POST loops, spread over the clients
	h2Hold       = time.Second          // the hold, lameduck's and the plain server's
	h2Work       = 2 * time.Millisecond // what the handler takes per request
	h2MaxReqs    = 200_000              // bound on the requests of one run
	h2RunBound   = 20 * time.Second     // bound on one run
	h2DrainBound = 10 * time.Second     // drain timeout / Shutdown's context
)

// h2Proto is a way to speak HTTP/2: cleartext with prior knowledge (h2c)
// or TLS with ALPN.
type h2Proto struct {
	name   string
	scheme string
	tls    bool
	// server configures a server for the protocol.
	server func(*http.Server)
	// transport returns a client transport that speaks only HTTP/2 to
	// the server; dial counts its dials.
	// (for h2c, watch, if not nil, is given each connection it dials).
	transport func(dials *atomic.Int64, watch func(net.Conn) net.Conn) *http.Transport
}

// h2Protos returns h2c and TLS, the latter with a self-signed
// certificate for 127.0.0.1 made here.
func h2Protos(t testing.TB) []h2Proto {
	t.Helper()
	cert, pool := h2Cert(t)
	dialer := func(dials *atomic.Int64, watch func(net.Conn) net.Conn) func(context.Context, string, string) (net.Conn, error) {
		d := &net.Dialer{Timeout: hang}
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			c, err := d.DialContext(ctx, network, addr)
			if err == nil && watch != nil {
				c = watch(c)
			}
			return c, err
		}
	}
	return []h2Proto{
		{
			name: "h2c", scheme: "http",
			server: h2c,
			transport: func(dials *atomic.Int64, watch func(net.Conn) net.Conn) *http.Transport {
				tr := &http.Transport{Protocols: new(http.Protocols), DialContext: dialer(dials, watch)}
				tr.Protocols.SetUnencryptedHTTP2(true)
				return tr
			},
		},
		{
			name: "TLS", scheme: "https", tls: true,
			server: func(s *http.Server) {
				s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
			},
			transport: func(dials *atomic.Int64, _ func(net.Conn) net.Conn) *http.Transport {
				return &http.Transport{
					TLSClientConfig:   &tls.Config{RootCAs: pool},
					ForceAttemptHTTP2: true,
					DialContext:       dialer(dials, nil),
				}
			},
		},
	}
}

// h2Cert makes a self-signed certificate for 127.0.0.1 and the pool that
// trusts it.
func h2Cert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// h2Kind is the kind of a failed request.
type h2Kind int

const (
	// h2GoAway: the client had sent the stream when a GOAWAY told it the
	// server had not processed it, and could not resend its body.
	h2GoAway h2Kind = iota
	// h2Rewind: the transport failed over to another connection and
	// could not rewind the body: the connection was lost before the
	// answer, or a GOAWAY made it unusable while the request waited to
	// open its stream, unsent (golang/go#62450).
	h2Rewind
	// h2Refused: a dial refused (or reset during the handshake) because
	// the listener had closed; nothing was sent, the client would go to
	// another instance.
	h2Refused
	// h2Other: anything else (a reset, a cut response, a bad status).
	h2Other
	h2Kinds
)

func (k h2Kind) String() string {
	return [...]string{"goaway", "rewind", "refused", "other"}[k]
}

func h2Classify(err error) h2Kind {
	s := err.Error()
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), isDialErr(err):
		return h2Refused
	case strings.Contains(s, "graceful shutdown GOAWAY"), strings.Contains(s, "after Request.Body was written"):
		return h2GoAway
	case strings.Contains(s, "cannot rewind body"):
		return h2Rewind
	}
	return h2Other
}

// isDialErr reports whether err is a failed dial: nothing was sent.
func isDialErr(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// h2Tally counts the outcomes of a run.
type h2Tally struct {
	sent    atomic.Int64
	ok      atomic.Int64
	handled atomic.Int64 // requests whose handler ran
	opened  atomic.Int64 // streams the client opened (h2c, watched only)
	dials   atomic.Int64
	// refusedWorkers counts the workers of h2Load stopped by a refused
	// dial.
	refusedWorkers atomic.Int64

	mu sync.Mutex
	// fail[0] failed before the drain started, fail[1] at or after.
	fail    [2][h2Kinds]int
	at      [2][h2Kinds][]time.Time // when each failure was seen
	samples []string
	goAways []string // what the client's connections saw (h2c only)
	watched []*h2Frames
}

// http2Preface is the client connection preface of HTTP/2.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func (ty *h2Tally) record(err error, inDrain, startedInDrain bool, began, now time.Time) h2Kind {
	k := h2Classify(err)
	d := 0
	if inDrain {
		d = 1
	}
	ty.mu.Lock()
	defer ty.mu.Unlock()
	ty.fail[d][k]++
	ty.at[d][k] = append(ty.at[d][k], now)
	if (k != h2Refused || !errors.Is(err, syscall.ECONNREFUSED)) && len(ty.samples) < 4 {
		ty.samples = append(ty.samples, fmt.Sprintf("%v (started in drain %v, took %v)", err, startedInDrain, now.Sub(began).Round(time.Microsecond)))
	}
	return k
}

// lost returns the failures but the refused dials, before and at/after
// the drain's start.
func (ty *h2Tally) lost() (hold, drain int) {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	return ty.fail[0][h2GoAway] + ty.fail[0][h2Rewind] + ty.fail[0][h2Other], ty.fail[1][h2GoAway] + ty.fail[1][h2Rewind] + ty.fail[1][h2Other]
}

// refused returns the requests the server refused or cut off: a GOAWAY
// refusal of a stream the client had sent, or any other failure but a
// refused dial and a rewind (a request Go's client may fail unsent,
// golang/go#62450), before and at/after the drain's start.
func (ty *h2Tally) refused() (hold, drain int) {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	return ty.fail[0][h2GoAway] + ty.fail[0][h2Other], ty.fail[1][h2GoAway] + ty.fail[1][h2Other]
}

// watch returns a function for h2Proto.transport that watches the frames
// of each connection, for count.
func (ty *h2Tally) watch() func(net.Conn) net.Conn {
	return func(c net.Conn) net.Conn {
		f := &h2Frames{Conn: c, preface: len(http2Preface)}
		ty.mu.Lock()
		ty.watched = append(ty.watched, f)
		ty.mu.Unlock()
		return f
	}
}

// count adds up what the watched connections saw.
func (ty *h2Tally) count() {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	for _, f := range ty.watched {
		f.mu.Lock()
		ty.goAways = append(ty.goAways, f.goAways...)
		ty.opened.Add(f.streams)
		f.mu.Unlock()
	}
	ty.watched = nil
}

// summary renders the tally, failure times relative to drainAt.
func (ty *h2Tally) summary(drainAt time.Time) string {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d, ok %d, handled %d, dials %d", ty.sent.Load(), ty.ok.Load(), ty.handled.Load(), ty.dials.Load())
	for d, phase := range []string{"hold", "drain"} {
		fmt.Fprintf(&b, "; %s:", phase)
		for k := range h2Kinds {
			fmt.Fprintf(&b, " %v %d", k, ty.fail[d][k])
			if ts := ty.at[d][k]; len(ts) > 0 && !drainAt.IsZero() {
				lo, hi := ts[0].Sub(drainAt), ts[0].Sub(drainAt)
				for _, t := range ts {
					lo, hi = min(lo, t.Sub(drainAt)), max(hi, t.Sub(drainAt))
				}
				fmt.Fprintf(&b, " [%v..%v after drain start]", lo.Round(time.Microsecond), hi.Round(time.Microsecond))
			}
		}
	}
	for _, s := range ty.samples {
		fmt.Fprintf(&b, "\n\t%s", s)
	}
	return b.String()
}

// h2Handler reads the body, works for h2Work and answers 200 with the
// body's length.
func h2Handler(ty *h2Tally) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		time.Sleep(h2Work) // the request's work, not a wait for an event
		ty.handled.Add(1)
		fmt.Fprint(w, n)
	})
}

// h2Post sends one non-replayable POST (no GetBody) and returns nil if it
// was answered 200 over HTTP/2 with the body's length.
func h2Post(c *http.Client, url string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.GetBody = nil
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the response: %w", err)
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || string(got) != fmt.Sprint(len(body)) {
		return fmt.Errorf("got %s %d %q, want HTTP/2 200 %d", resp.Proto, resp.StatusCode, got, len(body))
	}
	return nil
}

// h2Invariants checks what must hold whatever the GOAWAY race costs:
// every request a handler served was answered (none cut off after its
// handler ran), and every failure is a GOAWAY refusal of a stream the
// server never processed, or a dial that found the listener closed.
func h2Invariants(t *testing.T, name string, ty *h2Tally) {
	t.Helper()
	if h, ok := ty.handled.Load(), ty.ok.Load(); h != ok {
		t.Errorf("%s: %d requests handled, %d answered: %d cut off after their handler ran", name, h, ok, h-ok)
	}
	ty.mu.Lock()
	defer ty.mu.Unlock()
	if n := ty.fail[0][h2Other] + ty.fail[1][h2Other]; n != 0 {
		t.Errorf("%s: %d failures neither a GOAWAY refusal nor a refused dial: %q", name, n, ty.samples)
	}
}

// h2Target is a server under load: lameduck's or plain net/http's.
type h2Target struct {
	url     string
	trigger func()          // starts the shutdown
	holding <-chan struct{} // closed when the hold starts (lameduck only)
	drain   <-chan struct{} // closed when the drain starts
	stopped <-chan struct{} // closed when the server has stopped
	drainAt func() time.Time
}

// h2Load runs h2Workers POST loops over h2Clients transports against tg
// until the server has stopped (a worker also stops at its first refused
// dial: its client would go to another instance). Once every worker has
// had answers, it triggers the shutdown.
func h2Load(t *testing.T, p h2Proto, tg h2Target, ty *h2Tally) {
	t.Helper()
	clients := make([]*http.Client, h2Clients)
	defer ty.count()
	for i := range clients {
		tr := p.transport(&ty.dials, ty.watch())
		t.Cleanup(tr.CloseIdleConnections)
		clients[i] = &http.Client{Transport: tr, Timeout: hang}
	}
	body := bytes.Repeat([]byte("x"), 512)
	deadline := time.Now().Add(h2RunBound)
	var warm sync.WaitGroup
	warm.Add(h2Workers)
	var wg sync.WaitGroup
	for w := range h2Workers {
		c := clients[w%h2Clients]
		wg.Go(func() {
			warmed := false
			for !closed(tg.stopped) && time.Now().Before(deadline) && ty.sent.Add(1) <= h2MaxReqs {
				began, startedInDrain := time.Now(), closed(tg.drain)
				err := h2Post(c, tg.url, body)
				if err == nil {
					ty.ok.Add(1)
					if !warmed {
						warmed = true
						warm.Done()
					}
					continue
				}
				if ty.record(err, closed(tg.drain), startedInDrain, began, time.Now()) == h2Refused {
					ty.refusedWorkers.Add(1)
					break
				}
			}
			if !warmed {
				warm.Done()
			}
		})
	}
	warm.Wait()
	tg.trigger()
	wg.Wait()
	if !closed(tg.stopped) && ty.refusedWorkers.Load() < h2Workers {
		t.Errorf("the load ended (sent %d, bound %d, %v) before the server stopped", ty.sent.Load(), h2MaxReqs, h2RunBound)
	}
}

// h2Lameduck serves h on a lifecycle with a hold of hold; its trigger
// ends Run's context. It returns the target and a wait for Run's result.
func h2Lameduck(t *testing.T, p h2Proto, h http.Handler, hold time.Duration) (h2Target, func() error) {
	l := newLifecycle(t, core.WithHold(hold), core.WithDrainTimeout(h2DrainBound))
	s := listen(t, l, h, p.server)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after start's cleanup, which ends Run
	r, cancel := start(t, l)
	var drainAt atomic.Pointer[time.Time]
	wg.Go(func() {
		select {
		case <-l.Reached(core.Draining):
			now := time.Now()
			drainAt.Store(&now)
		case <-r.done:
		}
	})
	return h2Target{
		url:     p.scheme + "://" + s.addr + "/post",
		trigger: cancel,
		holding: l.Reached(core.Holding),
		drain:   l.Reached(core.Draining),
		stopped: r.done,
		drainAt: func() time.Time {
			if at := drainAt.Load(); at != nil {
				return *at
			}
			return time.Time{}
		},
	}, func() error { return r.wait(t) }
}

// h2Plain serves h on a plain net/http server; its trigger serves a hold
// of hold and then calls Shutdown. It returns the target and a wait for
// Shutdown's result.
func h2Plain(t *testing.T, p h2Proto, h http.Handler, hold time.Duration) (h2Target, func() error) {
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	p.server(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		if p.tls {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()
	drain, stopped := make(chan struct{}), make(chan struct{})
	var drainAt time.Time
	var shutdownErr error
	var once sync.Once
	trigger := func() {
		once.Do(func() {
			go func() {
				defer close(stopped)
				if hold > 0 {
					timer := time.NewTimer(hold) // the hold itself
					<-timer.C
				}
				drainAt = time.Now()
				close(drain)
				ctx, cancel := context.WithTimeout(context.Background(), h2DrainBound)
				defer cancel()
				shutdownErr = srv.Shutdown(ctx)
				if err := <-served; !errors.Is(err, http.ErrServerClosed) {
					shutdownErr = errors.Join(shutdownErr, err)
				}
			}()
		})
	}
	t.Cleanup(func() {
		trigger()
		recv(t, stopped, "plain server stopped")
	})
	return h2Target{
			url: p.scheme + "://" + ln.Addr().String() + "/post", trigger: trigger, drain: drain, stopped: stopped,
			drainAt: func() time.Time {
				if closed(drain) {
					return drainAt
				}
				return time.Time{}
			},
		}, func() error {
			recv(t, stopped, "plain server stopped")
			return shutdownErr
		}
}

// TestH2NonReplayablePOSTs sends non-replayable POSTs (a body without
// GetBody, which no HTTP/2 client can resend once written) from 32
// concurrent workers over 4 HTTP/2 connections, in tight loops, through
// a 1 s hold and across the drain's start until the server has stopped,
// once against lameduck and once against a plain net/http server that
// serves the hold and then calls Shutdown, over h2c and over TLS
// (issue 14). Lameduck must refuse nothing, in the hold or at the drain;
// a dial refused once the listener has closed is not a loss (the client
// would go to another instance) and is counted apart, and so are the
// requests Go's client fails without sending them (see below).
func TestH2NonReplayablePOSTs(t *testing.T) {
	for _, p := range h2Protos(t) {
		t.Run(p.name, func(t *testing.T) {
			var plain, ld h2Tally
			var plainAt, ldAt time.Time
			t.Run("plain", func(t *testing.T) {
				tg, wait := h2Plain(t, p, h2Handler(&plain), h2Hold)
				h2Load(t, p, tg, &plain)
				if err := wait(); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
				plainAt = tg.drainAt()
			})
			t.Run("lameduck", func(t *testing.T) {
				tg, wait := h2Lameduck(t, p, h2Handler(&ld), h2Hold)
				h2Load(t, p, tg, &ld)
				if err := wait(); err != nil {
					t.Errorf("Run: got %v, want nil", err)
				}
				ldAt = tg.drainAt()
			})
			t.Logf("plain:    %s", plain.summary(plainAt))
			t.Logf("lameduck: %s", ld.summary(ldAt))
			if ph, _ := plain.lost(); ph != 0 {
				t.Errorf("plain lost %d in the hold: the harness is wrong", ph)
			}
			// Plain net/http's one-step GOAWAY names the highest stream
			// it has processed, not the highest the client has sent: the
			// streams in between are refused (0 to 30 a run). Lameduck's
			// graceful GOAWAY refuses none, in the hold or at the drain.
			h2Invariants(t, "lameduck", &ld)
			lh, lder := ld.refused()
			_, pd := plain.refused()
			if lh != 0 || lder != 0 {
				t.Errorf("lameduck refused %d non-replayable POSTs in the hold and %d at the drain, want 0; plain net/http %d at the drain", lh, lder, pd)
			}
			// Go's client may still fail a request it never sent, when a
			// GOAWAY (any, even one that refuses nothing) makes the
			// connection unusable while the request waits to open its
			// stream: it closes the body, and then cannot rewind it to
			// send it elsewhere (golang/go#62450; a body with GetBody is
			// resent). Over h2c the frames show that every stream the
			// client sent was answered.
			if p.name == "h2c" {
				if opened, ok := ld.opened.Load(), ld.ok.Load(); opened != ok {
					t.Errorf("lameduck: the client sent %d streams, %d were answered", opened, ok)
				}
			}
			t.Logf("refused at the drain: lameduck %d, plain net/http %d; failed unsent by the client (golang/go#62450): lameduck %d in the hold, %d at the drain; plain %d",
				lder, pd, ld.fail[0][h2Rewind], ld.fail[1][h2Rewind], plain.fail[0][h2Rewind]+plain.fail[1][h2Rewind])
		})
	}
}

// h2Burst is the number of streams TestH2StreamsOpenedAtGoAway opens
// together at the drain's start.
const h2Burst = 200

// h2BurstRounds is how many times it does so per server.
const h2BurstRounds = 5

// TestH2StreamsOpenedAtGoAway pins the race of the drain's GOAWAY: one
// HTTP/2 connection, opened in the hold (for plain net/http, before
// Shutdown) and idle since, and 200 non-replayable POSTs released
// together the moment the drain starts (Reached(Draining) closes; for
// plain net/http, as Shutdown is called), so that the client opens their
// streams in the round trip of the GOAWAY. Lameduck must lose none
// (plain net/http's figure is logged next to it); the client sends the
// streams it had not opened yet elsewhere, here a dial refused, not a
// loss.
func TestH2StreamsOpenedAtGoAway(t *testing.T) {
	for _, p := range h2Protos(t) {
		t.Run(p.name, func(t *testing.T) {
			var total [2]h2Tally
			for si, name := range []string{"plain", "lameduck"} {
				t.Run(name, func(t *testing.T) {
					for round := range h2BurstRounds {
						var ty h2Tally
						h := h2Handler(&ty)
						var tg h2Target
						var wait func() error
						var open func()
						var release func(gate chan struct{})
						if name == "plain" {
							tg, wait = h2Plain(t, p, h, 0)
							open = func() {}
							release = func(gate chan struct{}) { close(gate); tg.trigger() }
						} else {
							// The connection is opened in the hold, which
							// leaves it alone (one opened before the hold is
							// moved off it).
							tg, wait = h2Lameduck(t, p, h, 500*time.Millisecond)
							open = func() { tg.trigger(); <-tg.holding }
							release = func(gate chan struct{}) { <-tg.drain; close(gate) }
						}
						h2BurstRound(t, p, tg, open, release, &ty)
						if err := wait(); err != nil {
							t.Errorf("round %d: server: %v", round, err)
						}
						t.Logf("round %d: %s", round, ty.summary(time.Time{}))
						for _, g := range ty.goAways {
							t.Logf("round %d: %s", round, g)
						}
						total[si].ok.Add(ty.ok.Load())
						total[si].opened.Add(ty.opened.Load())
						total[si].handled.Add(ty.handled.Load())
						for d := range 2 {
							for k := range h2Kinds {
								total[si].fail[d][k] += ty.fail[d][k]
							}
						}
					}
				})
			}
			for si, name := range []string{"plain", "lameduck"} {
				f := total[si].fail[1]
				t.Logf("%s: %d rounds of %d streams: ok %d, handled %d, lost %d (goaway %d, rewind %d, other %d), refused dials %d",
					name, h2BurstRounds, h2Burst, total[si].ok.Load(), total[si].handled.Load(),
					f[h2GoAway]+f[h2Rewind]+f[h2Other], f[h2GoAway], f[h2Rewind], f[h2Other], f[h2Refused])
			}
			h2Invariants(t, "lameduck", &total[1])
			pg, lg := total[0].fail[1][h2GoAway], total[1].fail[1][h2GoAway]
			t.Logf("streams opened in the GOAWAY's round trip and refused: lameduck %d, plain net/http %d of %d each", lg, pg, h2BurstRounds*h2Burst)
			if lg != 0 {
				t.Errorf("lameduck refused %d streams opened in the GOAWAY's round trip, want 0", lg)
			}
			// A "rewind" failure is a request Go's client never sent: it
			// was waiting for its turn to open a stream when the GOAWAY
			// came (any GOAWAY, even one that refuses nothing), and the
			// client closed its body before failing over to a new
			// connection (golang/go#62450). Over h2c the client's frames
			// show it: every stream it opened was answered.
			if p.name == "h2c" {
				if opened, ok := total[1].opened.Load(), total[1].ok.Load(); opened != ok {
					t.Errorf("lameduck: the client opened %d streams, %d were answered", opened, ok)
				}
			}
		})
	}
}

// h2BurstRound calls open, opens one connection, then parks h2Burst POSTs
// on a gate that release closes as the drain starts.
func h2BurstRound(t *testing.T, p h2Proto, tg h2Target, open func(), release func(chan struct{}), ty *h2Tally) {
	t.Helper()
	tr := p.transport(&ty.dials, ty.watch())
	defer tr.CloseIdleConnections()
	defer ty.count()
	c := &http.Client{Transport: tr, Timeout: hang}
	body := bytes.Repeat([]byte("x"), 512)
	open()
	if err := h2Post(c, tg.url, body); err != nil {
		t.Fatalf("first POST: %v", err)
	}
	ty.ok.Add(1)
	gate := make(chan struct{})
	var ready, wg sync.WaitGroup
	ready.Add(h2Burst)
	for range h2Burst {
		wg.Go(func() {
			ready.Done()
			<-gate
			began := time.Now()
			if err := h2Post(c, tg.url, body); err != nil {
				ty.record(err, true, true, began, time.Now())
				return
			}
			ty.ok.Add(1)
		})
	}
	ready.Wait()
	release(gate)
	wg.Wait()
}

// h2Frames watches the HTTP/2 frames of a cleartext client connection:
// the highest stream the client has opened (HEADERS written) and, at each
// GOAWAY it reads, the GOAWAY's last-stream-id next to that highest.
type h2Frames struct {
	net.Conn
	w, r h2FrameParser

	mu      sync.Mutex
	opened  uint32   // highest stream id of a HEADERS frame written
	streams int64    // HEADERS frames written that opened a stream
	goAways []string // "last-stream-id L, client had opened up to N"
	preface int      // bytes of the client preface still to skip
}

func (c *h2Frames) Write(p []byte) (int, error) {
	c.mu.Lock()
	q := p
	if c.preface > 0 {
		n := min(c.preface, len(q))
		c.preface -= n
		q = q[n:]
	}
	c.w.feed(q, func(typ byte, stream uint32, _ []byte) {
		if typ == 0x1 && stream > c.opened {
			c.opened = stream
			c.streams++
		}
	})
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *h2Frames) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.r.feed(p[:n], func(typ byte, _ uint32, payload []byte) {
		if typ == 0x7 && len(payload) >= 8 {
			last := (uint32(payload[0])<<24 | uint32(payload[1])<<16 | uint32(payload[2])<<8 | uint32(payload[3])) & 0x7fffffff
			code := uint32(payload[4])<<24 | uint32(payload[5])<<16 | uint32(payload[6])<<8 | uint32(payload[7])
			c.goAways = append(c.goAways, fmt.Sprintf("GOAWAY code %d last-stream-id %d while the client had opened streams up to %d", code, last, c.opened))
		}
	})
	c.mu.Unlock()
	return n, err
}

// h2FrameParser splits a byte stream into HTTP/2 frames, keeping the
// payload of GOAWAY frames only.
type h2FrameParser struct {
	hdr     [9]byte
	nhdr    int
	left    int // payload bytes of the current frame still to come
	typ     byte
	stream  uint32
	payload []byte
}

func (f *h2FrameParser) feed(p []byte, frame func(typ byte, stream uint32, payload []byte)) {
	for len(p) > 0 {
		if f.nhdr < 9 {
			n := copy(f.hdr[f.nhdr:], p)
			f.nhdr += n
			p = p[n:]
			if f.nhdr < 9 {
				return
			}
			f.left = int(f.hdr[0])<<16 | int(f.hdr[1])<<8 | int(f.hdr[2])
			f.typ = f.hdr[3]
			f.stream = (uint32(f.hdr[5])<<24 | uint32(f.hdr[6])<<16 | uint32(f.hdr[7])<<8 | uint32(f.hdr[8])) & 0x7fffffff
			f.payload = f.payload[:0]
		}
		n := min(f.left, len(p))
		if f.typ == 0x7 {
			f.payload = append(f.payload, p[:n]...)
		}
		f.left -= n
		p = p[n:]
		if f.left == 0 {
			frame(f.typ, f.stream, f.payload)
			f.nhdr = 0
		}
	}
}
