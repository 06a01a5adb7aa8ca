package core

import (
	"context"
	"io"
	"net/http"
)

// PreStopHandler returns a handler for a Kubernetes preStop httpGet hook.
// A request starts the shutdown sequence with the trigger "prestop" and
// is answered 200 when the hold is over, so the kubelet sends SIGTERM only
// then; the SIGTERM joins the running sequence (see [Lifecycle.Run]) and
// does not hold again. Images without a sleep binary need nothing else.
//
// Anyone who can reach this handler can take the service down: serve it
// on a separate listener that only the kubelet reaches (an admin port
// that no Service exposes), never on the public router.
func (l *Lifecycle) PreStopHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.start("prestop")
		select {
		case <-l.reached[Draining]:
		case <-r.Context().Done():
			l.log.Warn("lameduck: preStop caller gave up before the hold ended; the shutdown goes on",
				"err", context.Cause(r.Context()))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
}
