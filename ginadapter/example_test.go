package ginadapter_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/lameduck/lameduck/core"
	"github.com/lameduck/lameduck/ginadapter"
	"github.com/lameduck/lameduck/health"
)

// A gin service: Listen serves the engine and the probes through the
// lifecycle, which tracks every request; Run serves until SIGTERM, then
// holds and drains. Never call engine.Run, which cannot be shut down.
func Example() {
	lc, err := core.New(core.WithHold(10*time.Second), core.WithDrainTimeout(15*time.Second),
		core.WithGracePeriod(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	h, err := health.New(lc, health.WithReadinessChecks(health.NamedCheck("db", func(ctx context.Context) error {
		return nil // e.g. db.PingContext(ctx)
	})))
	if err != nil {
		log.Fatal(err)
	}

	gin.SetMode(gin.ReleaseMode) // gin's debug output goes to stdout
	engine := gin.New()
	engine.Use(gin.Recovery())
	engine.GET("/work", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	api := engine.Group("/api") // groups under a prefix need nothing special
	api.GET("/items", func(c *gin.Context) { c.JSON(http.StatusOK, []string{}) })

	addr, err := ginadapter.Listen(lc, ":8080", engine, h) // a port in use fails here, before anything is ready
	if err != nil {
		log.Fatal(err)
	}
	log.Print("listening on ", addr)
	if err := lc.Run(context.Background()); err != nil { // SIGTERM: hold, drain
		log.Print(err) // *core.ForcedError: work was abandoned
		os.Exit(1)
	}
}
