package grpcstop

import (
	"time"

	"google.golang.org/grpc"
)

// Graceful stops s gracefully (grpc.Server.GracefulStop: no new calls, the
// calls in flight finish), and at once (grpc.Server.Stop) if that takes
// longer than timeout, as when a client holds a stream open. It returns once
// s has stopped.
func Graceful(s *grpc.Server, timeout time.Duration) {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s.GracefulStop()
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.Stop()
		<-stopped
	}
}
