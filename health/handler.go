package health

import (
	"net/http"
	"strconv"
	"strings"
)

// ServeHTTP serves the probe paths:
//
//   - /healthz and /livez: every liveness check, which pass in every phase
//     of the lifecycle;
//   - /readyz: the built-in "shutdown" check and every readiness check;
//   - /readyz/shutdown and /readyz/<name> for each readiness check, and
//     /healthz/ping, /livez/ping, /healthz/<name> and /livez/<name> for
//     each liveness check: that check alone.
//
// Any other path is 404, and a method other than GET and HEAD is 405.
// Serve it through [core.Lifecycle.ListenHTTP], which routes these paths
// here whatever the service's router does, and never tracks nor refuses
// them.
func (h *Health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := h.routes[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	p.ServeHTTP(w, r)
}

func (h *Health) buildRoutes() {
	h.routes = map[string]*probeHandler{
		"/healthz": {h: h, kind: "liveness", word: "healthz", checks: h.liveness},
		"/livez":   {h: h, kind: "liveness", word: "livez", checks: h.liveness},
		"/readyz":  {h: h, kind: "readiness", word: "readyz", checks: h.readiness},
	}
	for _, c := range h.readiness {
		h.routes["/readyz/"+c.name] = &probeHandler{h: h, kind: "readiness", word: "readyz", checks: []*check{c}, single: true}
	}
	for _, word := range []string{"healthz", "livez"} {
		for _, c := range h.liveness {
			h.routes["/"+word+"/"+c.name] = &probeHandler{h: h, kind: "liveness", word: word, checks: []*check{c}, single: true}
		}
	}
}

// probeHandler serves one probe path. See the package doc for the
// responses.
type probeHandler struct {
	h      *Health
	kind   string // "readiness" or "liveness", for the log
	word   string // "readyz", "healthz" or "livez": the verbose listing's last line
	checks []*check
	single bool // a per-check path: exclude does not apply
}

// allowedMethods is the Allow header of a 405.
const allowedMethods = "GET, HEAD"

func (p *probeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", allowedMethods)
		write(w, r, http.StatusMethodNotAllowed, "method not allowed\n")
		return
	}
	q := r.URL.Query()
	_, verbose := q["verbose"]
	var exclude map[string]bool
	if !p.single {
		exclude = p.h.excludeSet(p.kind, p.checks, q["exclude"])
	}
	out := p.h.run(r.Context(), p.kind, p.checks, exclude)

	failed := false
	for _, o := range out {
		failed = failed || o.Err != nil
	}
	status := http.StatusOK
	if failed {
		status = http.StatusServiceUnavailable
	}
	if !verbose && !failed {
		write(w, r, status, "ok")
		return
	}
	// The Kubernetes apiserver's format. A failure is always detailed,
	// but only with names: reasons go to the log.
	var b strings.Builder
	for _, o := range out {
		switch {
		case o.excluded:
			b.WriteString("[+]" + o.Name + " excluded: ok\n")
		case o.Err != nil:
			b.WriteString("[-]" + o.Name + " failed: reason withheld\n")
		default:
			b.WriteString("[+]" + o.Name + " ok\n")
		}
	}
	b.WriteString(p.word)
	if failed {
		b.WriteString(" check failed\n")
	} else {
		b.WriteString(" check passed\n")
	}
	write(w, r, status, b.String())
}

// write sends status and body; a HEAD request gets the headers only.
func write(w http.ResponseWriter, r *http.Request, status int, body string) {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body)) // the prober may be gone: nothing to do
	}
}
