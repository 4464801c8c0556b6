package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/flashsale/flashsale/internal/flashsale"
)

func TestCheckoutRejectsBadInput(t *testing.T) {
	h := newHarness(t, Options{})
	long := strings.Repeat("u", 65)
	tests := []struct {
		name, query, code string
	}{
		{"no query", "", flashsale.EInvalidUserID},
		{"missing user_id", "id=1", flashsale.EInvalidUserID},
		{"empty user_id", "user_id=&id=1", flashsale.EInvalidUserID},
		{"user_id 65 chars", "user_id=" + long + "&id=1", flashsale.EInvalidUserID},
		{"user_id with space", "user_id=a+b&id=1", flashsale.EInvalidUserID},
		{"user_id control char", "user_id=a%00b&id=1", flashsale.EInvalidUserID},
		{"user_id invalid utf-8", "user_id=%ff&id=1", flashsale.EInvalidUserID},
		{"user_id twice differing", "user_id=a&user_id=b&id=1", flashsale.EInvalidUserID},
		{"missing id", "user_id=u1", flashsale.EInvalidItemID},
		{"empty id", "user_id=u1&id=", flashsale.EInvalidItemID},
		{"zero id", "user_id=u1&id=0", flashsale.EInvalidItemID},
		{"negative id", "user_id=u1&id=-1", flashsale.EInvalidItemID},
		{"plus id", "user_id=u1&id=%2B1", flashsale.EInvalidItemID},
		{"space id", "user_id=u1&id=%201", flashsale.EInvalidItemID},
		{"hex id", "user_id=u1&id=0x10", flashsale.EInvalidItemID},
		{"float id", "user_id=u1&id=1.0", flashsale.EInvalidItemID},
		{"overflow id", "user_id=u1&id=9223372036854775808", flashsale.EInvalidItemID},
		{"id 65 chars", "user_id=u1&id=" + strings.Repeat("0", 64) + "1", flashsale.EInvalidItemID},
		{"unicode digits", "user_id=u1&id=%D9%A1", flashsale.EInvalidItemID},
		{"id twice differing", "user_id=u1&id=1&id=2", flashsale.EInvalidItemID},
		{"id and item_id differ", "user_id=u1&id=1&item_id=2", flashsale.EInvalidItemID},
		{"bad item_id", "user_id=u1&item_id=x", flashsale.EInvalidItemID},
		{"bad escape", "user_id=u1&id=1&x=%zz", flashsale.EInvalid},
		{"semicolon", "user_id=u1;id=1", flashsale.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := h.do("POST", "/checkout?"+tt.query, nil)
			wantError(t, w, http.StatusBadRequest, tt.code)
		})
	}
}

// TestBodyRefused checks that every route but POST /admin/sales refuses a
// body, however small, announced by Content-Length or chunked, with 413
// before its handler: no checkout attempt, and nothing read.
func TestBodyRefused(t *testing.T) {
	h := newHarness(t, Options{})
	item := itoa(flashsale.ItemID(h.sale.ID, 3))
	for _, tt := range []struct {
		name, method, target string
		body                 io.Reader
	}{
		{"small checkout body", "POST", "/checkout?user_id=u1&id=" + item, strings.NewReader("{}")},
		{"chunked checkout body", "POST", "/checkout?user_id=u1&id=" + item, struct{ io.Reader }{strings.NewReader("x")}},
		{"purchase body", "POST", "/purchase?code=" + flashsale.NewCode(h.sale.ID), strings.NewReader("x")},
		{"sale read body", "GET", "/sales/active", strings.NewReader("x")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := h.do(tt.method, tt.target, tt.body)
			wantError(t, w, http.StatusRequestEntityTooLarge, eTooLarge)
			if got := w.Header().Get("Connection"); got != "close" {
				t.Errorf("Connection = %q, want close", got)
			}
		})
	}
	if n := h.counter("checkout_attempts_total"); n != 0 {
		t.Errorf("checkout_attempts_total = %d, want 0", n)
	}
	if n := h.counter("http_requests_total", requestAttrs("/checkout", "POST", "413")...); n != 2 {
		t.Errorf("413 on /checkout counted %d times, want 2", n)
	}
	// An empty body (Content-Length: 0) is no body.
	w := h.do("POST", "/checkout?user_id=u1&id="+item, strings.NewReader(""))
	decode(t, w, http.StatusOK, &struct{}{})
}

func TestCheckoutRejectedMetrics(t *testing.T) {
	h := newHarness(t, Options{})
	h.do("POST", "/checkout?user_id=u1&id=abc", nil)
	h.do("POST", "/checkout?id=1", nil)
	h.do("POST", "/checkout?user_id=u1&id=0", nil)
	if n := h.counter("checkout_attempts_total"); n != 3 {
		t.Errorf("checkout_attempts_total = %d, want 3", n)
	}
	if n := h.counter("checkout_success_total"); n != 0 {
		t.Errorf("checkout_success_total = %d, want 0", n)
	}
	if n := h.counter("checkout_failure_total", attribute.String("reason", flashsale.EInvalidItemID)); n != 2 {
		t.Errorf("checkout_failure_total{reason=invalid_item_id} = %d, want 2", n)
	}
	if n := h.counter("checkout_failure_total", attribute.String("reason", flashsale.EInvalidUserID)); n != 1 {
		t.Errorf("checkout_failure_total{reason=invalid_user_id} = %d, want 1", n)
	}
	attrs := requestAttrs("/checkout", "POST", "400")
	if n := h.counter("http_requests_total", attrs...); n != 3 {
		t.Errorf("http_requests_total%v = %d, want 3", attrs, n)
	}
	if n := h.histogramCount("http_request_duration_seconds", attrs...); n != 3 {
		t.Errorf("http_request_duration_seconds%v count = %d, want 3", attrs, n)
	}
	// otelhttp's own semconv metrics are kept, labelled by route.
	if !h.hasDataPoint("http.server.request.duration", attribute.String("http.route", "/checkout")) {
		t.Error("no http.server.request.duration{http.route=/checkout}")
	}
}

func TestCheckoutSuccess(t *testing.T) {
	h := newHarness(t, Options{})
	itemID := flashsale.ItemID(h.sale.ID, 3)
	// item_id is an alias; an identical id alongside it is accepted.
	w := h.do("POST", "/checkout?user_id=alice&item_id="+itoa(itemID)+"&id="+itoa(itemID), nil)
	var res struct {
		Code       string `json:"code"`
		ItemsCount int    `json:"items_count"`
		SaleEndsAt string `json:"sale_ends_at"`
	}
	decode(t, w, http.StatusOK, &res)
	if _, err := flashsale.ParseCode(res.Code); err != nil {
		t.Errorf("code %q: %v", res.Code, err)
	}
	if res.ItemsCount != 1 {
		t.Errorf("items_count = %d, want 1", res.ItemsCount)
	}
	if end, err := time.Parse(time.RFC3339, res.SaleEndsAt); err != nil || !end.Equal(h.sale.EndedAt) {
		t.Errorf("sale_ends_at = %q, want %s", res.SaleEndsAt, h.sale.EndedAt.Format(time.RFC3339))
	}
	if n := h.counter("checkout_success_total"); n != 1 {
		t.Errorf("checkout_success_total = %d, want 1", n)
	}
	span := h.span("sale.checkout")
	if v, _ := spanAttr(span, "sale.id"); v.AsInt64() != h.sale.ID {
		t.Errorf("sale.id = %v, want %d", v.Emit(), h.sale.ID)
	}
	if v, _ := spanAttr(span, "sale.outcome"); v.AsString() != flashsale.OutcomeAccepted {
		t.Errorf("sale.outcome = %q", v.Emit())
	}
	if v, _ := spanAttr(span, "cart.items_count"); v.AsInt64() != 1 {
		t.Errorf("cart.items_count = %v", v.Emit())
	}
	if span.Parent().SpanID() != h.span("POST /checkout").SpanContext().SpanID() {
		t.Error("sale.checkout is not a child of the server span")
	}
	assertNoSecrets(t, h, "alice", res.Code, itoa(itemID))
}

func TestCheckoutDomainErrors(t *testing.T) {
	tests := []struct {
		err        error
		status     int
		retryAfter bool
		spanError  bool
	}{
		{flashsale.Errorf(flashsale.EItemSold, "sold"), http.StatusConflict, false, false},
		{flashsale.Errorf(flashsale.EAlreadyInCart, "in cart"), http.StatusConflict, false, false},
		{flashsale.Errorf(flashsale.EUserLimit, "limit"), http.StatusUnprocessableEntity, false, false},
		{flashsale.Unavailable("redis", errors.New("dial tcp: connection refused")), http.StatusServiceUnavailable, true, true},
		{errors.New("boom"), http.StatusInternalServerError, false, true},
	}
	for _, tt := range tests {
		code := flashsale.ErrorCode(tt.err)
		t.Run(code, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.svc.checkoutErr = tt.err
			w := h.do("POST", "/checkout?user_id=bob&id="+itoa(flashsale.ItemID(h.sale.ID, 1)), nil)
			wantError(t, w, tt.status, code)
			if got := w.Header().Get("Retry-After") == "1"; got != tt.retryAfter {
				t.Errorf("Retry-After: 1 = %v, want %v", got, tt.retryAfter)
			}
			if n := h.counter("checkout_failure_total", attribute.String("reason", code)); n != 1 {
				t.Errorf("checkout_failure_total{reason=%s} = %d, want 1", code, n)
			}
			span := h.span("sale.checkout")
			if v, _ := spanAttr(span, "sale.outcome"); v.AsString() != code {
				t.Errorf("sale.outcome = %q, want %q", v.Emit(), code)
			}
			if got := span.Status().Code == codes.Error; got != tt.spanError {
				t.Errorf("span status %v, want error=%v", span.Status(), tt.spanError)
			}
			logs := h.logs.String()
			if logged := strings.Contains(logs, "level=ERROR"); logged != tt.spanError {
				t.Errorf("logged at Error = %v, want %v:\n%s", logged, tt.spanError, logs)
			}
			if tt.spanError && !strings.Contains(logs, tt.err.Error()) {
				t.Errorf("cause %q not logged:\n%s", tt.err, logs)
			}
			if h.svc.checkouts != 1 {
				t.Errorf("the service was asked %d times, want 1", h.svc.checkouts)
			}
		})
	}
}

func TestParseCheckoutQuery(t *testing.T) {
	q, err := parseCheckoutQuery("user_id=" + strings.Repeat("u", 64) + "&id=" + strings.Repeat("0", 63) + "7&utm_source=x")
	if err != nil || q.ItemID != 7 || len(q.UserID) != 64 {
		t.Errorf("64-char user_id and id: %+v, %v", q, err)
	}
	q, err = parseCheckoutQuery("user_id=%C3%A9l%C3%A8ve&item_id=9223372036854775807")
	if err != nil || q.UserID != "élève" || q.ItemID != 1<<63-1 {
		t.Errorf("unicode user_id, max id: %+v, %v", q, err)
	}
	if q, err = parseCheckoutQuery("user_id=u&user_id=u&id=5&item_id=005"); err != nil || q.ItemID != 5 {
		t.Errorf("repeated equal values: %+v, %v", q, err)
	}
}

// FuzzCheckoutQuery checks that parseCheckoutQuery never panics and either
// returns a valid query or an invalid_* error.
func FuzzCheckoutQuery(f *testing.F) {
	for _, s := range []string{
		"", "user_id=u1&id=1", "user_id=u1&item_id=1", "user_id=u1&id=1&item_id=1",
		"user_id=u1&id=1&item_id=2", "user_id=a&user_id=b&id=1", "user_id=u1&id=1&id=1",
		"user_id=%C3%A9&id=1", "user_id=%E2%80%8B&id=1", "user_id=%ff&id=1",
		"user_id=" + strings.Repeat("u", 64) + "&id=1", "user_id=" + strings.Repeat("u", 65) + "&id=1",
		"user_id=u1&id=" + strings.Repeat("1", 64), "user_id=u1&id=" + strings.Repeat("0", 64) + "1",
		"user_id=u1&id=-1", "user_id=u1&id=0", "user_id=u1&id=9223372036854775807",
		"user_id=u1&id=9223372036854775808", "user_id=u1&id=%2B1", "user_id=u1&id=+1",
		"user_id=u1&id=%201", "user_id=u1&id=0x10", "user_id=u1;id=1", "user_id=u1&id=%zz",
		"id&user_id", "=&=&", "user_id=u1&id=1&",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseCheckoutQuery(raw)
		if err != nil {
			wantInvalid(t, err)
			return
		}
		if verr := flashsale.ValidateUserID(q.UserID); verr != nil {
			t.Fatalf("accepted user id %q: %v", q.UserID, verr)
		}
		if q.ItemID <= 0 {
			t.Fatalf("accepted item id %d", q.ItemID)
		}
	})
}

// wantInvalid fails unless err is a *flashsale.Error with an invalid_* code.
func wantInvalid(t *testing.T, err error) {
	t.Helper()
	var e *flashsale.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is a %T, not a *flashsale.Error", err, err)
	}
	if !strings.HasPrefix(e.Code, "invalid_") {
		t.Fatalf("error code %q is not invalid_*", e.Code)
	}
	if errorStatus(e.Code) != http.StatusBadRequest {
		t.Fatalf("error code %q is not a 400", e.Code)
	}
}
