package httpapi

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

func checks(db, redis error) map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"database": func(context.Context) error { return db },
		"redis":    func(context.Context) error { return redis },
	}
}

func TestHealthUp(t *testing.T) {
	h := newHarness(t, Options{Checks: checks(nil, nil)})
	var got healthResponse
	decode(t, h.do("GET", "/health", nil), http.StatusOK, &got)
	want := map[string]string{"app": "UP", "database": "UP", "redis": "UP"}
	if len(got.ServicesStatus) != len(want) {
		t.Errorf("services_status = %v, want %v", got.ServicesStatus, want)
	}
	for k, v := range want {
		if got.ServicesStatus[k] != v {
			t.Errorf("services_status = %v, want %v", got.ServicesStatus, want)
		}
	}
	if _, err := time.ParseDuration(got.Uptime); err != nil {
		t.Errorf("uptime %q: %v", got.Uptime, err)
	}
	if got.Goroutines < 1 || got.Memory.Sys == 0 || got.Memory.Alloc == 0 {
		t.Errorf("runtime figures %+v", got)
	}
}

func TestHealthDown(t *testing.T) {
	h := newHarness(t, Options{Checks: checks(nil, errors.New("connection refused"))})
	var got healthResponse
	decode(t, h.do("GET", "/health", nil), http.StatusServiceUnavailable, &got)
	if got.ServicesStatus["database"] != "UP" || got.ServicesStatus["redis"] != "DOWN" || got.ServicesStatus["app"] != "UP" {
		t.Errorf("services_status = %v", got.ServicesStatus)
	}
}

func TestHealthCheckTimeoutAndPanic(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	h := newHarness(t, Options{Checks: map[string]func(context.Context) error{
		"database": func(context.Context) error { <-block; return nil }, // ignores its context
		"redis":    func(context.Context) error { panic("bad check") },
	}})
	start := time.Now()
	var got healthResponse
	decode(t, h.do("GET", "/health", nil), http.StatusServiceUnavailable, &got)
	if d := time.Since(start); d < checkTimeout || d > checkTimeout+time.Second {
		t.Errorf("health took %s, want about %s", d, checkTimeout)
	}
	if got.ServicesStatus["database"] != "DOWN" || got.ServicesStatus["redis"] != "DOWN" {
		t.Errorf("services_status = %v", got.ServicesStatus)
	}
}

func TestLivez(t *testing.T) {
	h := newHarness(t, Options{Checks: checks(errors.New("down"), nil)})
	var got probeResponse
	decode(t, h.do("GET", "/livez", nil), http.StatusOK, &got)
	if got.Status != "ok" {
		t.Errorf("status = %q", got.Status)
	}
}

func TestReadyz(t *testing.T) {
	h := newHarness(t, Options{Checks: checks(nil, nil)})
	var got probeResponse
	decode(t, h.do("GET", "/readyz", nil), http.StatusOK, &got)
	if got.Status != "ok" || got.Failed != nil {
		t.Errorf("ready = %+v", got)
	}
	h.srv.SetShuttingDown()
	decode(t, h.do("GET", "/readyz", nil), http.StatusServiceUnavailable, &got)
	if got.Status != "shutting_down" {
		t.Errorf("shutting down = %+v", got)
	}

	h = newHarness(t, Options{Checks: checks(errors.New("down"), errors.New("down"))})
	decode(t, h.do("GET", "/readyz", nil), http.StatusServiceUnavailable, &got)
	if got.Status != "unavailable" || len(got.Failed) != 2 || got.Failed[0] != "database" || got.Failed[1] != "redis" {
		t.Errorf("not ready = %+v", got)
	}
}

func TestProbesAreNotAPITraffic(t *testing.T) {
	metricsHandler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte("# metrics\n"))
	})
	h := newHarness(t, Options{Checks: checks(nil, nil), MetricsHandler: metricsHandler})
	for _, p := range []string{"/health", "/livez", "/readyz", "/metrics"} {
		if w := h.do("GET", p, nil); w.Code != http.StatusOK {
			t.Errorf("GET %s = %d", p, w.Code)
		}
	}
	if w := h.do("GET", "/metrics", nil); w.Body.String() != "# metrics\n" {
		t.Errorf("/metrics answered %q", w.Body)
	}
	if spans := h.spans.Ended(); len(spans) != 0 {
		t.Errorf("probes traced: %d spans, first %q", len(spans), spans[0].Name())
	}
	for _, p := range []string{"/health", "/livez", "/readyz", "/metrics"} {
		if n := h.counter("http_requests_total", attribute.String("handler", p), attribute.String("method", "GET"), attribute.String("status_code", "200")); n != 0 {
			t.Errorf("%s counted %d times", p, n)
		}
	}
}

func TestMetricsRouteAbsentWithoutHandler(t *testing.T) {
	h := newHarness(t, Options{})
	wantError(t, h.do("GET", "/metrics", nil), http.StatusNotFound, "not_found")
}
