package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
)

const testAdminToken = "loadgen-test-token"

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveCommands()
	os.Exit(code)
}

// service is a running flashsale process on its own database and Redis
// prefix. loadgen talks to it as to any deployment: over HTTP, in another
// process.
type service struct {
	URL         string
	DatabaseURL string
}

// mustService starts the service with a fresh database and Redis prefix and
// waits until it is ready; it is stopped when the test ends. env adds to or
// overrides its environment.
func mustService(t *testing.T, env ...string) *service {
	t.Helper()
	dbURL := testenv.MustDatabase(t) // skips, unless required, before the build
	redisURL, prefix := testenv.MustRedis(t)
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cmd := exec.Command(testenv.ServiceBinary(t))
	cmd.Env = append([]string{
		"HTTP_ADDR=" + addr,
		"DATABASE_URL=" + dbURL,
		"REDIS_URL=" + redisURL,
		"REDIS_KEY_PREFIX=" + prefix,
		"ADMIN_TOKEN=" + testAdminToken,
		"SALE_ITEMS=300",
		// The crowds come from 127.0.0.1 and fire fast: no abuse limits.
		"RATE_LIMIT_USER=0",
		"RATE_LIMIT_ADDR=0",
		"SHUTDOWN_DELAY=0", // no load balancer to drain: stop at once
	}, env...)
	p := testenv.MustStartProcess(t, "flashsale", cmd)
	t.Cleanup(func() {
		if !p.Stop(30 * time.Second) {
			t.Errorf("the service did not stop on SIGTERM")
		}
		if t.Failed() {
			out := p.Out.String()
			t.Logf("service log (tail):\n%s", out[max(0, len(out)-4000):])
		}
	})
	s := &service{URL: "http://" + addr, DatabaseURL: dbURL}
	if err := testenv.WaitReady(s.URL, 60*time.Second, p); err != nil {
		t.Fatalf("the service: %v\n%s", err, p.Out)
	}
	return s
}

// noEnv keeps the tests' environment (DATABASE_URL, ADMIN_TOKEN) out of
// loadgen's defaults.
func noEnv(string) string { return "" }

// mustRun runs loadgen with -json and returns its report. wantErr says
// whether the run is expected to fail.
func mustRun(t *testing.T, wantErr bool, args ...string) *loadgen.Report {
	t.Helper()
	var stdout, stderr testenv.Buffer
	err := run(context.Background(), append(args, "-json"), noEnv, &stdout, &stderr)
	if (err != nil) != wantErr {
		t.Fatalf("loadgen %s: err = %v, want error: %v\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), err, wantErr, stdout.String(), stderr.String())
	}
	raw := []byte(stdout.String())
	var rep loadgen.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, raw)
	}
	checkJSONFields(t, raw)
	checkSane(t, &rep)
	return &rep
}

// checkJSONFields checks that the documented top-level fields are there:
// scripts depend on their names.
func checkJSONFields(t *testing.T, raw []byte) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{
		"profile", "target", "run_id", "settings", "sale", "started_at", "duration_seconds", "ended_by", "totals",
		"endpoints", "items_sold_by_run", "sold_out", "time_to_sell_out_seconds", "double_fires", "open_loop",
		"client_violations", "invariants", "timeline", "result", "failures",
	} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
}

// checkSane checks what holds in every report.
func checkSane(t *testing.T, r *loadgen.Report) {
	t.Helper()
	var sum int64
	for _, e := range r.Endpoints {
		sum += e.Requests
		l := e.Latency
		if e.Requests <= 0 || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
			t.Errorf("%s: %d requests with latency %+v", e.Endpoint, e.Requests, l)
		}
		var answered int64
		for _, n := range e.Statuses {
			answered += n
		}
		if answered > e.Requests {
			t.Errorf("%s: %d answers for %d requests", e.Endpoint, answered, e.Requests)
		}
	}
	if sum != r.Totals.Requests || sum == 0 {
		t.Errorf("endpoints sum to %d requests, totals say %d", sum, r.Totals.Requests)
	}
	if tt := r.Totals; tt.OK+tt.Rejected+tt.Unavailable+tt.ServerErrors+tt.NoAnswer != tt.Requests {
		t.Errorf("totals do not add up: %+v", tt)
	}
	if r.DurationSeconds <= 0 || r.Totals.RPS <= 0 || len(r.Timeline) == 0 {
		t.Errorf("duration %.2fs, %.1f req/s, %d seconds of timeline", r.DurationSeconds, r.Totals.RPS, len(r.Timeline))
	}
	if (r.Result == loadgen.ResultPass) != (len(r.Failures) == 0) {
		t.Errorf("result %s with failures %q", r.Result, r.Failures)
	}
}

// endpointOf returns the report's figures of ep.
func endpointOf(t *testing.T, r *loadgen.Report, ep loadgen.Endpoint) loadgen.EndpointReport {
	t.Helper()
	for _, e := range r.Endpoints {
		if e.Endpoint == string(ep) {
			return e
		}
	}
	t.Fatalf("no %s in the report: %+v", ep, r.Endpoints)
	return loadgen.EndpointReport{}
}

// startTrivial runs serve-trivial in-process on a free port and returns its
// URL; it stops when the test ends.
func startTrivial(t *testing.T, items int) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out testenv.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve-trivial", "-addr", "127.0.0.1:0", "-items", fmt.Sprint(items)}, noEnv, &out, &out)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve-trivial: %v", err)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, addr, ok := strings.Cut(out.String(), "listening on "); ok {
			return "http://" + strings.TrimSpace(addr)
		}
	}
	t.Fatalf("serve-trivial did not listen: %s", out.String())
	return ""
}
