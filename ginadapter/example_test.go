package ginadapter_test

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/ginadapter"
	"github.com/lameduck/lameduck/health"
)

// Example wires the middleware and the health routes into a gin engine
// served by an *http.Server bound to the lifecycle (never engine.Run,
// which cannot be shut down).
func Example() {
	lc, err := core.New(core.WithHold(10*time.Second), core.WithDrainTimeout(15*time.Second),
		core.WithGracePeriod(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	h, err := health.New(lc)
	if err != nil {
		log.Fatal(err)
	}

	gin.SetMode(gin.ReleaseMode) // gin's debug output goes to stdout
	engine := gin.New()
	engine.Use(gin.Recovery(), ginadapter.Middleware(lc))
	ginadapter.Mount(engine, h)
	engine.GET("/work", func(c *gin.Context) { c.String(http.StatusOK, "ok") })

	srv := &http.Server{Addr: ":8080", Handler: engine, ReadHeaderTimeout: 10 * time.Second}
	if err := lc.BindHTTP(srv); err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	lc.MarkReady()
	if err := lc.Run(context.Background()); err != nil { // SIGTERM: hold, drain
		log.Print(err) // *core.ForcedError: work was abandoned
		os.Exit(1)
	}
}
