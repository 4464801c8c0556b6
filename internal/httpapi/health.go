package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/flashsale/flashsale/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// checkTimeout bounds each dependency check of a probe; gaugeCheckTimeout
// bounds it during a metrics collection, which must answer a scrape quickly
// even while a dependency hangs.
const (
	checkTimeout      = time.Second
	gaugeCheckTimeout = 300 * time.Millisecond
)

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

// runChecks returns the readings of every check for a probe, in the order
// of s.checks (nil for a pass).
func (s *Server) runChecks(ctx context.Context) []error {
	return s.checkAll(ctx, checkTimeout)
}

// checkAll returns the reading of every check, each waited for at most
// timeout, in the order of s.checks. A reading is at most readingMaxAge old
// when taken; each check runs at most once at a time, and failures are
// logged by the reading.
func (s *Server) checkAll(ctx context.Context, timeout time.Duration) []error {
	errs := make([]error, len(s.checks))
	var wg sync.WaitGroup
	for i, c := range s.checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if _, err := s.readings.checks.Get(ctx, c.name); err != nil {
				if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
					err = fmt.Errorf("check %s: %w", c.name, err)
				}
				errs[i] = err
			}
		})
	}
	wg.Wait()
	return errs
}

// runCheck runs one check within timeout. A check that ignores its
// context is abandoned at the deadline, and a panicking check fails.
func runCheck(ctx context.Context, c check, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(telemetry.Untraced(ctx), timeout)
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
	res.Memory, _ = s.readings.memory.Get(r.Context(), "")
	writeJSON(w, r, status, res)
}

// probeResponse is the body of /livez and /readyz.
type probeResponse struct {
	Status string   `json:"status"`           // "ok", "unavailable" or "shutting_down"
	Failed []string `json:"failed,omitempty"` // names of the failed checks
}

// handleLivez serves GET /livez: the process is up and serving.
func (s *Server) handleLivez(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, probeResponse{Status: "ok"})
}

// handleReadyz serves GET /readyz: 200 when every check passes and the
// server is not shutting down, else 503 saying why.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.shuttingDown.Load() {
		writeJSON(w, r, http.StatusServiceUnavailable, probeResponse{Status: "shutting_down"})
		return
	}
	var failed []string
	for i, err := range s.runChecks(r.Context()) {
		if err != nil {
			failed = append(failed, s.checks[i].name)
		}
	}
	if len(failed) > 0 {
		writeJSON(w, r, http.StatusServiceUnavailable, probeResponse{Status: "unavailable", Failed: failed})
		return
	}
	writeJSON(w, r, http.StatusOK, probeResponse{Status: "ok"})
}

// registerHealthGauge registers health_service_up{service}: 1 when a service
// of /health's services_status is up, 0 when down, checked at each
// collection. app is always observed (1 when no check named app exists).
func (s *Server) registerHealthGauge(meter metric.Meter) error {
	gauge, err := meter.Int64ObservableGauge("health_service_up",
		metric.WithDescription("Whether each service of GET /health is up (1) or down (0): app, database, redis."))
	if err != nil {
		return err
	}
	attrs := make([]metric.ObserveOption, len(s.checks))
	hasApp := false
	for i, c := range s.checks {
		attrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("service", c.name)))
		hasApp = hasApp || c.name == "app"
	}
	appUp := metric.WithAttributeSet(attribute.NewSet(attribute.String("service", "app")))
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		errs := s.checkAll(ctx, gaugeCheckTimeout)
		if !hasApp {
			o.ObserveInt64(gauge, 1, appUp)
		}
		for i, err := range errs {
			up := int64(1)
			if err != nil {
				up = 0
			}
			o.ObserveInt64(gauge, up, attrs[i])
		}
		return nil
	}, gauge)
	return err
}
