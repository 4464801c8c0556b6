package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
			trivial := newTrivialHandler(20, time.Now())
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/checkout" {
					writeJSON(w, tc.status, apiError{tc.code, "failing on purpose"})
					return
				}
				trivial.ServeHTTP(w, r)
			}))
			defer srv.Close()
			r := mustRun(t, tc.wantErr, "-target", srv.URL, "-profile", "steady", "-concurrency", "2", "-duration", "300ms")
			e := r.endpoint(t, epCheckout)
			if e.Errors[tc.code] != e.Requests || e.Statuses[fmt.Sprint(tc.status)] != e.Requests {
				t.Errorf("checkout errors %v, statuses %v of %d", e.Errors, e.Statuses, e.Requests)
			}
			failed := strings.Contains(strings.Join(r.Failures, " "), "5xx other than 503")
			if failed != tc.wantErr || (r.Result == resultFail) != tc.wantErr {
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
	trivial := newTrivialHandler(200, time.Now())
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
	if e := r.endpoint(t, epCheckout); e.Requests != a+b {
		t.Errorf("report counts %d checkouts, the targets saw %d", e.Requests, a+b)
	}
}

// TestPersonaMix checks that the seed's shares hold exactly.
func TestPersonaMix(t *testing.T) {
	got := map[string]int{}
	for n := range 200 {
		got[personaOf(n, 200).name]++
	}
	if want := map[string]int{"aggressive": 20, "normal": 120, "browser": 60}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("personas of 200 users: %v, want %v", got, want)
	}
}

func TestItemPool(t *testing.T) {
	p := newItemPool([]int64{1, 2, 3})
	rng := rand.New(rand.NewPCG(1, 2))
	if n := p.remove(2); n != 2 {
		t.Errorf("remove left %d", n)
	}
	if n := p.remove(2); n != 2 {
		t.Errorf("removing twice left %d", n)
	}
	for range 50 {
		if id, ok := p.pick(rng); !ok || id == 2 {
			t.Fatalf("pick = %d, %v", id, ok)
		}
	}
	p.remove(1)
	p.remove(3)
	if _, ok := p.pick(rng); ok || p.len() != 0 {
		t.Error("an empty pool gave an item")
	}
}

// TestPurchaseLedger feeds the ledger what a broken service could answer.
func TestPurchaseLedger(t *testing.T) {
	l := newPurchaseLedger(3)
	var sold []int64
	note := func(id int64) { sold = append(sold, id) }
	a := purchaseAnswer{Success: true, TotalPurchased: 2, Items: []purchasedItem{{1, true}, {2, true}, {3, false}}}
	if n := l.purchased("A", a, note); n != 2 {
		t.Errorf("first answer sold %d", n)
	}
	if n := l.purchased("A", a, note); n != 0 {
		t.Errorf("a replay sold %d", n)
	}
	if _, _, v := l.state(); len(v) != 0 {
		t.Errorf("violations of a correct service: %q", v)
	}
	l.purchased("A", purchaseAnswer{Success: true, TotalPurchased: 1, Items: []purchasedItem{{1, true}}}, note)
	l.purchased("B", purchaseAnswer{Success: true, TotalPurchased: 2, Items: []purchasedItem{{2, true}, {3, true}}}, note)
	got, _, v := l.state()
	want := []string{"answered differently on replay", "item 2 reported sold to two carts"}
	if len(v) != len(want) || got != 3 || fmt.Sprint(sold) != "[1 2 3]" {
		t.Fatalf("sold %d %v, violations %q", got, sold, v)
	}
	for i, w := range want {
		if !strings.Contains(v[i], w) {
			t.Errorf("violation %q, want %q", v[i], w)
		}
	}
}

// TestHTMLReport renders a report without a service: charts are there and
// nothing is loaded from the network.
func TestHTMLReport(t *testing.T) {
	sold := []int{0, 40, 100}
	r := &Report{Profile: profileFlash, Target: "http://127.0.0.1:1", Result: resultFail, Failures: []string{"<b>x</b>"},
		Sale: SaleReport{ID: 7, TotalItems: 100, ItemsSold: 100}}
	for i := range 3 {
		r.Timeline = append(r.Timeline, Second{T: i, Requests: map[string]int64{string(epCheckout): int64(10 * i)},
			P50Ms: map[string]float64{string(epCheckout): 1.5}, P99Ms: map[string]float64{string(epCheckout): 9}, ItemsSold: &sold[i]})
	}
	r.Endpoints = []EndpointReport{{Endpoint: string(epCheckout), Requests: 30, Statuses: map[string]int64{"200": 30}}}
	path := filepath.Join(t.TempDir(), "r.html")
	if err := writeHTMLFile(path, r); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, path)
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), "<b>x</b>") {
		t.Error("a failure was not escaped")
	}
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct{ top, n, want float64 }{{100, 5, 20}, {7, 5, 2}, {0.9, 5, 0.2}, {12345, 10, 2000}, {0, 5, 1}} {
		if got := niceStep(tc.top, int(tc.n)); got != tc.want {
			t.Errorf("niceStep(%v, %v) = %v, want %v", tc.top, tc.n, got, tc.want)
		}
	}
}

// TestBackoff: a worker waits what a 503 or 429 asks for in Retry-After
// (capped), a second for a 503 without it, a short pause after no answer,
// and retries nothing that cannot succeed.
func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		res  response
		want time.Duration
	}{
		{response{Status: 503, Code: "overloaded", RetryAfter: 2 * time.Second}, 2 * time.Second},
		{response{Status: 429, Code: "rate_limited", RetryAfter: 3 * time.Second}, 3 * time.Second},
		{response{Status: 429, Code: "rate_limited", RetryAfter: time.Hour}, maxRetryAfter},
		{response{Status: 503, Code: "service_unavailable"}, time.Second},
		{response{Status: 409, Code: "purchase_in_progress"}, 50 * time.Millisecond},
		{response{Code: codeTransport}, 50 * time.Millisecond},
		{response{Status: 409, Code: "item_sold", RetryAfter: time.Second}, 0},
		{response{Status: 500, Code: "internal_error"}, 0},
	} {
		if got := tc.res.backoff(); got != tc.want {
			t.Errorf("%s (Retry-After %s): backoff %s, want %s", tc.res, tc.res.RetryAfter, got, tc.want)
		}
	}
}

// TestDiscoveryRetries: discovery before the load goes on through 503
// overloaded and 429 answers, waiting their Retry-After, and the run then
// loads the sale; a 404 is not retried.
func TestDiscoveryRetries(t *testing.T) {
	trivial := newTrivialHandler(20, time.Now())
	var pages, sales, missing atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/sales/7":
			missing.Add(1)
		case r.URL.Path == "/sales/active" && sales.Add(1) == 1:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusTooManyRequests, apiError{"rate_limited", "slow down"})
			return
		case strings.HasSuffix(r.URL.Path, "/items") && pages.Add(1) <= 2:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, apiError{"overloaded", "too many requests in flight"})
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
	if e := r.endpoint(t, epCheckout); e.Requests == 0 {
		t.Error("no checkout after the discovery")
	}

	var stdout, stderr testenv.Buffer
	err := run(context.Background(), []string{"-target", srv.URL, "-profile", "steady", "-sale", "7", "-duration", "200ms", "-json"}, noEnv, &stdout, &stderr)
	if err == nil || missing.Load() != 1 {
		t.Errorf("a sale that does not exist: err = %v after %d requests for it, want an error after 1", err, missing.Load())
	}
}
