package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
)

// TestServerErrorsFailTheRun runs steady against a fake target whose
// checkouts fail: a 5xx other than 503 fails the run, a 503 does not.
func TestServerErrorsFailTheRun(t *testing.T) {
	for _, tc := range []struct {
		status  int
		code    string
		wantErr bool
	}{
		{http.StatusInternalServerError, "internal_error", true},
		{http.StatusBadGateway, "bad_gateway", true},
		{http.StatusServiceUnavailable, "service_unavailable", false},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			trivial := loadgen.TrivialHandler(20, time.Now())
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/checkout" {
					writeError(w, tc.status, tc.code, "failing on purpose")
					return
				}
				trivial.ServeHTTP(w, r)
			}))
			defer srv.Close()
			r := mustRun(t, tc.wantErr, "-target", srv.URL, "-profile", "steady", "-concurrency", "2", "-duration", "300ms")
			e := endpointOf(t, r, loadgen.EndpointCheckout)
			if e.Errors[tc.code] != e.Requests || e.Statuses[fmt.Sprint(tc.status)] != e.Requests {
				t.Errorf("checkout errors %v, statuses %v of %d", e.Errors, e.Statuses, e.Requests)
			}
			failed := strings.Contains(strings.Join(r.Failures, " "), "5xx other than 503")
			if failed != tc.wantErr || (r.Result == loadgen.ResultFail) != tc.wantErr {
				t.Errorf("result %s, failures %q", r.Result, r.Failures)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for name, args := range map[string][]string{
		"unknown profile":           {"-profile", "burst"},
		"create-sale without token": {"-create-sale"},
		"double-fire above 1":       {"-double-fire", "1.5"},
		"target not a URL":          {"-target", "localhost:8080"},
		"second target not a URL":   {"-target", "http://127.0.0.1:8080,localhost:8081"},
		"empty second target":       {"-target", "http://127.0.0.1:8080,"},
		"stray argument":            {"flash"},
		"unknown flag":              {"-rps", "10"},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), args, noEnv, &out, &out)
			if !errors.Is(err, errUsage) {
				t.Errorf("err = %v, want a usage error", err)
			}
		})
	}
}

// TestSpreadOverTargets runs steady against two targets given as one
// comma-separated -target: discovery goes to the first, the load to both in
// turn, and the report counts every request once.
func TestSpreadOverTargets(t *testing.T) {
	trivial := loadgen.TrivialHandler(200, time.Now())
	var hits [2]atomic.Int64
	var urls []string
	for i := range hits {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/checkout" {
				hits[i].Add(1)
			}
			trivial.ServeHTTP(w, r)
		}))
		defer srv.Close()
		urls = append(urls, srv.URL)
	}
	r := mustRun(t, false, "-target", urls[0]+", "+urls[1]+"/", "-profile", "steady", "-concurrency", "4", "-duration", "300ms")
	if r.Target != urls[0]+","+urls[1] {
		t.Errorf("report target %q, want both URLs", r.Target)
	}
	a, b := hits[0].Load(), hits[1].Load()
	if a == 0 || b == 0 || a-b > 1 || b-a > 1 {
		t.Errorf("checkouts per target: %d and %d, want an even split", a, b)
	}
	if e := endpointOf(t, r, loadgen.EndpointCheckout); e.Requests != a+b {
		t.Errorf("report counts %d checkouts, the targets saw %d", e.Requests, a+b)
	}
}

// TestDiscoveryRetries: discovery before the load goes on through 503
// overloaded and 429 answers, waiting their Retry-After, and the run then
// loads the sale; a 404 is not retried.
func TestDiscoveryRetries(t *testing.T) {
	trivial := loadgen.TrivialHandler(20, time.Now())
	var pages, sales, missing atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/sales/7":
			missing.Add(1)
		case r.URL.Path == "/sales/active" && sales.Add(1) == 1:
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "rate_limited", "slow down")
			return
		case strings.HasSuffix(r.URL.Path, "/items") && pages.Add(1) <= 2:
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "overloaded", "too many requests in flight")
			return
		}
		trivial.ServeHTTP(w, r)
	}))
	defer srv.Close()
	start := time.Now()
	r := mustRun(t, false, "-target", srv.URL, "-profile", "steady", "-concurrency", "2", "-duration", "200ms")
	if took := time.Since(start); took < 3*time.Second {
		t.Errorf("the run took %s: the three Retry-After: 1 were not waited for", took)
	}
	if sales.Load() < 2 || pages.Load() < 3 {
		t.Errorf("active sale asked %d times, items %d times: discovery did not retry", sales.Load(), pages.Load())
	}
	if e := endpointOf(t, r, loadgen.EndpointCheckout); e.Requests == 0 {
		t.Error("no checkout after the discovery")
	}

	var stdout, stderr testenv.Buffer
	err := run(context.Background(), []string{"-target", srv.URL, "-profile", "steady", "-sale", "7", "-duration", "200ms", "-json"}, noEnv, &stdout, &stderr)
	if err == nil || missing.Load() != 1 {
		t.Errorf("a sale that does not exist: err = %v after %d requests for it, want an error after 1", err, missing.Load())
	}
}

// writeError answers as the service does when it refuses a request.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%q,"message":%q}`, code, message)
}
