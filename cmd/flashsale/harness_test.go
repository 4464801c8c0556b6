package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/invariants"
	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/telemetry"
	"github.com/flashsale/flashsale/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveCommands() // the service binary of tests that run it as a process
	os.Exit(code)
}

// instance is one running service started through run.
type instance struct {
	URL    string
	cancel context.CancelFunc
	done   chan error
	log    *testenv.Buffer
}

// env is the environment of a test deployment: one database, one Redis prefix.
type env map[string]string

// MustEnv returns the environment of a fresh deployment on real servers.
func MustEnv(t testing.TB, extra env) env {
	t.Helper()
	redisURL, prefix := testenv.MustRedis(t)
	e := env{
		"HTTP_ADDR":         "127.0.0.1:0",
		"DATABASE_URL":      testenv.MustDatabase(t),
		"REDIS_URL":         redisURL,
		"REDIS_KEY_PREFIX":  prefix,
		"SALE_ITEMS":        "20",
		"ADMIN_TOKEN":       "test-admin-token",
		"LOG_LEVEL":         "warn",
		"DB_MAX_OPEN_CONNS": "24",
		// Crowds from 127.0.0.1: the abuse limits are off unless a test
		// turns them on (ratelimit_test.go).
		"RATE_LIMIT_USER": "0",
		"RATE_LIMIT_ADDR": "0",
		// No load balancer routes by readiness here: stop at once.
		"SHUTDOWN_DELAY": "0",
	}
	for k, v := range extra {
		e[k] = v
	}
	return e
}

// MustStart runs an instance of the service and waits until it is ready. It
// is stopped when the test ends. The OTEL_* keys of e are set in the process
// environment for the test, where the OpenTelemetry SDK reads them.
func MustStart(t testing.TB, e env, opts ...telemetry.Option) *instance {
	t.Helper()
	testenv.SetOTelEnv(t, e)
	ctx, cancel := context.WithCancel(context.Background())
	inst := &instance{cancel: cancel, done: make(chan error, 1), log: &testenv.Buffer{}}
	addr := make(chan string, 1)
	go func() {
		inst.done <- run(ctx, func(k string) string { return e[k] }, inst.log, func(a string) { addr <- a }, opts...)
	}()
	select {
	case a := <-addr:
		inst.URL = "http://" + a
	case err := <-inst.done:
		t.Fatalf("run: %v\n%s", err, inst.log)
	case <-time.After(30 * time.Second):
		t.Fatalf("instance did not listen\n%s", inst.log)
	}
	t.Cleanup(func() {
		inst.Stop(t)
		if t.Failed() {
			out := inst.log.String()
			t.Logf("instance log (tail):\n%s", out[max(0, len(out)-4000):])
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(inst.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return inst
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance not ready\n%s", inst.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the instance down and checks that it exited cleanly.
func (inst *instance) Stop(t testing.TB) {
	t.Helper()
	if inst.cancel == nil {
		return
	}
	inst.cancel()
	inst.cancel = nil
	select {
	case err := <-inst.done:
		if err != nil {
			t.Errorf("run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("instance did not stop")
	}
}

var client = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0},
}

// call sends a request and decodes the JSON answer into out (when 2xx) or
// returns the error code of a JSON error.
func call(t testing.TB, method, url string, body io.Reader, out any) (status int, errCode string) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Authorization", "Bearer test-admin-token")
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return 0, "transport"
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if errCode = checkWire(t, method, url, resp, raw); resp.StatusCode >= 300 {
		return resp.StatusCode, errCode
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Errorf("%s %s: decode %q: %v", method, url, raw, err)
		}
	}
	return resp.StatusCode, ""
}

// checkWire flags an answer not in the API's wire format: JSON, a refusal
// as a JSON error with a message, no 5xx but 503, and a 503 with
// Retry-After. It returns a refusal's error code.
func checkWire(t testing.TB, method, url string, resp *http.Response, raw []byte) (errCode string) {
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q, body %q", method, url, ct, raw)
	}
	if resp.StatusCode < 300 {
		return ""
	}
	var e struct {
		Error, Message string
	}
	if err := json.Unmarshal(raw, &e); err != nil || e.Error == "" || e.Message == "" {
		t.Errorf("%s %s: status %d with body %q: not a JSON error", method, url, resp.StatusCode, raw)
	}
	if resp.StatusCode >= 500 && resp.StatusCode != 503 {
		t.Errorf("%s %s: status %d: %s", method, url, resp.StatusCode, raw)
	}
	if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
		t.Errorf("%s %s: 503 without Retry-After", method, url)
	}
	return e.Error
}

// wireChecked is a transport that checks every answer's wire format.
type wireChecked struct{ t testing.TB }

func (w wireChecked) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := client.Transport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	checkWire(w.t, req.Method, req.URL.String(), resp, raw)
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return resp, nil
}

type checkoutResp struct {
	Code       string    `json:"code"`
	ItemsCount int       `json:"items_count"`
	SaleEndsAt time.Time `json:"sale_ends_at"`
}

type purchaseResp struct {
	Success bool `json:"success"`
	Items   []struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
		Sold bool   `json:"sold"`
	} `json:"items"`
	TotalPurchased int `json:"total_purchased"`
	FailedCount    int `json:"failed_count"`
}

func checkout(t testing.TB, base, user string, item int64) (checkoutResp, int, string) {
	var r checkoutResp
	st, code := call(t, http.MethodPost, fmt.Sprintf("%s/checkout?user_id=%s&id=%d", base, user, item), nil, &r)
	return r, st, code
}

func purchase(t testing.TB, base, code string) (purchaseResp, int, string) {
	var r purchaseResp
	st, ec := call(t, http.MethodPost, base+"/purchase?code="+code, nil, &r)
	return r, st, ec
}

// MustCreateSale starts a sale now through the admin API (a 409 for a start
// second already taken is tried again in the next second).
func MustCreateSale(t testing.TB, base string, items int, d time.Duration) loadgen.Sale {
	t.Helper()
	var s loadgen.Sale
	testenv.CreateSale(t, base, "test-admin-token", items, d, &s)
	return s
}

// AwayFromTheHour waits, when the next hour starts within margin, until it
// has begun: a test that counts the hourly sales must not see one end.
func AwayFromTheHour(margin time.Duration) {
	now := time.Now()
	if next := now.Truncate(time.Hour).Add(time.Hour); next.Sub(now) < margin {
		time.Sleep(next.Sub(now) + time.Second)
	}
}

// checkInvariants verifies the sale's guarantees in PostgreSQL itself and
// returns the number of items sold.
func checkInvariants(t *testing.T, db *sql.DB, saleID int64) (sold int) {
	t.Helper()
	r, err := invariants.Check(context.Background(), db, saleID)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range r.Violations {
		t.Errorf("sale %d: %s", saleID, v)
	}
	return r.SoldItems
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func decodeJSON(resp *http.Response, v any) error {
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("Content-Type %q", ct)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
