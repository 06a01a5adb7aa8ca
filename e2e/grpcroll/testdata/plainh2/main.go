// Command plainh2 is the baseline of TestH2CRollingRestart: plain
// net/http serving HTTP/1.1 and h2c, with no lameduck. On SIGTERM its
// /readyz fails and it keeps serving for -hold, then calls Shutdown
// (net/http's graceful GOAWAY for HTTP/2) and exits 0 once drained. It
// takes the example contract's -drain-timeout and -grace too.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address")
	hold := flag.Duration("hold", 0, "serve this long after SIGTERM")
	drain := flag.Duration("drain-timeout", 5*time.Second, "Shutdown's timeout")
	flag.Duration("grace", 0, "ignored")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var stopping atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if stopping.Load() {
			http.Error(w, "stopping", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 || ms > 60000 {
			http.Error(w, "bad ms", http.StatusBadRequest)
			return
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	log.Info("listening", "addr", ln.Addr().String())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		stopping.Store(true)
		time.Sleep(*hold)
		ctx, cancel := context.WithTimeout(context.Background(), *drain)
		defer cancel()
		err := srv.Shutdown(ctx)
		log.Info("stopped", "drained", err == nil)
		os.Exit(0)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	select {} // main's goroutine waits for the exit
}
