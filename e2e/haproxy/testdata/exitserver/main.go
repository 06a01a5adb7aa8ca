// Command exitserver is the control of the HAProxy end-to-end test: a
// server with the routes of the example contract that exits the moment it
// gets SIGTERM, as a service without graceful shutdown does. Requests in
// flight are cut off and connections routed to it are refused, so a test
// that cannot see those failures would be caught by this control.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "`address` to listen on")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	mux.HandleFunc("/work", work)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "exitserver:", err)
		os.Exit(4)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		s := <-sigs
		logger.Info("exiting at once", "signal", s.String())
		os.Exit(0)
	}()
	logger.Info("listening", "addr", ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "exitserver:", err)
		os.Exit(4)
	}
}

// work serves GET|POST /work?ms=N like the examples: it waits N ms and
// answers 200 "ok".
func work(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	n, err := strconv.Atoi(r.URL.Query().Get("ms"))
	if err != nil || n < 0 {
		http.Error(w, "bad ms", http.StatusBadRequest)
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	time.Sleep(time.Duration(n) * time.Millisecond)
	_, _ = io.WriteString(w, "ok\n")
}
