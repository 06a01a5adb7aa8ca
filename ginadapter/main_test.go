package ginadapter_test

import (
	"testing"

	"github.com/gin-gonic/gin"
	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind. It puts gin in
// its test mode first: gin picks its mode in an init function, before the
// testing flags exist, so it would otherwise print debug lines to stdout.
func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	goleak.VerifyTestMain(m)
}
