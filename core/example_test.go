package core_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/lameduck/lameduck/core"
)

// A service in a few lines: ListenHTTP listens at once, Run serves, marks
// the service ready once it catches signals, and shuts down on SIGTERM.
// Here the shutdown comes from Shutdown, and the service has no hold.
func Example() {
	lc, err := core.New(core.WithHold(0), core.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := lc.ListenHTTP(srv, nil); err != nil {
		fmt.Println(err) // a port in use, say
		return
	}
	go func() {
		<-lc.Reached(core.Serving)
		resp, err := http.Get("http://" + srv.Addr + "/work")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Printf("%s", body)
		}
		lc.Shutdown(context.Background())
	}()
	err = lc.Run(context.Background())
	fmt.Println(lc.Phase(), "err:", err)
	// Output:
	// ok
	// stopped err: <nil>
}

func ExampleNew() {
	_, err := core.New(
		core.WithHold(15*time.Second),
		core.WithDrainTimeout(15*time.Second),
		core.WithGracePeriod(30*time.Second), // terminationGracePeriodSeconds
	)
	fmt.Println(err)
	// Output:
	// lameduck: hold 15s + drain timeout 15s + margin 3s = 33s exceeds the grace period 30s (the margin is max(2s, 10% of grace))
}

func ExampleCheckBudget() {
	fmt.Println(core.CheckBudget(30*time.Second, 10*time.Second, 15*time.Second))
	fmt.Println(core.CheckBudget(30*time.Second, 10*time.Second, 18*time.Second))
	// Output:
	// <nil>
	// lameduck: hold 10s + drain timeout 18s + margin 3s = 31s exceeds the grace period 30s (the margin is max(2s, 10% of grace))
}

// Long-lived work, such as a stream, ends when the drain starts; tracked
// work that is still running makes the drain wait.
func ExampleLifecycle_Reached() {
	lc, err := core.New(core.WithHold(0), core.WithSignals(), core.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-lc.Reached(core.Serving)
		if lc.Begin() {
			go func() {
				defer lc.End()
				<-lc.Reached(core.Draining) // the stream's last event
				fmt.Println("stream ends in", lc.Phase())
			}()
		}
		cancel() // as a signal would
	}()
	fmt.Println("err:", lc.Run(ctx))
	// Output:
	// stream ends in draining
	// err: <nil>
}

func ExampleLifecycle_Force() {
	lc, err := core.New(core.WithHold(time.Hour), core.WithSignals(), core.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() {
		<-lc.Reached(core.Serving)
		// Shutdown's ctx bounds the wait, not the hour-long hold.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		fmt.Println("Shutdown:", lc.Shutdown(ctx), "phase:", lc.Phase())
		lc.Force(errors.New("deploy aborted"))
	}()
	err = lc.Run(context.Background())
	var fe *core.ForcedError
	fmt.Println("Run:", errors.As(err, &fe), fe.Cause, fe.Abandoned)
	// Output:
	// Shutdown: context deadline exceeded phase: holding
	// Run: true deploy aborted 0
}
