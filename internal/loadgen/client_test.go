package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestTransportsAgree: the generator's fasthttp client and the tests'
// net/http client send the same requests and read the same answers.
func TestTransportsAgree(t *testing.T) {
	var mu sync.Mutex
	var got []string // what the server was sent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, fmt.Sprintf("%s %s %q %q", r.Method, r.URL, r.Header.Get("Content-Type"), r.Header.Get("Authorization")))
		mu.Unlock()
		switch r.URL.Path {
		case "/checkout":
			if r.URL.Query().Get("user_id") == "slow" {
				time.Sleep(300 * time.Millisecond)
			}
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"rate_limited","message":"later"}`)
		case "/purchase":
			fmt.Fprint(w, `{"success":true,"items":[{"id":7,"sold":true}],"total_purchased":1}`)
		case "/admin/sales":
			fmt.Fprint(w, `{"id":5,"total_items":10}`)
		default:
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html>bad gateway</html>")
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	run := func(c *Client) []string {
		mu.Lock()
		got = nil
		mu.Unlock()
		c.adminToken = "tok"
		var out []string
		_, res := c.Checkout(ctx, "a b", 7)
		out = append(out, fmt.Sprint(res, res.RetryAfter))
		p, res := c.Purchase(ctx, "c/d")
		out = append(out, fmt.Sprint(res, p.Lists(7), p.TotalPurchased))
		s, res := c.CreateSale(ctx, 10, time.Minute)
		out = append(out, fmt.Sprint(res, s.ID))
		_, res = c.Sale(ctx, 9)
		out = append(out, fmt.Sprintf("%d %s", res.Status, res.Code))
		_, res = c.Checkout(ctx, "slow", 7) // answers after the timeout
		out = append(out, fmt.Sprintf("%d %s", res.Status, res.Code))
		mu.Lock()
		defer mu.Unlock()
		return append(out, got...)
	}
	timeout := 100 * time.Millisecond
	slow, fast := run(NewClient(NewHTTPClient(2, 0, timeout), srv.URL)), run(NewFastClient(2, 0, timeout, srv.URL))
	if fmt.Sprint(slow) != fmt.Sprint(fast) {
		t.Errorf("net/http:\n%q\nfasthttp:\n%q", slow, fast)
	}
	if want := "429 rate_limited 3s"; slow[0] != want {
		t.Errorf("checkout: %q, want %q", slow[0], want)
	}
	if want := "0 timeout"; slow[4] != want {
		t.Errorf("slow checkout: %q, want %q", slow[4], want)
	}
}
