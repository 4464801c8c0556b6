package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// endpoint names a route of the API in reports, as the service's metrics do.
type endpoint string

const (
	epCheckout   endpoint = "POST /checkout"
	epPurchase   endpoint = "POST /purchase"
	epActiveSale endpoint = "GET /sales/active"
	epSale       endpoint = "GET /sales/{id}"
	epItems      endpoint = "GET /sales/{id}/items"
	epCreateSale endpoint = "POST /admin/sales"
)

// Error codes the client gives requests without a usable answer, beside the
// service's own codes.
const (
	codeTimeout         = "timeout"          // no answer within -timeout
	codeTransport       = "transport"        // connection refused, reset, ...
	codeInvalidResponse = "invalid_response" // an answer that is not the API's JSON
)

// maxBody bounds a response read: a page of 1000 items is about 150 KB.
const maxBody = 8 << 20

// newHTTPClient returns a client tuned for load on one host: conns idle
// connections are kept, so a request never waits for a new TCP connection
// the previous one could have reused; maxConns (0: unbounded) caps them.
func newHTTPClient(conns, maxConns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil, // load goes straight to the target, whatever the environment says
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        0, // no global cap: one host
			MaxIdleConnsPerHost: max(conns, 2),
			MaxConnsPerHost:     maxConns,
			IdleConnTimeout:     90 * time.Second,
			// The answers are small JSON: gzip would cost the target CPU
			// the benchmark should measure.
			DisableCompression: true,
		},
	}
}

// client speaks the service's API. Requests are recorded in rec when it is
// not nil.
type client struct {
	base string
	// spread, when it holds several URLs, replaces base: each request goes
	// to the next one, round robin, as a load balancer would send it.
	spread     []string
	next       *atomic.Uint64
	hc         *http.Client
	rec        *recorder
	adminToken string
}

// unrecorded returns a copy of c whose requests are not recorded: discovery
// before the load and the final reading after it are not part of the load.
func (c *client) unrecorded() *client {
	u := *c
	u.rec = nil
	return &u
}

// response is the outcome of one request.
type response struct {
	Status     int           // 0: no answer
	Code       string        // the JSON "error" of a non-2xx answer, or one of the client's codes; "" when OK
	Err        error         // the transport or decoding error, if any
	Canceled   bool          // the run was interrupted while the request was in flight
	RetryAfter time.Duration // the answer's Retry-After (delay-seconds form), 0 when absent
}

// OK reports whether the service answered 2xx with a body that decoded.
func (r response) OK() bool { return r.Status >= 200 && r.Status < 300 && r.Code == "" }

func (r response) String() string {
	if r.Err != nil {
		return fmt.Sprintf("%d %s: %v", r.Status, r.Code, r.Err)
	}
	return fmt.Sprintf("%d %s", r.Status, r.Code)
}

// retryable reports whether a request may succeed when sent again: the
// service is unavailable or shedding load (503), the user's request budget
// is spent for now (429), the cart is being bought by another request, or
// there was no answer.
func (r response) retryable() bool {
	switch r.Code {
	case "service_unavailable", "overloaded", "rate_limited", "purchase_in_progress", codeTimeout, codeTransport:
		return true
	}
	return false
}

// maxRetryAfter caps how long one Retry-After makes a worker wait, so that a
// misconfigured service cannot stall the run.
const maxRetryAfter = 5 * time.Second

// backoff is how long a worker waits before its next request after r: what
// the service asked for in Retry-After (a 503 or 429 always carries it), a
// second for a 503 without it, and a short pause for other failures it may
// recover from, so that they are not retried in a tight loop; anything else
// none.
func (r response) backoff() time.Duration {
	switch {
	case !r.retryable():
		return 0
	case r.RetryAfter > 0:
		return min(r.RetryAfter, maxRetryAfter)
	case r.Status == http.StatusServiceUnavailable:
		return time.Second
	}
	return 50 * time.Millisecond
}

// target is the base URL of the next request.
func (c *client) target() string {
	if len(c.spread) < 2 {
		return c.base
	}
	return c.spread[(c.next.Add(1)-1)%uint64(len(c.spread))]
}

// do sends one request and decodes a 2xx JSON answer into out. start is when
// the request was meant to go out: latency counts from it, so an open-loop
// request that had to wait for a slot shows the wait.
func (c *client) do(ctx context.Context, ep endpoint, method, path string, body []byte, start time.Time, out any) response {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.target()+path, rd)
	if err != nil {
		return response{Code: codeTransport, Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ep == epCreateSale {
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
	}
	res := c.send(ctx, req, out)
	if c.rec != nil && !res.Canceled {
		c.rec.record(ep, start, time.Now(), res)
	}
	return res
}

func (c *client) send(ctx context.Context, req *http.Request, out any) response {
	resp, err := c.hc.Do(req)
	if err != nil {
		return transportError(ctx, err)
	}
	defer resp.Body.Close()
	// Reading the whole body lets the connection be reused.
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		r := transportError(ctx, err)
		r.Status = resp.StatusCode
		return r
	}
	res := response{Status: resp.StatusCode}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			res.RetryAfter = time.Duration(secs) * time.Second
		}
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(raw, &e); err != nil || e.Error == "" {
			res.Code, res.Err = codeInvalidResponse, fmt.Errorf("status %d with body %.200q", resp.StatusCode, raw)
		} else {
			res.Code = e.Error
		}
		return res
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			res.Code, res.Err = codeInvalidResponse, fmt.Errorf("decode %.200q: %w", raw, err)
		}
	}
	return res
}

func transportError(ctx context.Context, err error) response {
	if ctx.Err() != nil {
		return response{Code: codeTransport, Err: err, Canceled: true}
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return response{Code: codeTimeout, Err: err}
	}
	return response{Code: codeTransport, Err: err}
}

// sale is the API's sale.
type sale struct {
	ID         int64     `json:"id"`
	StartedAt  time.Time `json:"started_at"`
	EndedAt    time.Time `json:"ended_at"`
	TotalItems int       `json:"total_items"`
	ItemsSold  int       `json:"items_sold"`
}

// item is an entry of GET /sales/{id}/items.
type item struct {
	ID   int64 `json:"id"`
	Sold bool  `json:"sold"`
}

type checkoutAnswer struct {
	Code       string `json:"code"`
	ItemsCount int    `json:"items_count"`
}

type purchaseAnswer struct {
	Success        bool            `json:"success"`
	Items          []purchasedItem `json:"items"`
	TotalPurchased int             `json:"total_purchased"`
	FailedCount    int             `json:"failed_count"`
}

// purchasedItem is an item of a purchased cart; Sold says whether this
// purchase sold it.
type purchasedItem struct {
	ID   int64 `json:"id"`
	Sold bool  `json:"sold"`
}

func (c *client) activeSale(ctx context.Context) (sale, response) {
	var s sale
	return s, c.do(ctx, epActiveSale, http.MethodGet, "/sales/active", nil, time.Now(), &s)
}

func (c *client) sale(ctx context.Context, id int64) (sale, response) {
	var s sale
	return s, c.do(ctx, epSale, http.MethodGet, "/sales/"+strconv.FormatInt(id, 10), nil, time.Now(), &s)
}

func (c *client) items(ctx context.Context, saleID int64, offset, limit int) ([]item, response) {
	var items []item
	path := fmt.Sprintf("/sales/%d/items?offset=%d&limit=%d", saleID, offset, limit)
	return items, c.do(ctx, epItems, http.MethodGet, path, nil, time.Now(), &items)
}

// checkout checks out itemID for user; start is when it was meant to be sent.
func (c *client) checkout(ctx context.Context, user string, itemID int64, start time.Time) (checkoutAnswer, response) {
	var a checkoutAnswer
	path := "/checkout?user_id=" + url.QueryEscape(user) + "&id=" + strconv.FormatInt(itemID, 10)
	return a, c.do(ctx, epCheckout, http.MethodPost, path, nil, start, &a)
}

func (c *client) purchase(ctx context.Context, code string) (purchaseAnswer, response) {
	var a purchaseAnswer
	return a, c.do(ctx, epPurchase, http.MethodPost, "/purchase?code="+url.QueryEscape(code), nil, time.Now(), &a)
}

func (c *client) createSale(ctx context.Context, items int, d time.Duration) (sale, response) {
	var s sale
	body, _ := json.Marshal(map[string]any{"total_items": items, "duration": d.String()})
	return s, c.do(ctx, epCreateSale, http.MethodPost, "/admin/sales", body, time.Now(), &s)
}
