package httpapi

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/redis"
	"github.com/flashsale/flashsale/internal/testenv"
)

// mustLimiter returns a limiter on the test Redis under a fresh prefix.
func mustLimiter(t *testing.T) *redis.RateLimiter {
	t.Helper()
	url, prefix := testenv.MustRedis(t)
	return limiterAt(t, url, prefix)
}

func limiterAt(t *testing.T, url, prefix string) *redis.RateLimiter {
	t.Helper()
	c, err := redis.Open(url, redis.Options{PoolSize: 4, MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	l := redis.NewRateLimiter(c, redis.RateLimiterOptions{Prefix: prefix})
	t.Cleanup(l.Close)
	return l
}

// serveFrom serves one request from remoteAddr ("ip:port") through handler.
func serveFrom(handler http.Handler, remoteAddr, method, target string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = remoteAddr
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, r)
	return w
}

// wantRateLimited checks a 429 rate_limited answer with a Retry-After of
// whole seconds, at least 1 and at most maxWait.
func wantRateLimited(t *testing.T, w *httptest.ResponseRecorder, maxWait int) {
	t.Helper()
	wantError(t, w, http.StatusTooManyRequests, flashsale.ERateLimited)
	ra := w.Header().Get("Retry-After")
	n, err := strconv.Atoi(ra)
	if err != nil || n < 1 || n > maxWait {
		t.Errorf("Retry-After = %q, want whole seconds in [1, %d]", ra, maxWait)
	}
}

// A checkout the service refuses for the user's budget (its cache takes
// it) answers 429 with Retry-After and counts as a rate_limited failure,
// while other users pass; no user id shows in spans, metrics or logs.
func TestCheckoutRateLimitedPerUser(t *testing.T) {
	h := newHarness(t, Options{})
	h.svc.limitedUser = "alice"
	handler := h.srv.Handler()
	item := itoa(flashsale.ItemID(h.sale.ID, 3))
	wantRateLimited(t, serveFrom(handler, "192.0.2.1:1000", "POST", "/checkout?user_id=alice&id="+item), 60)
	if w := serveFrom(handler, "192.0.2.1:1000", "POST", "/checkout?user_id=bob&id="+item); w.Code != http.StatusOK {
		t.Errorf("bob's checkout: %d %s", w.Code, w.Body)
	}
	if n := h.counter("checkout_failure_total", attribute.String("reason", flashsale.ERateLimited)); n != 1 {
		t.Errorf("checkout_failure_total{reason=rate_limited} = %d, want 1", n)
	}
	if n := h.counter("checkout_attempts_total"); n != 2 {
		t.Errorf("checkout_attempts_total = %d, want 2", n)
	}
	if attrs := requestAttrs("/checkout", "POST", "429"); h.counter("http_requests_total", attrs...) != 1 {
		t.Errorf("http_requests_total%v != 1", attrs)
	}
	assertNoSecrets(t, h, "alice", "bob")
	assertNoMetricLabel(t, h, "192.0.2.1")
	if logs := h.logs.String(); strings.Contains(logs, "alice") || strings.Contains(logs, "192.0.2.1") {
		t.Errorf("logs hold a user id or client address:\n%s", logs)
	}
}

// A code's purchases are limited per code: replays of one code beyond the
// budget get 429, another code passes.
func TestPurchaseRateLimitedPerCode(t *testing.T) {
	h := newHarness(t, Options{RateLimits: RateLimits{Limiter: mustLimiter(t), User: Limit{Rate: 1, Burst: 1, Period: time.Minute}}})
	h.svc.purchase = &flashsale.Purchase{SaleID: h.sale.ID, Result: flashsale.PurchaseResult{Success: true, TotalPurchased: 1}}
	handler := h.srv.Handler()
	code1, code2 := flashsale.NewCode(h.sale.ID), flashsale.NewCode(h.sale.ID)
	if w := serveFrom(handler, "192.0.2.1:1000", "POST", "/purchase?code="+code1); w.Code != http.StatusOK {
		t.Fatalf("first purchase: %d %s", w.Code, w.Body)
	}
	wantRateLimited(t, serveFrom(handler, "192.0.2.1:1000", "POST", "/purchase?code="+code1), 60)
	if w := serveFrom(handler, "192.0.2.1:1000", "POST", "/purchase?code="+code2); w.Code != http.StatusOK {
		t.Errorf("another code: %d %s", w.Code, w.Body)
	}
	if n := h.counter("purchase_failure_total", attribute.String("reason", flashsale.ERateLimited)); n != 1 {
		t.Errorf("purchase_failure_total{reason=rate_limited} = %d, want 1", n)
	}
	assertNoSecrets(t, h, code1, code2)
}

// The address budget covers checkout and purchase together, whatever the
// user; another address has its own.
func TestRateLimitedPerAddress(t *testing.T) {
	h := newHarness(t, Options{RateLimits: RateLimits{Limiter: mustLimiter(t), Addr: Limit{Rate: 1, Burst: 2, Period: time.Minute}}})
	h.svc.purchase = &flashsale.Purchase{SaleID: h.sale.ID, Result: flashsale.PurchaseResult{Success: true, TotalPurchased: 1}}
	handler := h.srv.Handler()
	item := itoa(flashsale.ItemID(h.sale.ID, 1))
	if w := serveFrom(handler, "192.0.2.1:1000", "POST", "/checkout?user_id=u1&id="+item); w.Code != http.StatusOK {
		t.Fatalf("checkout: %d %s", w.Code, w.Body)
	}
	if w := serveFrom(handler, "192.0.2.1:2000", "POST", "/purchase?code="+flashsale.NewCode(h.sale.ID)); w.Code != http.StatusOK {
		t.Fatalf("purchase: %d %s", w.Code, w.Body)
	}
	// Another port of the same address, another user: same budget.
	wantRateLimited(t, serveFrom(handler, "192.0.2.1:3000", "POST", "/checkout?user_id=u2&id="+item), 60)
	wantRateLimited(t, serveFrom(handler, "192.0.2.1:3000", "POST", "/purchase?code="+flashsale.NewCode(h.sale.ID)), 60)
	if w := serveFrom(handler, "192.0.2.2:1000", "POST", "/checkout?user_id=u3&id="+item); w.Code != http.StatusOK {
		t.Errorf("another address: %d %s", w.Code, w.Body)
	}
	// X-Forwarded-For is not believed from an address that is not a trusted proxy.
	wantRateLimited(t, serveFrom(handler, "192.0.2.1:3000", "POST", "/checkout?user_id=u4&id="+item, "X-Forwarded-For", "198.51.100.9"), 60)
	for _, m := range []string{"checkout_failure_total", "purchase_failure_total"} {
		if n := h.counter(m, attribute.String("reason", flashsale.ERateLimited)); n < 1 {
			t.Errorf("%s{reason=rate_limited} = %d", m, n)
		}
	}
	assertNoMetricLabel(t, h, "192.0.2.1", "192.0.2.2")
}

// Behind a trusted proxy, each client named by X-Forwarded-For has its own
// budget.
func TestRateLimitedBehindTrustedProxy(t *testing.T) {
	proxies, err := ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Options{RateLimits: RateLimits{Limiter: mustLimiter(t), Addr: Limit{Rate: 1, Burst: 1, Period: time.Minute}, TrustedProxies: proxies}})
	handler := h.srv.Handler()
	item := itoa(flashsale.ItemID(h.sale.ID, 1))
	via := func(user, xff string) *httptest.ResponseRecorder {
		return serveFrom(handler, "10.0.0.5:1000", "POST", "/checkout?user_id="+user+"&id="+item, "X-Forwarded-For", xff)
	}
	if w := via("u1", "198.51.100.1"); w.Code != http.StatusOK {
		t.Fatalf("first client: %d %s", w.Code, w.Body)
	}
	if w := via("u2", "198.51.100.2"); w.Code != http.StatusOK {
		t.Errorf("second client through the same proxy: %d %s", w.Code, w.Body)
	}
	wantRateLimited(t, via("u3", "198.51.100.1"), 60)
	// A spoofed left-most entry does not make a new client.
	wantRateLimited(t, via("u4", "203.0.113.77, 198.51.100.1"), 60)
}

// Limiter failures let requests through (fail open), answered by the
// service, and are logged as a warning without the user or address.
func TestRateLimitFailsOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: Redis is down
	lim := limiterAt(t, "redis://"+addr+"/0", "down")
	h := newHarness(t, Options{RateLimits: RateLimits{Limiter: lim, User: Limit{Rate: 1, Burst: 1, Period: time.Minute}, Addr: Limit{Rate: 1, Burst: 1, Period: time.Minute}}})
	handler := h.srv.Handler()
	for i := 1; i <= 3; i++ {
		w := serveFrom(handler, "192.0.2.1:1000", "POST", "/checkout?user_id=alice&id="+itoa(flashsale.ItemID(h.sale.ID, i)))
		if w.Code != http.StatusOK {
			t.Errorf("checkout %d with the limiter down: %d %s", i, w.Code, w.Body)
		}
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "rate limiter unavailable") {
		t.Errorf("no warning logged:\n%s", logs)
	}
	if strings.Contains(logs, "alice") || strings.Contains(logs, "192.0.2.1") {
		t.Errorf("logs hold a user id or client address:\n%s", logs)
	}
}

func TestClientAddr(t *testing.T) {
	proxies, err := ParseTrustedProxies(" 10.0.0.0/8 , 2001:db8:ffff::1")
	if err != nil {
		t.Fatal(err)
	}
	withProxies, err := newLimits(RateLimits{Limiter: unusedLimiter{}, Addr: Limit{Rate: 1, Burst: 1, Period: time.Minute}, TrustedProxies: proxies}, nil)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := newLimits(RateLimits{Limiter: unusedLimiter{}, Addr: Limit{Rate: 1, Burst: 1, Period: time.Minute}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		rl     *limits
		remote string
		xff    []string
		want   string
	}{
		{"ipv4", direct, "192.0.2.1:5000", nil, "192.0.2.1"},
		{"xff ignored without trusted proxies", direct, "10.0.0.1:5000", []string{"198.51.100.1"}, "10.0.0.1"},
		{"ipv6 counted per /64", direct, "[2001:db8:1:2:aaaa::1]:5000", nil, "2001:db8:1:2::/64"},
		{"ipv6 zone dropped", direct, "[fe80::1%eth0]:5000", nil, "fe80::/64"},
		{"ipv4-mapped ipv6", direct, "[::ffff:192.0.2.7]:5000", nil, "192.0.2.7"},
		{"no address", direct, "@", nil, ""},
		{"untrusted remote: xff ignored", withProxies, "192.0.2.1:5000", []string{"198.51.100.1"}, "192.0.2.1"},
		{"trusted proxy: right-most xff", withProxies, "10.1.2.3:5000", []string{"203.0.113.9, 198.51.100.1"}, "198.51.100.1"},
		{"trusted hops skipped", withProxies, "10.1.2.3:5000", []string{"198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"several headers", withProxies, "10.1.2.3:5000", []string{"203.0.113.9", "198.51.100.2"}, "198.51.100.2"},
		{"trusted ipv6 proxy", withProxies, "[2001:db8:ffff::1]:443", []string{"198.51.100.3"}, "198.51.100.3"},
		{"no xff: the proxy", withProxies, "10.1.2.3:5000", nil, "10.1.2.3"},
		{"all hops trusted: the proxy", withProxies, "10.1.2.3:5000", []string{"10.0.0.9"}, "10.1.2.3"},
		{"garbage xff: the proxy", withProxies, "10.1.2.3:5000", []string{"not-an-ip"}, "10.1.2.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/checkout", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := tt.rl.clientAddr(r); got != tt.want {
				t.Errorf("clientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseTrustedProxiesRejectsGarbage(t *testing.T) {
	for _, s := range []string{"10.0.0.0/33", "example.com", "10.0.0.1%eth0", "1.2.3"} {
		if _, err := ParseTrustedProxies(s); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted it", s)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tt := range []struct {
		d    flashsale.RetryAfter
		want int64
	}{{1, 1}, {flashsale.RetryAfter(999e6), 1}, {flashsale.RetryAfter(1e9), 1}, {flashsale.RetryAfter(1e9 + 1), 2}, {flashsale.RetryAfter(59.5e9), 60}} {
		if got := tt.d.Seconds(); got != tt.want {
			t.Errorf("seconds(%v) = %d, want %d", time.Duration(tt.d), got, tt.want)
		}
	}
}

// unusedLimiter stands in where only the address derivation is tested.
type unusedLimiter struct{}

func (unusedLimiter) Allow(context.Context, string, int, int, time.Duration) (time.Duration, error) {
	panic("not called")
}

// assertNoMetricLabel fails if any metric attribute holds one of values.
func assertNoMetricLabel(t *testing.T, h *harness, values ...string) {
	t.Helper()
	for name, kv := range h.metricAttributes() {
		for _, v := range values {
			if strings.Contains(kv.Value.Emit(), v) {
				t.Errorf("metric %s label %s=%q holds %q", name, kv.Key, kv.Value.Emit(), v)
			}
		}
	}
}
