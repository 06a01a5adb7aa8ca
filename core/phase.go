package core

import "strconv"

// Phase is a stage of a [Lifecycle]. Phases only move forward:
// Starting → Serving → Holding → Draining → Stopped.
type Phase int32

const (
	// Starting is the phase before [Lifecycle.Run] serves: alive, not ready.
	Starting Phase = iota
	// Serving is the only phase in which the service reports ready.
	Serving
	// Holding is the lame-duck period: readiness fails, but every request
	// is still served while load balancers converge.
	Holding
	// Draining stops accepting new work and waits for in-flight work.
	Draining
	// Stopped means the shutdown sequence has finished.
	Stopped
)

var phaseNames = [...]string{"starting", "serving", "holding", "draining", "stopped"}

// String returns the lower-case name of the phase, such as "holding".
func (p Phase) String() string {
	if p < 0 || int(p) >= len(phaseNames) {
		return "phase(" + strconv.Itoa(int(p)) + ")"
	}
	return phaseNames[p]
}
