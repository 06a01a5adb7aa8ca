package chiadapter_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/go-chi/chi/v5"

	"github.com/lameduck/lameduck/chiadapter"
	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/health"
)

// A chi service: the middleware tracks requests, Mount serves the health
// routes, and the *http.Server is bound to the lifecycle.
func Example() {
	lc, err := core.New(core.WithHold(0), core.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	h, err := health.New(lc, health.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	r := chi.NewRouter()
	r.Use(chiadapter.Middleware(lc))
	chiadapter.Mount(r, h)
	r.Get("/hello", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello") })

	srv := httptest.NewUnstartedServer(r)
	if err := lc.BindHTTP(srv.Config); err != nil {
		panic(err)
	}
	srv.Start()
	lc.MarkReady()

	for _, path := range []string{"/readyz", "/hello"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println(path, resp.StatusCode)
	}
	fmt.Println("shutdown:", lc.Shutdown(context.Background()))
	srv.Close()
	// Output:
	// /readyz 200
	// /hello 200
	// shutdown: <nil>
}
