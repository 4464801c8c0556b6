package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

// outerMaxHeaderBytes mirrors the command's http.Server.MaxHeaderBytes: the
// backstop above the API's own limits.
const outerMaxHeaderBytes = 256 << 10

// newHostileServer serves a harness over real HTTP, with the
// header limit the command sets.
func newHostileServer(t *testing.T, opts Options) (*harness, *httptest.Server) {
	t.Helper()
	h := newHarness(t, opts)
	h.svc.purchase = &flashsale.Purchase{Result: flashsale.PurchaseResult{Success: true, TotalPurchased: 1}, SaleID: h.sale.ID, UserID: "u1"}
	ts := httptest.NewUnstartedServer(h.srv.Handler())
	ts.Config.MaxHeaderBytes = outerMaxHeaderBytes
	ts.Config.ReadHeaderTimeout = 5 * time.Second
	ts.Start()
	t.Cleanup(ts.Close)
	return h, ts
}

// rawRequest writes req to the server as bytes and reads one response, so
// that requests no well-behaved client would send can be tested.
func rawRequest(t *testing.T, addr, req string) (*http.Response, []byte) {
	t.Helper()
	return testenv.RawExchange(t, addr, req)
}

// wantJSONError checks a response over the network: status, the JSON error
// envelope with code and a message, and the JSON Content-Type.
func wantJSONError(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d (body %q)", resp.StatusCode, status, truncate(body))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q (body %q)", ct, truncate(body))
		return
	}
	var e errorResponse
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("body %q is not the error envelope: %v", truncate(body), err)
	}
	if e.Error != code || e.Message == "" {
		t.Errorf("error = %q (message %q), want %q", e.Error, e.Message, code)
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// TestHostileRequests sends oversized and malformed requests over real HTTP:
// each gets a JSON error with the right status, and no 5xx.
func TestHostileRequests(t *testing.T) {
	h, ts := newHostileServer(t, Options{AdminToken: testAdminToken})
	sale := itoa(h.sale.ID)
	code := flashsale.NewCode(h.sale.ID)
	adminBody := `{"total_items":5,"duration":"10m"}`
	auth := "Authorization: Bearer " + testAdminToken + "\r\n"
	mega := strings.Repeat("x", 1<<20)
	get := func(target string, headers ...string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: t\r\n" + strings.Join(headers, "") + "\r\n"
	}
	post := func(target, body string, headers ...string) string {
		return "POST " + target + " HTTP/1.1\r\nHost: t\r\nContent-Length: " + itoa(int64(len(body))) + "\r\n" +
			strings.Join(headers, "") + "\r\n" + body
	}
	chunked := func(target, body string, headers ...string) string {
		return "POST " + target + " HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n" + strings.Join(headers, "") +
			"\r\n" + strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n\r\n"
	}
	tests := []struct {
		name   string
		req    string
		status int
		code   string
	}{
		// Oversized request targets: 414.
		{"10 KB query", post("/checkout?user_id=u1&id=1&pad="+strings.Repeat("x", 10<<10), ""), 414, eURITooLong},
		{"query just over its limit", post("/checkout?user_id=u1&id=1&pad="+strings.Repeat("x", maxQueryLen), ""), 414, eURITooLong},
		{"100 KB path", get("/sales/" + strings.Repeat("1", 100<<10)), 414, eURITooLong},
		{"100 KB URI on an unknown route", get("/" + strings.Repeat("a", 100<<10)), 414, eURITooLong},
		{"100 KB purchase code", post("/purchase?code="+strings.Repeat("A", 100<<10), ""), 414, eURITooLong},
		// Oversized headers: 431 from the API's own limit.
		{"64 KB header", post("/checkout?user_id=u1&id=1", "", "X-Pad: "+strings.Repeat("x", 64<<10)+"\r\n"), 431, eHeadersTooLarge},
		{"many small headers", get("/sales/"+sale, strings.Repeat("X-A: "+strings.Repeat("y", 90)+"\r\n", 200)), 431, eHeadersTooLarge},
		{"64 KB cookie on admin", post("/admin/sales", adminBody, auth, "Cookie: c="+strings.Repeat("z", 64<<10)+"\r\n"), 431, eHeadersTooLarge},
		{"64 KB authorization", post("/admin/sales", adminBody, "Authorization: Bearer "+strings.Repeat("t", 64<<10)+"\r\n"), 431, eHeadersTooLarge},
		// Oversized bodies: 413.
		{"1 MB checkout body", post("/checkout?user_id=u1&id=1", mega), 413, eTooLarge},
		{"1 MB chunked checkout body", chunked("/checkout?user_id=u1&id=1", mega), 413, eTooLarge},
		{"1 MB purchase body", post("/purchase?code="+code, mega), 413, eTooLarge},
		{"1 MB admin body", post("/admin/sales", mega, auth, "Content-Type: application/json\r\n"), 413, eTooLarge},
		{"1 MB chunked admin body", chunked("/admin/sales", `{"total_items":5,"duration":"`+mega+`"}`, auth), 413, eTooLarge},
		// Malformed parameters: 400.
		{"NUL in user_id", post("/checkout?user_id=a%00b&id=1", ""), 400, flashsale.EInvalidUserID},
		{"invalid UTF-8 in user_id", post("/checkout?user_id=%ff%fe&id=1", ""), 400, flashsale.EInvalidUserID},
		{"overlong UTF-8 in user_id", post("/checkout?user_id=%c0%af&id=1", ""), 400, flashsale.EInvalidUserID},
		{"raw invalid UTF-8 in user_id", post("/checkout?user_id=\xff\xfe&id=1", ""), 400, flashsale.EInvalidUserID},
		{"invalid escape in user_id", post("/checkout?user_id=%zz&id=1", ""), 400, flashsale.EInvalid},
		{"truncated escape in user_id", post("/checkout?user_id=ab%2&id=1", ""), 400, flashsale.EInvalid},
		{"semicolon separator", post("/checkout?user_id=u1;id=1", ""), 400, flashsale.EInvalid},
		{"user_id repeated differing", post("/checkout?user_id=a&user_id=b&id=1", ""), 400, flashsale.EInvalidUserID},
		{"id repeated differing", post("/checkout?user_id=u1&id=1&id=2", ""), 400, flashsale.EInvalidItemID},
		{"code repeated differing", post("/purchase?code="+code+"&code="+flashsale.NewCode(h.sale.ID), ""), 400, flashsale.EInvalidCode},
		{"limit repeated differing", get("/sales/" + sale + "/items?limit=1&limit=2"), 400, flashsale.EInvalid},
		{"huge item id", post("/checkout?user_id=u1&id="+strings.Repeat("9", 30), ""), 400, flashsale.EInvalidItemID},
		{"overflowing item id", post("/checkout?user_id=u1&id=9223372036854775808", ""), 400, flashsale.EInvalidItemID},
		{"negative item id", post("/checkout?user_id=u1&id=-1", ""), 400, flashsale.EInvalidItemID},
		{"zero item id", post("/checkout?user_id=u1&id=0", ""), 400, flashsale.EInvalidItemID},
		{"huge sale id", get("/sales/99999999999999999999"), 400, flashsale.EInvalid},
		{"negative sale id", get("/sales/-1"), 400, flashsale.EInvalid},
		{"escaped NUL sale id", get("/sales/1%00"), 400, flashsale.EInvalid},
		{"huge offset", get("/sales/" + sale + "/items?offset=99999999999999999999"), 400, flashsale.EInvalid},
		{"negative limit", get("/sales/" + sale + "/items?limit=-5"), 400, flashsale.EInvalid},
		{"code with a NUL", post("/purchase?code="+code[:len(code)-1]+"%00", ""), 400, flashsale.EInvalidCode},
		{"code of a negative sale", post("/purchase?code="+codeFor(-1), ""), 400, flashsale.EInvalidCode},
		{"admin overflowing total_items", post("/admin/sales", `{"total_items":99999999999999999999,"duration":"1m"}`, auth), 400, flashsale.EInvalid},
		{"admin negative total_items", post("/admin/sales", `{"total_items":-1,"duration":"1m"}`, auth), 400, flashsale.EInvalid},
		{"admin overflowing duration", post("/admin/sales", `{"total_items":5,"duration":"9999999999h"}`, auth), 400, flashsale.EInvalid},
		{"admin invalid UTF-8", post("/admin/sales", "{\"total_items\":5,\"duration\":\"\xff\"}", auth), 400, flashsale.EInvalid},
		// Bodies where none is taken: the API takes its parameters in the
		// query only, so a form body does not stand in for them, and any
		// body is refused before it is read.
		{"checkout parameters in a form body", post("/checkout", "user_id=u1&id=1", "Content-Type: application/x-www-form-urlencoded\r\n"), 413, eTooLarge},
		{"purchase code in a JSON body", post("/purchase", `{"code":"`+code+`"}`, "Content-Type: application/json\r\n"), 413, eTooLarge},
		{"small checkout body", post("/checkout?user_id=u1&id=1", "x"), 413, eTooLarge},
		{"small chunked purchase body", chunked("/purchase?code="+code, "x"), 413, eTooLarge},
		{"admin form body", post("/admin/sales", "total_items=5&duration=10m", auth, "Content-Type: application/x-www-form-urlencoded\r\n"), 415, eUnsupportedMediaType},
		{"admin text body", post("/admin/sales", adminBody, auth, "Content-Type: text/plain\r\n"), 415, eUnsupportedMediaType},
		{"admin malformed content type", post("/admin/sales", adminBody, auth, "Content-Type: application/\r\n"), 415, eUnsupportedMediaType},
		{"admin content type checked after the token", post("/admin/sales", adminBody, "Content-Type: text/plain\r\n"), 401, flashsale.EUnauthorized},
		// Methods and routes.
		{"unknown method", "BREW /checkout HTTP/1.1\r\nHost: t\r\n\r\n", 405, flashsale.EMethodNotAllowed},
		{"GET checkout", get("/checkout?user_id=u1&id=1"), 405, flashsale.EMethodNotAllowed},
		{"path traversal", get("/sales/../admin/sales"), 404, flashsale.ENotFound},
		{"unknown route", get("/etc/passwd"), 404, flashsale.ENotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawRequest(t, ts.Listener.Addr().String(), tt.req)
			wantJSONError(t, resp, body, tt.status, tt.code)
		})
	}
	// Oversized requests are labelled with the route they were meant for.
	if n := h.counter("http_requests_total", requestAttrs("/checkout", "POST", "414")...); n != 2 {
		t.Errorf("414 on /checkout counted %d times, want 2", n)
	}
	if n := h.counter("http_requests_total", requestAttrs("/admin/sales", "POST", "431")...); n != 2 {
		t.Errorf("431 on /admin/sales counted %d times, want 2", n)
	}
	// Rejections before the handler are not checkout attempts.
	if h.svc.checkouts != 0 {
		t.Errorf("%d hostile checkouts reached the service", h.svc.checkouts)
	}
}

// TestWellFormedEdgesAccepted shows that the limits leave room for every
// legitimate request: the largest valid values, repeated equal parameters and
// declared content types pass.
func TestWellFormedEdgesAccepted(t *testing.T) {
	h, ts := newHostileServer(t, Options{AdminToken: testAdminToken})
	code := flashsale.NewCode(h.sale.ID)
	item := itoa(flashsale.ItemID(h.sale.ID, 1))
	for _, tt := range []struct {
		name, method, target, body string
		header                     http.Header
		status                     int
	}{
		{"64-char user and repeated equal params", "POST", "/checkout?user_id=" + strings.Repeat("u", 64) + "&user_id=" + strings.Repeat("u", 64) + "&id=" + item + "&item_id=" + item, "", nil, 200},
		{"an empty body of any type", "POST", "/checkout?user_id=u1&id=" + item, "", http.Header{"Content-Type": {"text/plain"}}, 200},
		{"an admin body of exactly the limit", "POST", "/admin/sales", `{"total_items":0,"duration":"12m"}` + strings.Repeat(" ", maxBodyBytes-len(`{"total_items":0,"duration":"12m"}`)), http.Header{"Authorization": {"Bearer " + testAdminToken}}, 400},
		{"a query of exactly its limit", "POST", "/checkout?user_id=u3&id=" + item + "&pad=" + strings.Repeat("x", maxQueryLen-len("user_id=u3&id="+item+"&pad=")), "", nil, 200},
		{"headers just under the limit", "POST", "/purchase?code=" + code, "", http.Header{"X-Pad": {strings.Repeat("p", MaxHeaderBytes-1024)}}, 200},
		{"admin JSON with charset", "POST", "/admin/sales", `{"total_items":5,"duration":"10m"}`, http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Authorization": {"Bearer " + testAdminToken}}, 201},
		// Past the content type check, to the body's validation (a second
		// sale in the same second would conflict).
		{"admin without a content type", "POST", "/admin/sales", `{"total_items":0,"duration":"11m"}`, http.Header{"Authorization": {"Bearer " + testAdminToken}}, 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, ts.URL+tt.target, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d: %s", resp.StatusCode, tt.status, truncate(body))
			}
			if !json.Valid(body) || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("not JSON: %q %q", resp.Header.Get("Content-Type"), truncate(body))
			}
		})
	}
}

// TestNetHTTPPlainTextAnswers documents what stays net/http's own answer,
// sent before any handler of the API runs: a header block over the server's
// MaxHeaderBytes (431) and a request line or header that does not parse
// (400), both in plain text, and the connection closed.
func TestNetHTTPPlainTextAnswers(t *testing.T) {
	h, ts := newHostileServer(t, Options{})
	for _, tt := range []struct {
		name, req string
		status    int
	}{
		{"header block over the server's limit", "GET /sales/1 HTTP/1.1\r\nHost: t\r\nX-Pad: " + strings.Repeat("x", outerMaxHeaderBytes+8192) + "\r\n\r\n", 431},
		{"garbage request line", "GARBAGE\r\n\r\n", 400},
		{"control character in the request target", "GET /sales/1\x00 HTTP/1.1\r\nHost: t\r\n\r\n", 400},
		{"header without a colon", "GET /sales/1 HTTP/1.1\r\nHost: t\r\nnocolon\r\n\r\n", 400},
		{"missing Host", "GET /sales/1 HTTP/1.1\r\n\r\n", 400},
		{"conflicting Content-Length", "POST /checkout HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawRequest(t, ts.Listener.Addr().String(), tt.req)
			if resp.StatusCode != tt.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("got %d %q %q, want net/http's plain-text %d", resp.StatusCode, resp.Header.Get("Content-Type"), truncate(body), tt.status)
			}
		})
	}
	if n := h.counter("http_requests_total"); n != 0 {
		t.Errorf("%d requests reached the API", n)
	}
}
