package reliability_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/internal/testutil"
)

// loadserverStats is the JSON of the loadserver's /metrics.
type loadserverStats struct {
	InFlight   int64  `json:"in_flight"`
	Parked     int64  `json:"parked"`
	Goroutines int    `json:"goroutines"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Sys        uint64 `json:"sys"`
}

func metrics(t *testing.T, c *http.Client, base string) loadserverStats {
	t.Helper()
	r := testutil.Do(c, http.MethodGet, base+"/metrics?gc=1")
	if r.Err != nil || r.Status != http.StatusOK {
		t.Fatalf("GET /metrics: got %d %v", r.Status, r.Err)
	}
	var s loadserverStats
	if err := json.Unmarshal([]byte(r.Body), &s); err != nil {
		t.Fatalf("GET /metrics: %v in %q", err, r.Body)
	}
	return s
}

// TestScaleLongPolls parks 10,000 long polls in a server process over
// HTTP/2 cleartext (a loopback connection costs two file descriptors in
// one process, so the streams are multiplexed and the server runs in its
// own process), checks that the lifecycle tracks all of them, measures
// the server's memory per tracked request, sends SIGTERM and checks that
// every client gets its complete answer, the count drains to zero and
// the process exits 0 (drained, not forced).
//
// Under the race detector the test parks 2,000 polls instead: with
// 10,000, on two loaded cores, the client's HTTP/2 read loops can fall
// more than a second behind the server, and net/http's HTTP/2 server
// closes a connection a second after its last frame is written
// (goAwayTimeout); a Go client that then fails to write a window update
// closes the connection with the unread answers still in its socket.
// That is net/http's behaviour, not the lifecycle's, and the 10,000 run
// without the race detector is the figure.
func TestScaleLongPolls(t *testing.T) {
	n := 10000
	if raceEnabled {
		n = 2000
	}
	bin := testutil.BuildBinary(t, "./e2e/reliability/testdata/loadserver")
	p := testutil.Start(t, bin, processEnv, "-addr", "127.0.0.1:0", "-h2c", "-max-streams", fmt.Sprint(n),
		"-park", fmt.Sprint(n), "-drain-timeout", "25s")
	base := "http://" + p.Addr(hang)
	p.WaitLog("lameduck: serving", hang)

	plain := testutil.NewClient(t) // HTTP/1, for /metrics: its own connection
	before := metrics(t, plain, base)

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: time.Minute}

	start := time.Now()
	type answer struct {
		res testutil.Response
		at  time.Time
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := testutil.Do(c, http.MethodGet, base+"/poll")
			answers[i] = answer{r, time.Now()}
		})
	}
	p.WaitLog("all parked", time.Minute)
	parkedIn := time.Since(start)
	after := metrics(t, plain, base)
	if after.InFlight != int64(n) {
		t.Fatalf("in flight with %d polls parked: got %d, want %d", n, after.InFlight, n)
	}
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	stack := int64(after.StackInuse) - int64(before.StackInuse)
	sys := int64(after.Sys) - int64(before.Sys)
	t.Logf("%d long polls parked over h2c in %v (race=%v); server goroutines %d → %d",
		n, parkedIn.Round(time.Millisecond), raceEnabled, before.Goroutines, after.Goroutines)
	per := func(b int64) float64 { return float64(b) / float64(n) / 1024 }
	t.Logf("server memory per tracked request: heap %.1f KiB + stack %.1f KiB = %.1f KiB (Sys %.1f KiB)",
		per(heap), per(stack), per(heap+stack), per(sys))

	sigterm := time.Now()
	p.Signal(syscall.SIGTERM)
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	recv(t, waited, "every long poll answered")
	var last time.Time
	for i, a := range answers {
		if a.res.Err != nil || a.res.Status != http.StatusOK || a.res.Body != "done" {
			t.Fatalf("poll %d: got %d %q %v, want 200 \"done\"", i, a.res.Status, a.res.Body, a.res.Err)
		}
		if a.at.After(last) {
			last = a.at
		}
	}
	if code := p.Wait(hang); code != 0 {
		t.Fatalf("exit status: got %d, want 0 (drained)", code)
	}
	exited := time.Since(sigterm)
	stderr := p.Stderr()
	if !strings.Contains(stderr, "in_flight="+fmt.Sprint(n)) || !strings.Contains(stderr, "drained=true") {
		t.Errorf("log: want the drain to start with in_flight=%d and end drained=true; got:\n%s", n, stderr)
	}
	t.Logf("SIGTERM → last of %d answers %v, → exit 0 %v", n, last.Sub(sigterm).Round(time.Millisecond),
		exited.Round(time.Millisecond))
}

// TestSSEStreamsEndAtDrain opens 1,000 server-sent event streams, each on
// its own HTTP/1 connection, whose handlers end when the drain starts,
// and checks that every client sees its stream's last event and end
// within 100 ms of the drain signal (1 s under the race detector, which
// slows each of the 2,000 goroutine wake-ups), that nothing was cut off
// and that the drain finished by itself.
func TestSSEStreamsEndAtDrain(t *testing.T) {
	const n = 1000
	bound := 100 * time.Millisecond
	if raceEnabled {
		bound = time.Second
	}
	l := newLifecycle(t, core.WithHold(0), core.WithDrainTimeout(hang))
	s := listen(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: hello\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-l.Reached(core.Draining):
			_, _ = io.WriteString(w, "event: bye\ndata: draining\n\n")
		case <-r.Context().Done():
		}
	}), nil)
	start(t, l)

	type stream struct {
		end  time.Time
		tail string
		err  error
	}
	streams := make([]stream, n)
	var opened, wg sync.WaitGroup
	var failedOpen atomic.Int32
	opened.Add(n)
	for i := range n {
		wg.Go(func() {
			st := &streams[i]
			once := sync.OnceFunc(opened.Done)
			defer once()
			conn, err := net.Dial("tcp", s.addr)
			if err != nil {
				st.err = err
				failedOpen.Add(1)
				return
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))
			if _, err := io.WriteString(conn, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				st.err = err
				failedOpen.Add(1)
				return
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				st.err = err
				failedOpen.Add(1)
				return
			}
			defer resp.Body.Close()
			first := make([]byte, len("data: hello\n\n"))
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				st.err = fmt.Errorf("first event: %w", err)
				failedOpen.Add(1)
				return
			}
			once()
			rest, err := io.ReadAll(resp.Body) // until the last chunk
			st.end, st.tail, st.err = time.Now(), string(rest), err
		})
	}
	opened.Wait()
	if f := failedOpen.Load(); f > 0 {
		wg.Wait()
		for _, st := range streams {
			if st.err != nil {
				t.Fatalf("%d of %d streams failed to open; first: %v", f, n, st.err)
			}
		}
	}
	if got := l.InFlight(); got != n {
		t.Fatalf("in flight with %d streams open: got %d, want %d", n, got, n)
	}
	// The hold is 0, so the drain starts right after this instant: the
	// latencies are measured from a moment at or before the drain signal.
	drainAt := time.Now()
	res := shutdownAsync(t.Context(), l)
	recv(t, l.Reached(core.Draining), "Reached(Draining)")
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	recv(t, done, "every stream ended")
	if err := recv(t, res, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: got %v, want nil (every stream ended by itself)", err)
	}
	shutdownIn := time.Since(drainAt)
	lat := make([]time.Duration, n)
	for i, st := range streams {
		if st.err != nil || st.tail != "event: bye\ndata: draining\n\n" {
			t.Fatalf("stream %d: got tail %q, err %v; want the bye event and a clean end", i, st.tail, st.err)
		}
		lat[i] = st.end.Sub(drainAt)
	}
	p50, p99, max := quantiles(lat)
	t.Logf("%d SSE streams, drain signal → client sees the end: p50 %v, p99 %v, max %v; Shutdown returned after %v (race=%v)",
		n, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), max.Round(100*time.Microsecond),
		shutdownIn.Round(time.Millisecond), raceEnabled)
	if max > bound {
		t.Errorf("slowest stream ended %v after the drain signal, want at most %v", max, bound)
	}
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight after the drain: got %d, want 0", got)
	}
}
