package grpcroll_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	workMethod  = "/lameduck.demo.Demo/Work"
	ticksMethod = "/lameduck.demo.Demo/Ticks"
)

// loadConfig configures startLoad.
type loadConfig struct {
	conns       []*grpc.ClientConn // worker i uses conns[i%len(conns)]
	workers     int                // concurrent unary callers
	rate        float64            // RPCs per second, all workers together
	shortMS     uint32             // half of the RPCs are Work(shortMS)…
	longMS      uint32             // …and half Work(longMS)
	tickMS      uint32             // interval of the Ticks streams, one per conn
	seed        uint64
	maxDuration time.Duration // the load stops by itself after this long
	maxRPCs     int64         // and after this many unary RPCs
	rpcTimeout  time.Duration
}

// rpcFailure is one failed unary RPC or stream.
type rpcFailure struct {
	worker int
	conn   int
	what   string // "Work(5)", "Ticks"
	start  time.Time
	at     time.Time
	code   codes.Code
	msg    string
}

// load is paced unary load plus one long-lived server stream per conn.
//
// Each unary worker calls Work on its schedule, interval = workers/rate
// apart (an RPC that takes longer delays the next one; a worker never
// bursts to catch up), with grpc-go's defaults: no retry policy, no
// wait-for-ready. Any error is a failure.
//
// Each stream worker keeps a Ticks stream open. A stream that ends with
// codes.Unavailable (the drain ends open streams with it, and a transport
// that goes away does too) is reopened at once and counts as moved, not
// failed; any other end is a failure. A worker that opens maxEmptyOpens
// streams in a row without receiving a tick fails too.
type load struct {
	cfg   loadConfig
	start time.Time
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	ctx   context.Context
	done  context.CancelFunc

	sent, ok atomic.Int64
	okCh     chan struct{}

	// streams
	opens, moved, emptyEnds, ticks atomic.Int64
	lastTick                       []atomic.Int64 // unix nanos of each stream worker's last tick

	mu       sync.Mutex
	failures []rpcFailure
	byKind   map[string]int64
	streamF  int64 // stream failures
}

const (
	maxFailuresKept = 20
	maxEmptyOpens   = 50
)

func startLoad(cfg loadConfig) *load {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.maxDuration)
	l := &load{cfg: cfg, start: time.Now(), stop: make(chan struct{}), okCh: make(chan struct{}, 1),
		byKind: map[string]int64{}, ctx: ctx, done: cancel, lastTick: make([]atomic.Int64, len(cfg.conns))}
	interval := time.Duration(float64(time.Second) * float64(cfg.workers) / cfg.rate)
	for w := range cfg.workers {
		first := l.start.Add(time.Duration(w) * interval / time.Duration(cfg.workers))
		l.wg.Go(func() { l.unary(w, first, interval) })
	}
	if cfg.tickMS > 0 {
		for c := range cfg.conns {
			l.wg.Go(func() { l.stream(c) })
		}
	}
	l.wg.Go(func() {
		select {
		case <-ctx.Done():
			l.once.Do(func() { close(l.stop) })
		case <-l.stop:
		}
	})
	return l
}

func (l *load) stopping() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *load) unary(w int, next time.Time, interval time.Duration) {
	rng := rand.New(rand.NewPCG(l.cfg.seed, uint64(w)))
	ci := w % len(l.cfg.conns)
	conn := l.cfg.conns[ci]
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-timer.C:
		}
		if l.sent.Add(1) > l.cfg.maxRPCs {
			l.sent.Add(-1)
			return
		}
		ms := l.cfg.shortMS
		if rng.IntN(2) == 0 {
			ms = l.cfg.longMS
		}
		start := time.Now()
		// Not the load's context: an RPC in flight when the load stops
		// is finished, not cancelled.
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.rpcTimeout)
		out := new(wrapperspb.StringValue)
		err := conn.Invoke(ctx, workMethod, wrapperspb.UInt32(ms), out)
		cancel()
		switch {
		case err != nil:
			s := status.Convert(err)
			l.fail(rpcFailure{worker: w, conn: ci, what: fmt.Sprintf("Work(%d)", ms), start: start, code: s.Code(), msg: s.Message()})
		case out.GetValue() != "ok":
			l.fail(rpcFailure{worker: w, conn: ci, what: fmt.Sprintf("Work(%d)", ms), start: start, code: codes.Unknown, msg: "answer " + out.GetValue()})
		default:
			l.ok.Add(1)
			select {
			case l.okCh <- struct{}{}:
			default:
			}
		}
		next = next.Add(interval)
		if now := time.Now(); next.Before(now) {
			next = now // late: no burst to catch up
		}
		timer.Reset(time.Until(next))
	}
}

// stream keeps a Ticks stream open on conns[c] until the load stops.
func (l *load) stream(c int) {
	conn := l.cfg.conns[c]
	empty := 0
	for !l.stopping() {
		start := time.Now()
		l.opens.Add(1)
		got, err := l.oneStream(conn, c)
		switch {
		case l.stopping() || l.ctx.Err() != nil:
			return
		case status.Code(err) == codes.Unavailable && got > 0:
			l.moved.Add(1)
			empty = 0
		case status.Code(err) == codes.Unavailable:
			l.emptyEnds.Add(1)
			if empty++; empty < maxEmptyOpens {
				time.Sleep(10 * time.Millisecond) // the load's duration bounds the loop
				continue
			}
			s := status.Convert(err)
			l.failStream(rpcFailure{worker: -1, conn: c, what: "Ticks", start: start,
				code: s.Code(), msg: fmt.Sprintf("%d streams in a row ended before their first tick; last: %s", empty, s.Message())})
			return
		default:
			s := status.Convert(err)
			l.failStream(rpcFailure{worker: -1, conn: c, what: "Ticks", start: start, code: s.Code(), msg: s.Message()})
			time.Sleep(50 * time.Millisecond) // bounded: the load's duration bounds the loop
		}
	}
}

// oneStream opens one Ticks stream and receives until it ends; it returns
// the ticks received and the error that ended it.
func (l *load) oneStream(conn *grpc.ClientConn, c int) (int, error) {
	st, err := conn.NewStream(l.ctx, &grpc.StreamDesc{ServerStreams: true}, ticksMethod)
	if err != nil {
		return 0, err
	}
	if err := st.SendMsg(wrapperspb.UInt32(l.cfg.tickMS)); err != nil {
		// The status is in RecvMsg.
		return 0, st.RecvMsg(new(wrapperspb.UInt32Value))
	}
	if err := st.CloseSend(); err != nil {
		return 0, err
	}
	got := 0
	var last uint32
	for {
		m := new(wrapperspb.UInt32Value)
		if err := st.RecvMsg(m); err != nil {
			return got, err
		}
		if m.GetValue() != last+1 {
			return got, status.Errorf(codes.DataLoss, "tick %d after %d", m.GetValue(), last)
		}
		last = m.GetValue()
		got++
		l.ticks.Add(1)
		l.lastTick[c].Store(time.Now().UnixNano())
	}
}

func (l *load) fail(f rpcFailure) {
	f.at = time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byKind[f.code.String()+": "+f.msg]++
	if len(l.failures) < maxFailuresKept || (strings.HasPrefix(f.msg, "lameduck") && len(l.failures) < 2*maxFailuresKept) {
		l.failures = append(l.failures, f)
	}
}

func (l *load) failStream(f rpcFailure) {
	f.at = time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.streamF++
	if len(l.failures) < maxFailuresKept {
		l.failures = append(l.failures, f)
	}
}

// failedSoFar counts the failed RPCs and streams so far.
func (l *load) failedSoFar() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.streamF
	for _, c := range l.byKind {
		n += c
	}
	return n
}

// waitOK waits until n unary RPCs have succeeded or the timeout.
func (l *load) waitOK(n int64, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for l.ok.Load() < n {
		select {
		case <-l.okCh:
		case <-l.stop:
			return l.ok.Load() >= n
		case <-deadline.C:
			return false
		}
	}
	return true
}

// waitTicks waits until every stream worker has received a tick after t.
func (l *load) waitTicks(t time.Time, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		all := true
		for i := range l.lastTick {
			if l.lastTick[i].Load() <= t.UnixNano() {
				all = false
			}
		}
		if all {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// result is what a load saw.
type result struct {
	rpcs, ok, failed int64
	byKind           map[string]int64
	first            []rpcFailure
	opens, moved     int64 // streams opened; streams the drain ended and the client reopened
	emptyEnds        int64 // streams that ended with Unavailable before their first tick
	ticks            int64
	streamFailed     int64
	duration         time.Duration
}

func (r result) String() string {
	kinds := make([]string, 0, len(r.byKind))
	for k, n := range r.byKind {
		kinds = append(kinds, fmt.Sprintf("%q: %d", k, n))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d RPCs in %v: %d ok, %d failed {%s}; streams: %d opened, %d ended by a drain and reopened, %d ended before a tick, %d ticks, %d failed",
		r.rpcs, r.duration.Round(time.Millisecond), r.ok, r.failed, strings.Join(kinds, ", "),
		r.opens, r.moved, r.emptyEnds, r.ticks, r.streamFailed)
}

// finish stops the load, waits for the RPCs in flight and returns the
// result.
func (l *load) finish() result {
	l.once.Do(func() { close(l.stop) })
	l.done() // ends the streams
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	var failed int64
	kinds := map[string]int64{}
	for k, n := range l.byKind {
		kinds[k] = n
		failed += n
	}
	return result{rpcs: l.sent.Load(), ok: l.ok.Load(), failed: failed, byKind: kinds,
		first: append([]rpcFailure(nil), l.failures...),
		opens: l.opens.Load(), moved: l.moved.Load(), emptyEnds: l.emptyEnds.Load(), ticks: l.ticks.Load(),
		streamFailed: l.streamF, duration: time.Since(l.start)}
}

func (f rpcFailure) rel(t0 time.Time) string {
	return fmt.Sprintf("%s conn=%d worker=%d sent=+%dms failed=+%dms (%s): %v: %s",
		f.what, f.conn, f.worker, f.start.Sub(t0).Milliseconds(), f.at.Sub(t0).Milliseconds(), f.at.UTC().Format("15:04:05.000"), f.code, f.msg)
}
