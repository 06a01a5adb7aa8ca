// Command loadserver is the server process of the reliability tests: a
// lameduck service whose routes misbehave on purpose, so that the test
// process, which holds the clients, can measure and fault it from outside.
//
//   - /poll: a long poll, parked until the drain starts, then "done".
//     The -park'th parked poll logs "all parked".
//   - /big?mb=N: N MiB of body.
//   - /ignore: blocks forever, ignoring its context and the drain.
//   - /panic: panics.
//   - /metrics: untracked (a probe path); JSON with the in-flight count
//     and the memory statistics, after a GC with ?gc=1.
//
// The in-flight count is the lifecycle's, as its
// lameduck.requests.in_flight metric reports it. Once it listens, the
// server logs "msg=listening addr=HOST:PORT".
//
// Flags: -addr, -hold, -drain-timeout, -h2c (serve HTTP/2 cleartext as
// well as HTTP/1), -max-streams (HTTP/2 concurrent streams per
// connection) and -park. Exit status: 0 drained, 1 forced, 2 bad flags,
// 3 second signal, 4 cannot listen, 5 a server failed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/lameduck/lameduck/core"
)

// Stats is the JSON of /metrics.
type Stats struct {
	InFlight   int64  `json:"in_flight"`
	Parked     int64  `json:"parked"`
	Goroutines int    `json:"goroutines"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Sys        uint64 `json:"sys"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "`address` to listen on")
	hold := flag.Duration("hold", 0, "hold")
	drainTimeout := flag.Duration("drain-timeout", 10*time.Second, "drain timeout")
	h2c := flag.Bool("h2c", false, "serve HTTP/2 cleartext too")
	maxStreams := flag.Int("max-streams", 250, "HTTP/2 concurrent streams per connection")
	park := flag.Int64("park", 0, "log \"all parked\" when this many polls are parked")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	lc, err := core.New(core.WithHold(*hold), core.WithDrainTimeout(*drainTimeout), core.WithLogger(logger),
		core.WithMeterProvider(mp))
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadserver:", err)
		os.Exit(2)
	}
	var parked atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		if parked.Add(1) == *park {
			logger.Info("all parked", "n", *park, "in_flight", inFlight(reader))
		}
		select {
		case <-lc.Reached(core.Draining):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "done")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		mb, err := strconv.Atoi(r.URL.Query().Get("mb"))
		if err != nil || mb < 0 {
			http.Error(w, "bad mb", http.StatusBadRequest)
			return
		}
		chunk := []byte(strings.Repeat("x", 1<<20))
		for range mb {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/ignore", func(http.ResponseWriter, *http.Request) {
		logger.Info("ignoring")
		select {} // until the process exits
	})
	mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("loadserver: boom") })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("gc") {
			runtime.GC()
			runtime.GC()
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		_ = json.NewEncoder(w).Encode(Stats{
			InFlight: inFlight(reader), Parked: parked.Load(), Goroutines: runtime.NumGoroutine(),
			HeapInuse: m.HeapInuse, StackInuse: m.StackInuse, Sys: m.Sys,
		})
	})

	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // the panics are on purpose
	if *h2c {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
		srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: *maxStreams}
	}
	// /metrics is untracked: ListenHTTP serves it with mux, not counted.
	if err := lc.ListenHTTP(srv, nil); err != nil {
		fmt.Fprintln(os.Stderr, "loadserver:", err)
		os.Exit(4)
	}
	logger.Info("listening", "addr", srv.Addr)
	err = lc.Run(context.Background())
	var fe *core.ForcedError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.Is(err, core.ErrSecondSignal):
		os.Exit(3)
	case errors.As(err, &fe) && error(fe) == err:
		os.Exit(1)
	default:
		logger.Error("a server failed", "err", err)
		os.Exit(5)
	}
}

// inFlight returns the lifecycle's in-flight count from its metric.
func inFlight(reader *sdkmetric.ManualReader) int64 {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		return -1
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "lameduck.requests.in_flight" && len(s.DataPoints) > 0 {
				return s.DataPoints[0].Value
			}
		}
	}
	return -1
}
