package health

import (
	"net/http"
	"strconv"
	"strings"
)

// Route is one path served by a [Health] and its handler. Pattern is a
// plain path, with no method and no wildcard, valid for
// [http.ServeMux], chi and gin alike.
type Route struct {
	Pattern string
	Handler http.Handler
}

// Mux is what [Health.Install] registers on: [*http.ServeMux] and
// chi.Router satisfy it.
type Mux interface {
	Handle(pattern string, handler http.Handler)
}

// LivenessHandler returns the handler of /healthz and /livez: all the
// liveness checks, which pass in every phase of the lifecycle. The last
// line of its verbose output says "livez" when the request path ends in
// "/livez", otherwise "healthz"; nothing else depends on the path.
func (h *Health) LivenessHandler() http.Handler { return h.liveH }

// ReadinessHandler returns the handler of /readyz: the [ShutdownCheck]
// and all the readiness checks. The paths of single checks are in
// [Health.Routes].
func (h *Health) ReadinessHandler() http.Handler { return h.readyH }

// Routes lists every path served and its handler, for routers that
// [Health.Install] cannot take (gin):
//
//   - "/healthz" and "/livez": liveness;
//   - "/readyz": readiness;
//   - "/readyz/shutdown" and "/readyz/<name>" for each readiness check;
//   - "/healthz/ping", "/livez/ping", "/healthz/<name>" and
//     "/livez/<name>" for each liveness check.
//
// Each handler is bound to its checks: it never reads the check name from
// the request path, so it works wherever a router mounts it. Routes
// returns a new slice on each call.
func (h *Health) Routes() []Route { return append([]Route(nil), h.routes...) }

// Install registers every route of [Health.Routes] on m.
func (h *Health) Install(m Mux) {
	if m == nil {
		panic("health: Install with a nil Mux")
	}
	for _, r := range h.routes {
		m.Handle(r.Pattern, r.Handler)
	}
}

func (h *Health) buildRoutes() {
	h.readyH = &probeHandler{h: h, kind: "readiness", word: "readyz", checks: h.readiness}
	h.liveH = &probeHandler{h: h, kind: "liveness", checks: h.liveness}
	h.routes = []Route{
		{"/healthz", &probeHandler{h: h, kind: "liveness", word: "healthz", checks: h.liveness}},
		{"/livez", &probeHandler{h: h, kind: "liveness", word: "livez", checks: h.liveness}},
		{"/readyz", h.readyH},
	}
	for _, c := range h.readiness {
		h.routes = append(h.routes, Route{"/readyz/" + c.name,
			&probeHandler{h: h, kind: "readiness", word: "readyz", checks: []*check{c}, single: true}})
	}
	for _, word := range []string{"healthz", "livez"} {
		for _, c := range h.liveness {
			h.routes = append(h.routes, Route{"/" + word + "/" + c.name,
				&probeHandler{h: h, kind: "liveness", word: word, checks: []*check{c}, single: true}})
		}
	}
}

// probeHandler serves one probe path. See the package doc for the
// responses.
type probeHandler struct {
	h      *Health
	kind   string // "readiness" or "liveness", for the log
	word   string // "readyz", "healthz", "livez"; "" picks healthz or livez by path
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
	b.WriteString(p.wordFor(r))
	if failed {
		b.WriteString(" check failed\n")
	} else {
		b.WriteString(" check passed\n")
	}
	write(w, r, status, b.String())
}

func (p *probeHandler) wordFor(r *http.Request) string {
	if p.word != "" {
		return p.word
	}
	if strings.HasSuffix(r.URL.Path, "/livez") {
		return "livez"
	}
	return "healthz"
}

// write sends status and body; a HEAD request gets the headers only.
func write(w http.ResponseWriter, r *http.Request, status int, body string) {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body)) // the prober may be gone: nothing to do
	}
}
