package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/httpapi"
	"github.com/flashsale/flashsale/internal/testenv"
)

// answer is a response's status, error code and Retry-After.
type answer struct {
	status     int
	code       string // the JSON error code, "" on 2xx
	retryAfter string
	body       []byte
}

// post sends POST base+path with the given headers and decodes the answer.
func post(t *testing.T, base, path string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	a.body, _ = io.ReadAll(resp.Body)
	if a.status >= 300 {
		var e struct{ Error, Message string }
		if err := json.Unmarshal(a.body, &e); err != nil || e.Error == "" || e.Message == "" {
			t.Errorf("POST %s: %d with body %q: not a JSON error", path, a.status, a.body)
		}
		a.code = e.Error
	}
	return a
}

// wantLimited checks a 429 rate_limited answer with Retry-After in whole
// seconds, at least 1 and at most maxWait.
func wantLimited(t *testing.T, what string, a answer, maxWait int) {
	t.Helper()
	if a.status != http.StatusTooManyRequests || a.code != "rate_limited" {
		t.Errorf("%s: %d %s, want 429 rate_limited (%s)", what, a.status, a.code, a.body)
		return
	}
	if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 1 || n > maxWait {
		t.Errorf("%s: Retry-After %q, want whole seconds in [1, %d]", what, a.retryAfter, maxWait)
	}
}

func wantOK(t *testing.T, what string, a answer) {
	t.Helper()
	if a.status != http.StatusOK {
		t.Errorf("%s: %d %s, want 200 (%s)", what, a.status, a.code, a.body)
	}
}

// sumOver sums a series over the scrapes of several instances.
func sumOver(t *testing.T, insts []*instance, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, inst := range insts {
		sum += scrapeMetrics(t, inst.URL).value(name, labels)
	}
	return sum
}

// Two instances on one Redis prefix share each user's and each code's
// budget; the rejections are 429 rate_limited with Retry-After, counted with
// reason rate_limited, and a rejected checkout writes no attempt row.
func TestRateLimitsSharedAcrossInstances(t *testing.T) {
	// Three a minute with a burst of three: the budget does not refill while
	// the test runs.
	e := MustEnv(t, env{"RATE_LIMIT_USER": "3/m", "RATE_LIMIT_USER_BURST": "3"})
	a, b := MustStart(t, e), MustStart(t, e)
	sale := MustCreateSale(t, a.URL, 20, 10*time.Minute)
	item := func(i int64) string { return itoa(sale.ID*1_000_000 + i) }

	var first answer
	for i, inst := range []*instance{a, b, a} {
		r := post(t, inst.URL, "/checkout?user_id=alice&id="+item(int64(i+1)))
		wantOK(t, "alice's checkout "+strconv.Itoa(i+1), r)
		if i == 0 {
			first = r
		}
	}
	wantLimited(t, "alice's 4th checkout, on the other instance", post(t, b.URL, "/checkout?user_id=alice&id="+item(4)), 60)
	wantOK(t, "bob's checkout", post(t, b.URL, "/checkout?user_id=bob&id="+item(4)))

	var cart checkoutResp
	if err := json.Unmarshal(first.body, &cart); err != nil || cart.Code == "" {
		t.Fatalf("checkout answer %q: %v", first.body, err)
	}
	// A code's purchases: the first buys, replays answer the same, and the
	// budget is shared by both instances.
	for i, inst := range []*instance{b, a, b} {
		wantOK(t, "purchase "+strconv.Itoa(i+1)+" of alice's code", post(t, inst.URL, "/purchase?code="+cart.Code))
	}
	wantLimited(t, "4th purchase of alice's code", post(t, a.URL, "/purchase?code="+cart.Code), 60)

	insts := []*instance{a, b}
	for _, m := range []string{"checkout_failure_total", "purchase_failure_total"} {
		if n := sumOver(t, insts, m, l("reason", "rate_limited")); n != 1 {
			t.Errorf("%s{reason=rate_limited} over both instances = %v, want 1", m, n)
		}
	}
	for _, h := range []string{"/checkout", "/purchase"} {
		if n := sumOver(t, insts, "http_requests_total", l("handler", h, "status_code", "429")); n != 1 {
			t.Errorf("http_requests_total{handler=%s,status_code=429} = %v, want 1", h, n)
		}
	}
	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	var rows int
	if err := db.QueryRowContext(context.Background(), `SELECT count(*) FROM checkout_attempts WHERE user_id = 'alice'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 3 {
		t.Errorf("alice has %d attempt rows, want 3: the rate-limited checkout is not persisted", rows)
	}
}

// The address budget covers both endpoints whatever the user; behind a
// trusted proxy each client named by X-Forwarded-For has its own, and the
// header is ignored from anyone else.
func TestRateLimitsPerAddress(t *testing.T) {
	e := MustEnv(t, env{"RATE_LIMIT_ADDR": "2/m", "RATE_LIMIT_ADDR_BURST": "2", "TRUSTED_PROXIES": "127.0.0.0/8, ::1"})
	inst := MustStart(t, e)
	sale := MustCreateSale(t, inst.URL, 20, 10*time.Minute)
	item := func(i int64) string { return itoa(sale.ID*1_000_000 + i) }
	xff := func(ip string) []string { return []string{"X-Forwarded-For", ip} }

	wantOK(t, "client 1, user u1", post(t, inst.URL, "/checkout?user_id=u1&id="+item(1), xff("198.51.100.1")...))
	wantOK(t, "client 1, user u2", post(t, inst.URL, "/checkout?user_id=u2&id="+item(2), xff("198.51.100.1")...))
	wantLimited(t, "client 1, user u3", post(t, inst.URL, "/checkout?user_id=u3&id="+item(3), xff("198.51.100.1")...), 60)
	wantLimited(t, "client 1's purchase", post(t, inst.URL, "/purchase?code="+flashsale.NewCode(sale.ID), xff("198.51.100.1")...), 60)
	// A spoofed left-most hop does not make a new client.
	wantLimited(t, "client 1 spoofing", post(t, inst.URL, "/checkout?user_id=u4&id="+item(4), xff("203.0.113.5, 198.51.100.1")...), 60)
	wantOK(t, "client 2", post(t, inst.URL, "/checkout?user_id=u5&id="+item(5), xff("198.51.100.2")...))
}

// With the limits off (what MustEnv sets), one user and one address may go
// far past any budget.
func TestRateLimitsOff(t *testing.T) {
	e := MustEnv(t, env{})
	if e["RATE_LIMIT_USER"] != "0" || e["RATE_LIMIT_ADDR"] != "0" {
		t.Fatalf("MustEnv must turn the limits off, has %q and %q", e["RATE_LIMIT_USER"], e["RATE_LIMIT_ADDR"])
	}
	inst := MustStart(t, e)
	sale := MustCreateSale(t, inst.URL, 20, 10*time.Minute)
	r := post(t, inst.URL, "/checkout?user_id=alice&id="+itoa(sale.ID*1_000_000+1))
	wantOK(t, "checkout", r)
	var cart checkoutResp
	if err := json.Unmarshal(r.body, &cart); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		wantOK(t, "purchase "+strconv.Itoa(i+1)+" of one code", post(t, inst.URL, "/purchase?code="+cart.Code))
	}
	if n := scrapeMetrics(t, inst.URL).value("purchase_failure_total", l("reason", "rate_limited")); n != 0 {
		t.Errorf("purchase_failure_total{reason=rate_limited} = %v", n)
	}
}

func TestRateLimitConfig(t *testing.T) {
	load := func(kv ...string) (Config, error) {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return loadConfig(func(k string) string { return m[k] })
	}
	c, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if want := (httpapi.Limit{Rate: 10, Burst: 20, Period: time.Second}); c.RateLimitUser != want {
		t.Errorf("default user limit %+v, want %+v", c.RateLimitUser, want)
	}
	if c.RateLimitAddr.Rate != 0 || c.TrustedProxies != nil {
		t.Errorf("default address limit %+v, trusted proxies %v: want off, none", c.RateLimitAddr, c.TrustedProxies)
	}
	c, err = load("RATE_LIMIT_USER", "0", "RATE_LIMIT_ADDR", "600/m", "RATE_LIMIT_ADDR_BURST", "50", "TRUSTED_PROXIES", "10.0.0.0/8,192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if c.RateLimitUser.Rate != 0 {
		t.Errorf("RATE_LIMIT_USER=0: %+v", c.RateLimitUser)
	}
	if want := (httpapi.Limit{Rate: 600, Burst: 50, Period: time.Minute}); c.RateLimitAddr != want {
		t.Errorf("address limit %+v, want %+v", c.RateLimitAddr, want)
	}
	if len(c.TrustedProxies) != 2 {
		t.Errorf("trusted proxies %v", c.TrustedProxies)
	}
	if c, _ := load("RATE_LIMIT_ADDR", "5/h"); c.RateLimitAddr != (httpapi.Limit{Rate: 5, Burst: 10, Period: time.Hour}) {
		t.Errorf("5/h: %+v, want burst twice the rate", c.RateLimitAddr)
	}
	for _, kv := range [][2]string{
		{"RATE_LIMIT_USER", "-1"}, {"RATE_LIMIT_USER", "ten"}, {"RATE_LIMIT_USER", "5/d"}, {"RATE_LIMIT_ADDR", "1/s/s"},
		{"RATE_LIMIT_USER_BURST", "0"}, {"TRUSTED_PROXIES", "10.0.0.0/99"}, {"TRUSTED_PROXIES", "proxy.example"},
	} {
		if _, err := load(kv[0], kv[1]); err == nil {
			t.Errorf("%s=%q accepted", kv[0], kv[1])
		}
	}
}
