package loadgen

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
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Endpoint names a route of the API in reports, as the service's metrics do.
type Endpoint string

const (
	EndpointCheckout   Endpoint = "POST /checkout"
	EndpointPurchase   Endpoint = "POST /purchase"
	EndpointActiveSale Endpoint = "GET /sales/active"
	EndpointSale       Endpoint = "GET /sales/{id}"
	EndpointItems      Endpoint = "GET /sales/{id}/items"
	EndpointCreateSale Endpoint = "POST /admin/sales"
)

// Error codes the client gives requests without a usable answer, beside the
// service's own codes.
const (
	CodeTimeout         = "timeout"          // no answer within -timeout
	CodeTransport       = "transport"        // connection refused, reset, ...
	CodeInvalidResponse = "invalid_response" // an answer that is not the API's JSON
)

// maxBody bounds a response read: a page of 1000 items is about 150 KB.
const maxBody = 8 << 20

// NewHTTPClient returns a net/http client tuned for load on one host: conns
// idle connections are kept, so a request never waits for a new TCP
// connection the previous one could have reused; maxConns (0: unbounded)
// caps them. Tests use it (or their own, with a checking RoundTripper) through
// NewClient; Run's load goes through the leaner NewFastClient.
func NewHTTPClient(conns, maxConns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil, // load goes straight to the target, whatever the environment says
			DialContext:         dialer.DialContext,
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

// dialer opens the connections of both clients.
var dialer = &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}

// Client speaks the service's API. Each request goes to the next of its
// targets, round robin, as a load balancer would send it.
type Client struct {
	targets    []string
	next       *atomic.Uint64
	rt         roundTripper
	adminToken string // for POST /admin/sales
	// observe, when set, is told of every request the run did not cut short.
	observe func(ep Endpoint, start, end time.Time, res Response)
}

// NewClient returns a client of the service at targets (base URLs) that
// sends its requests through hc.
func NewClient(hc *http.Client, targets ...string) *Client {
	return &Client{targets: targets, next: new(atomic.Uint64), rt: netHTTP{hc}}
}

// NewFastClient returns a client of the service at targets whose requests go
// through fasthttp: each is written and read by the calling goroutine, with
// no hand-off to per-connection goroutines and no allocation per request,
// so the generator spends a fraction of net/http's CPU on a machine it
// shares with the service it measures. It keeps up to conns connections
// (maxConns, when not 0, caps them); a request waits up to timeout for a
// connection and its answer. A request in flight when its context ends is
// not interrupted: it ends with its answer or its timeout.
func NewFastClient(conns, maxConns int, timeout time.Duration, targets ...string) *Client {
	if maxConns > 0 {
		conns = min(conns, maxConns)
	}
	fc := &fasthttp.Client{
		Dial:                      func(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) },
		MaxConnsPerHost:           max(conns, 2),
		MaxConnWaitTimeout:        timeout,
		MaxIdleConnDuration:       90 * time.Second,
		MaxIdemponentCallAttempts: 1, // a load generator never resends by itself
		MaxResponseBodySize:       maxBody,
		NoDefaultUserAgentHeader:  true,
	}
	return &Client{targets: targets, next: new(atomic.Uint64), rt: fastHTTP{fc, timeout}}
}

// CloseIdleConnections closes the client's idle connections.
func (c *Client) CloseIdleConnections() { c.rt.closeIdle() }

// Observed returns a copy of c that tells observe of every request: the
// endpoint, when it was meant to go out, when the answer came and what it
// was. Requests cut short by the end of their context are left out. A nil
// observe: nothing is told (discovery before a load and the final reading
// after it are not part of the load).
func (c *Client) Observed(observe func(ep Endpoint, start, end time.Time, res Response)) *Client {
	o := *c
	o.observe = observe
	return &o
}

// Response is the outcome of one request.
type Response struct {
	Status     int           // 0: no answer
	Code       string        // the JSON "error" of a non-2xx answer, or one of the client's codes; "" when OK
	Err        error         // the transport or decoding error, if any
	Canceled   bool          // the run was interrupted while the request was in flight
	RetryAfter time.Duration // the answer's Retry-After (delay-seconds form), 0 when absent
}

// OK reports whether the service answered 2xx with a body that decoded.
func (r Response) OK() bool { return r.Status >= 200 && r.Status < 300 && r.Code == "" }

func (r Response) String() string {
	if r.Err != nil {
		return fmt.Sprintf("%d %s: %v", r.Status, r.Code, r.Err)
	}
	return fmt.Sprintf("%d %s", r.Status, r.Code)
}

// Retryable reports whether a request may succeed when sent again: the
// service is unavailable or shedding load (503), the user's request budget
// is spent for now (429), the cart is being bought by another request, or
// there was no answer.
func (r Response) Retryable() bool {
	switch r.Code {
	case "service_unavailable", "overloaded", "rate_limited", "purchase_in_progress", CodeTimeout, CodeTransport:
		return true
	}
	return false
}

// maxRetryAfter caps how long one Retry-After makes a worker wait, so that a
// misconfigured service cannot stall the run.
const maxRetryAfter = 5 * time.Second

// Backoff is how long a worker waits before its next request after r: what
// the service asked for in Retry-After (a 503 or 429 always carries it), a
// second for a 503 without it, and a short pause for other failures it may
// recover from, so that they are not retried in a tight loop; anything else
// none.
func (r Response) Backoff() time.Duration {
	switch {
	case !r.Retryable():
		return 0
	case r.RetryAfter > 0:
		return min(r.RetryAfter, maxRetryAfter)
	case r.Status == http.StatusServiceUnavailable:
		return time.Second
	}
	return 50 * time.Millisecond
}

// target is the base URL of the next request.
func (c *Client) target() string {
	if len(c.targets) == 1 {
		return c.targets[0]
	}
	return c.targets[(c.next.Add(1)-1)%uint64(len(c.targets))]
}

// do sends one request and decodes a 2xx JSON answer into out. start is when
// the request was meant to go out: latency counts from it, so an open-loop
// request that had to wait for a slot shows the wait.
func (c *Client) do(ctx context.Context, ep Endpoint, method, path string, body []byte, start time.Time, out any) Response {
	var token string
	if ep == EndpointCreateSale {
		token = c.adminToken
	}
	var res Response
	status, err := c.rt.roundTrip(ctx, method, c.target()+path, token, body, func(status int, retryAfter, raw []byte) {
		res = decode(status, retryAfter, raw, out)
	})
	if err != nil {
		res = transportError(ctx, err)
		res.Status = status
	}
	if c.observe != nil && !res.Canceled {
		c.observe(ep, start, time.Now(), res)
	}
	return res
}

// decode reads an answer: its status, its Retry-After (delay-seconds form)
// and the error code of a non-2xx JSON body, or a 2xx body into out.
func decode(status int, retryAfter, raw []byte, out any) Response {
	res := Response{Status: status}
	if status < 200 || status >= 300 {
		if secs, err := strconv.Atoi(string(retryAfter)); err == nil && secs > 0 {
			res.RetryAfter = time.Duration(secs) * time.Second
		}
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(raw, &e); err != nil || e.Error == "" {
			res.Code, res.Err = CodeInvalidResponse, fmt.Errorf("status %d with body %.200q", status, raw)
		} else {
			res.Code = e.Error
		}
		return res
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			res.Code, res.Err = CodeInvalidResponse, fmt.Errorf("decode %.200q: %w", raw, err)
		}
	}
	return res
}

// roundTripper sends one request (a JSON body when body is not nil, a
// bearer token when token is not empty) and hands its answer to read. The
// status is that of the answer, or 0 when none came; raw is valid only
// during read, which is not called when err is not nil.
type roundTripper interface {
	roundTrip(ctx context.Context, method, url, token string, body []byte, read func(status int, retryAfter, raw []byte)) (status int, err error)
	closeIdle()
}

// netHTTP sends requests through a net/http client.
type netHTTP struct{ hc *http.Client }

func (t netHTTP) roundTrip(ctx context.Context, method, url, token string, body []byte, read func(int, []byte, []byte)) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := t.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// Reading the whole body lets the connection be reused.
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, err
	}
	read(resp.StatusCode, []byte(resp.Header.Get("Retry-After")), raw)
	return resp.StatusCode, nil
}

func (t netHTTP) closeIdle() { t.hc.CloseIdleConnections() }

// fastHTTP sends requests through a fasthttp client, each within timeout
// or the context's deadline, whichever comes first.
type fastHTTP struct {
	fc      *fasthttp.Client
	timeout time.Duration
}

func (t fastHTTP) roundTrip(ctx context.Context, method, url, token string, body []byte, read func(int, []byte, []byte)) (int, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	deadline := time.Now().Add(t.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := t.fc.DoDeadline(req, resp, deadline); err != nil {
		return 0, err
	}
	read(resp.StatusCode(), resp.Header.Peek("Retry-After"), resp.Body())
	return resp.StatusCode(), nil
}

func (t fastHTTP) closeIdle() { t.fc.CloseIdleConnections() }

func transportError(ctx context.Context, err error) Response {
	if ctx.Err() != nil {
		return Response{Code: CodeTransport, Err: err, Canceled: true}
	}
	var te interface{ Timeout() bool } // net.Error's, and fasthttp.ErrTimeout's
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.Is(err, fasthttp.ErrNoFreeConns) || (errors.As(err, &te) && te.Timeout()) {
		return Response{Code: CodeTimeout, Err: err}
	}
	return Response{Code: CodeTransport, Err: err}
}

// Sale is the API's sale.
type Sale struct {
	ID         int64     `json:"id"`
	StartedAt  time.Time `json:"started_at"`
	EndedAt    time.Time `json:"ended_at"`
	TotalItems int       `json:"total_items"`
	ItemsSold  int       `json:"items_sold"`
}

// Item is an entry of GET /sales/{id}/items.
type Item struct {
	ID   int64 `json:"id"`
	Sold bool  `json:"sold"`
}

// CheckoutAnswer is the body of an accepted checkout: the cart's code.
type CheckoutAnswer struct {
	Code       string `json:"code"`
	ItemsCount int    `json:"items_count"`
}

// PurchaseAnswer is the body of a 200 purchase.
type PurchaseAnswer struct {
	Success        bool            `json:"success"`
	Items          []PurchasedItem `json:"items"`
	TotalPurchased int             `json:"total_purchased"`
	FailedCount    int             `json:"failed_count"`
}

// Lists reports whether the purchase lists item, sold or failed.
func (a PurchaseAnswer) Lists(item int64) bool {
	return slices.ContainsFunc(a.Items, func(it PurchasedItem) bool { return it.ID == item })
}

// PurchasedItem is an item of a purchased cart; Sold says whether this
// purchase sold it.
type PurchasedItem struct {
	ID   int64  `json:"id"`
	Name string `json:"name,omitempty"`
	Sold bool   `json:"sold"`
}

// ActiveSale reads the sale running now.
func (c *Client) ActiveSale(ctx context.Context) (Sale, Response) {
	var s Sale
	return s, c.do(ctx, EndpointActiveSale, http.MethodGet, "/sales/active", nil, time.Now(), &s)
}

// Sale reads sale id.
func (c *Client) Sale(ctx context.Context, id int64) (Sale, Response) {
	var s Sale
	return s, c.do(ctx, EndpointSale, http.MethodGet, "/sales/"+strconv.FormatInt(id, 10), nil, time.Now(), &s)
}

// Items reads a page of the sale's items.
func (c *Client) Items(ctx context.Context, saleID int64, offset, limit int) ([]Item, Response) {
	var items []Item
	path := fmt.Sprintf("/sales/%d/items?offset=%d&limit=%d", saleID, offset, limit)
	return items, c.do(ctx, EndpointItems, http.MethodGet, path, nil, time.Now(), &items)
}

// Checkout checks out itemID for user.
func (c *Client) Checkout(ctx context.Context, user string, itemID int64) (CheckoutAnswer, Response) {
	return c.checkoutAt(ctx, user, itemID, time.Now())
}

// checkoutAt checks out itemID for user; start is when it was meant to be
// sent, where its latency counts from.
func (c *Client) checkoutAt(ctx context.Context, user string, itemID int64, start time.Time) (CheckoutAnswer, Response) {
	var a CheckoutAnswer
	path := "/checkout?user_id=" + url.QueryEscape(user) + "&id=" + strconv.FormatInt(itemID, 10)
	return a, c.do(ctx, EndpointCheckout, http.MethodPost, path, nil, start, &a)
}

// Purchase purchases the cart of code.
func (c *Client) Purchase(ctx context.Context, code string) (PurchaseAnswer, Response) {
	var a PurchaseAnswer
	return a, c.do(ctx, EndpointPurchase, http.MethodPost, "/purchase?code="+url.QueryEscape(code), nil, time.Now(), &a)
}

// CreateSale creates a sale of items starting now, lasting d (an admin
// request).
func (c *Client) CreateSale(ctx context.Context, items int, d time.Duration) (Sale, Response) {
	var s Sale
	body, _ := json.Marshal(map[string]any{"total_items": items, "duration": d.String()})
	return s, c.do(ctx, EndpointCreateSale, http.MethodPost, "/admin/sales", body, time.Now(), &s)
}
