package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"time"
)

// checkTimeout bounds each dependency check.
const checkTimeout = time.Second

// Statuses of /health's services_status.
const (
	statusUp   = "UP"
	statusDown = "DOWN"
)

// check is a named dependency check.
type check struct {
	name string
	fn   func(context.Context) error
}

// runChecks runs every check concurrently, each within checkTimeout, and
// returns their errors in the order of s.checks (nil for a pass).
func (s *Server) runChecks(ctx context.Context) []error {
	errs := make([]error, len(s.checks))
	var wg sync.WaitGroup
	for i, c := range s.checks {
		wg.Go(func() { errs[i] = runCheck(ctx, c) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			s.log.WarnContext(ctx, "dependency check failed", "check", s.checks[i].name, "err", err)
		}
	}
	return errs
}

// runCheck runs one check within checkTimeout. A check that ignores its
// context is abandoned at the deadline, and a panicking check fails.
func runCheck(ctx context.Context, c check) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check %s panicked: %v", c.name, p)
			}
		}()
		done <- c.fn(ctx)
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("check %s: %w", c.name, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("check %s: %w", c.name, ctx.Err())
	}
}

// healthResponse is the body of GET /health.
type healthResponse struct {
	ServicesStatus map[string]string `json:"services_status"`
	Uptime         string            `json:"uptime"`
	Memory         memoryStats       `json:"memory"`
	Goroutines     int               `json:"goroutines"`
}

// memoryStats is the subset of runtime.MemStats that /health reports.
type memoryStats struct {
	Alloc      uint64 `json:"alloc"`
	TotalAlloc uint64 `json:"total_alloc"`
	Sys        uint64 `json:"sys"`
	NumGC      uint32 `json:"num_gc"`
}

// handleHealth serves GET /health: the status of the app and of every
// dependency, 200 when all are up and 503 otherwise, with runtime figures.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	errs := s.runChecks(r.Context())
	res := healthResponse{
		ServicesStatus: make(map[string]string, len(s.checks)+1),
		Uptime:         time.Since(s.started).Round(time.Second).String(),
		Goroutines:     runtime.NumGoroutine(),
	}
	res.ServicesStatus["app"] = statusUp
	status := http.StatusOK
	for i, c := range s.checks {
		res.ServicesStatus[c.name] = statusUp
		if errs[i] != nil {
			res.ServicesStatus[c.name] = statusDown
			status = http.StatusServiceUnavailable
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.Memory = memoryStats{Alloc: ms.Alloc, TotalAlloc: ms.TotalAlloc, Sys: ms.Sys, NumGC: ms.NumGC}
	s.writeJSON(w, r, status, res)
}

// probeResponse is the body of /livez and /readyz.
type probeResponse struct {
	Status string   `json:"status"`           // "ok", "unavailable" or "shutting_down"
	Failed []string `json:"failed,omitempty"` // names of the failed checks
}

// handleLivez serves GET /livez: the process is up and serving.
func (s *Server) handleLivez(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, probeResponse{Status: "ok"})
}

// handleReadyz serves GET /readyz: 200 when every check passes and the
// server is not shutting down, else 503 saying why.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.shuttingDown.Load() {
		s.writeJSON(w, r, http.StatusServiceUnavailable, probeResponse{Status: "shutting_down"})
		return
	}
	var failed []string
	for i, err := range s.runChecks(r.Context()) {
		if err != nil {
			failed = append(failed, s.checks[i].name)
		}
	}
	if len(failed) > 0 {
		s.writeJSON(w, r, http.StatusServiceUnavailable, probeResponse{Status: "unavailable", Failed: failed})
		return
	}
	s.writeJSON(w, r, http.StatusOK, probeResponse{Status: "ok"})
}
