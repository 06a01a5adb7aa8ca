package grpcadapter

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/lameduck/lameduck/core"
)

const (
	// livenessService is the grpc.health.v1 service name that reports
	// liveness; every other name the server knows reports readiness.
	livenessService = "liveness"
	// watchInterval is how often readiness and liveness are re-evaluated
	// while Watch streams are open.
	watchInterval = time.Second
)

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
	unknown    = healthpb.HealthCheckResponse_SERVICE_UNKNOWN
)

// healthService serves grpc.health.v1 from the lifecycle and the health
// checks. The statuses live in grpc-go's health.Server, which keeps them,
// answers unknown names per the protocol and fans changes out to Watch
// streams; this type decides the statuses, re-evaluating them on every
// Check and, while Watch streams are open, every interval. It never calls
// the health.Server's Shutdown, which would flip liveness too.
type healthService struct {
	healthpb.UnimplementedHealthServer

	lc       *core.Lifecycle
	srv      *grpc.Server // its services report readiness
	hs       *grpchealth.Server
	ready    func(context.Context) bool
	live     func(context.Context) bool
	interval atomic.Int64 // a time.Duration: watchInterval, lowered by tests

	mu   sync.Mutex // serializes readiness updates with the hold
	held bool

	watches *streams // open Watch streams, ended by the drain

	pmu      sync.Mutex // guards the poller
	watchers int
	pstop    context.CancelFunc
	pdone    chan struct{}
}

func newHealthService(lc *core.Lifecycle, srv *grpc.Server, ready, live func(context.Context) bool, watches *streams) *healthService {
	s := &healthService{
		lc:      lc,
		srv:     srv,
		hs:      grpchealth.NewServer(),
		ready:   ready,
		live:    live,
		watches: watches,
	}
	s.interval.Store(int64(watchInterval))
	s.publishReady(false) // grpc-go starts "" as SERVING; nothing has been checked yet
	s.hs.SetServingStatus(livenessService, serving)
	return s
}

// isReadiness reports whether service reports readiness: "" and every
// service registered on the server, whenever it was registered, but
// grpc.health.v1 itself and the liveness service.
func (s *healthService) isReadiness(service string) bool {
	switch service {
	case "":
		return true
	case livenessService, healthpb.Health_ServiceDesc.ServiceName:
		return false
	}
	_, ok := s.srv.GetServiceInfo()[service]
	return ok
}

// readinessNames returns "" and the services registered on the server
// that report readiness.
func (s *healthService) readinessNames() []string {
	info := s.srv.GetServiceInfo()
	names := make([]string, 1, len(info)+1)
	for name := range info {
		if name != livenessService && name != healthpb.Health_ServiceDesc.ServiceName {
			names = append(names, name)
		}
	}
	return names
}

// refresh evaluates the status of service, publishes it to the watchers
// and returns it. ok is false for a name this service does not decide.
func (s *healthService) refresh(ctx context.Context, service string) (st healthpb.HealthCheckResponse_ServingStatus, ok bool) {
	switch {
	case service == livenessService:
		st := notServing
		if s.live(ctx) {
			st = serving
		}
		s.hs.SetServingStatus(livenessService, st)
		return st, true
	case s.isReadiness(service):
		// Check the phase first: outside Serving no check needs to run.
		return s.publishReady(s.lc.Phase() == core.Serving && s.ready(ctx)), true
	}
	return 0, false
}

// publishReady sets every readiness name to SERVING when ok, the hold has
// not started and the lifecycle is still serving, else to NOT_SERVING.
// Under mu, so that a slow evaluation that began before the hold cannot
// undo it.
func (s *healthService) publishReady(ok bool) healthpb.HealthCheckResponse_ServingStatus {
	names := s.readinessNames()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := notServing
	if ok && !s.held && s.lc.Phase() == core.Serving {
		st = serving
	}
	for _, n := range names {
		s.hs.SetServingStatus(n, st)
	}
	return st
}

// hold reports NOT_SERVING for readiness from now on, to Check and to
// every Watch stream at once.
func (s *healthService) hold() {
	s.mu.Lock()
	s.held = true
	s.mu.Unlock()
	s.publishReady(false)
}

// Check implements grpc.health.v1: readiness names and the liveness name
// are evaluated now; a name it does not know is NOT_FOUND.
func (s *healthService) Check(ctx context.Context, in *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if st, ok := s.refresh(ctx, in.GetService()); ok {
		return &healthpb.HealthCheckResponse{Status: st}, nil
	}
	return s.hs.Check(ctx, in)
}

// List implements grpc.health.v1 with fresh statuses.
func (s *healthService) List(ctx context.Context, in *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	s.refresh(ctx, "")
	s.refresh(ctx, livenessService)
	return s.hs.List(ctx, in)
}

// Watch implements grpc.health.v1 with grpc-go's Watch, which sends the
// status and every change of it, on a stream whose context ends when the
// drain starts. The stream then sends the latest status, if the client
// has not seen it yet, and ends with codes.Unavailable, so that it does
// not hold GracefulStop hostage and the client reconnects elsewhere.
func (s *healthService) Watch(in *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ds := s.watches.add(stream)
	defer s.watches.remove(ds)
	service := in.GetService()
	if service == livenessService || s.isReadiness(service) {
		s.startPolling()
		defer s.stopPolling()
		s.refresh(ds.ctx, service) // the first status sent is a fresh one
	}
	ws := &watchStream{drainStream: ds, last: -1}
	err := s.hs.Watch(in, ws)
	if !ds.ended() {
		return err
	}
	// grpc-go's Watch picks at random between a pending update and the
	// end of the context: make sure the client saw the last status.
	st := unknown
	if r, err := s.hs.Check(stream.Context(), in); err == nil {
		st = r.GetStatus()
	} else if status.Code(err) != codes.NotFound {
		return errEnded
	}
	if st != ws.last {
		_ = stream.Send(&healthpb.HealthCheckResponse{Status: st})
	}
	return errEnded
}

// watchStream records the last status sent.
type watchStream struct {
	*drainStream
	last healthpb.HealthCheckResponse_ServingStatus
}

func (w *watchStream) Send(r *healthpb.HealthCheckResponse) error {
	if err := w.ServerStream.SendMsg(r); err != nil {
		return err
	}
	w.last = r.GetStatus()
	return nil
}

// startPolling counts a watcher and starts the poller for the first one.
func (s *healthService) startPolling() {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	s.watchers++
	if s.watchers > 1 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.pstop, s.pdone = cancel, make(chan struct{})
	go s.poll(ctx, s.pdone)
}

// stopPolling uncounts a watcher and stops the poller after the last one,
// waiting for it to end.
func (s *healthService) stopPolling() {
	s.pmu.Lock()
	s.watchers--
	if s.watchers > 0 {
		s.pmu.Unlock()
		return
	}
	stop, done := s.pstop, s.pdone
	s.pstop, s.pdone = nil, nil
	s.pmu.Unlock()
	stop()
	<-done
}

// poll re-evaluates readiness and liveness every interval until ctx ends.
func (s *healthService) poll(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(time.Duration(s.interval.Load()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.refresh(ctx, "")
			s.refresh(ctx, livenessService)
		}
	}
}
