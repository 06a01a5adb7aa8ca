package core_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/lameduck/lameduck/core"
)

func Example() {
	l, err := core.New(core.WithHold(0), core.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(l.Phase(), "ready:", l.Ready())
	l.MarkReady()
	fmt.Println(l.Phase(), "ready:", l.Ready())

	// A unit of work that is still running when the shutdown starts.
	if l.Begin() {
		go func() {
			<-l.Draining()
			fmt.Println(l.Phase(), "in flight:", l.InFlight())
			l.End()
		}()
	}
	err = l.Shutdown(context.Background())
	fmt.Println(l.Phase(), "err:", err)
	fmt.Println("Begin after the shutdown:", l.Begin())
	// Output:
	// starting ready: false
	// serving ready: true
	// draining in flight: 1
	// stopped err: <nil>
	// Begin after the shutdown: false
}

func ExampleNew() {
	_, err := core.New(
		core.WithHold(20*time.Second),
		core.WithDrainTimeout(15*time.Second),
		core.WithGracePeriod(30*time.Second), // terminationGracePeriodSeconds
	)
	fmt.Println(err)
	// Output:
	// lameduck: hold 20s + drain timeout 15s = 35s exceeds the grace period 30s
}

func ExampleLifecycle_Middleware() {
	l, err := core.New(core.WithHold(0), core.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	l.MarkReady()
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	serve := func(path string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		fmt.Printf("%s: %d %q Retry-After=%q\n", path, w.Code, w.Body.String(), w.Header().Get("Retry-After"))
	}
	serve("/work")
	if err := l.Shutdown(context.Background()); err != nil {
		fmt.Println(err)
	}
	serve("/work")    // refused: the drain has started
	serve("/healthz") // probes are never refused
	// Output:
	// /work: 200 "ok" Retry-After=""
	// /work: 503 "shutting down\n" Retry-After="1"
	// /healthz: 200 "ok" Retry-After=""
}

func ExampleLifecycle_BindHTTP() {
	l, err := core.New(core.WithHold(0), core.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewUnstartedServer(l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	if err := l.BindHTTP(srv.Config); err != nil {
		fmt.Println(err)
		return
	}
	srv.Start()
	defer srv.Close()
	l.MarkReady()

	resp, err := http.Get(srv.URL + "/work")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))

	// Run would wait for SIGTERM; here the shutdown starts at once.
	fmt.Println("shutdown:", l.Shutdown(context.Background()))
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// 200 ok
	// shutdown: <nil>
}
