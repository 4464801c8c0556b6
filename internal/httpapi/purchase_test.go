package httpapi

import (
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// codeFor returns a well-formed code whose sale id prefix is id.
func codeFor(id int64) string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:8], uint64(id))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func TestPurchaseRejectsBadInput(t *testing.T) {
	h := newHarness(t, Options{})
	valid := flashsale.NewCode(42)
	tests := []struct {
		name, query, code string
	}{
		{"no query", "", flashsale.EInvalidCode},
		{"empty code", "code=", flashsale.EInvalidCode},
		{"short code", "code=abc", flashsale.EInvalidCode},
		{"long code", "code=" + valid + "A", flashsale.EInvalidCode},
		{"65 chars", "code=" + strings.Repeat("A", 65), flashsale.EInvalidCode},
		{"bad alphabet", "code=" + strings.Repeat("%2B", flashsale.CodeLen), flashsale.EInvalidCode},
		{"padding", "code=" + valid[:flashsale.CodeLen-1] + "%3D", flashsale.EInvalidCode},
		{"sale id zero", "code=" + codeFor(0), flashsale.EInvalidCode},
		{"sale id negative", "code=" + codeFor(-5), flashsale.EInvalidCode},
		{"twice differing", "code=" + valid + "&code=" + flashsale.NewCode(42), flashsale.EInvalidCode},
		{"bad escape", "code=%zz", flashsale.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := h.do("POST", "/purchase?"+tt.query, nil)
			wantError(t, w, http.StatusBadRequest, tt.code)
		})
	}
	if n := h.counter("purchase_attempts_total"); n != int64(len(tests)) {
		t.Errorf("purchase_attempts_total = %d, want %d", n, len(tests))
	}
	if n := h.counter("purchase_failure_total", attribute.String("reason", flashsale.EInvalidCode)); n != int64(len(tests)-1) {
		t.Errorf("purchase_failure_total{reason=invalid_code} = %d, want %d", n, len(tests)-1)
	}
}

func TestPurchaseBodyTooLarge(t *testing.T) {
	h := newHarness(t, Options{})
	w := h.do("POST", "/purchase?code="+flashsale.NewCode(1), strings.NewReader(strings.Repeat("x", maxBodyBytes+1)))
	wantError(t, w, http.StatusRequestEntityTooLarge, eTooLarge)
}

func TestPurchaseSuccess(t *testing.T) {
	h := newHarness(t, Options{})
	h.svc.purchase = &flashsale.Purchase{
		SaleID: h.sale.ID,
		Result: flashsale.PurchaseResult{
			Success: true,
			Items: []flashsale.PurchasedItem{
				{ID: flashsale.ItemID(h.sale.ID, 1), Name: "Item 1", Sold: true},
				{ID: flashsale.ItemID(h.sale.ID, 2), Name: "Item 2", Sold: true},
				{ID: flashsale.ItemID(h.sale.ID, 3), Name: "Item 3", Sold: false},
			},
			TotalPurchased: 2,
			FailedCount:    1,
		},
	}
	code := flashsale.NewCode(h.sale.ID)
	w := h.do("POST", "/purchase?code="+code, nil)
	var res purchaseResponse
	decode(t, w, http.StatusOK, &res)
	if !res.Success || res.TotalPurchased != 2 || res.FailedCount != 1 || len(res.Items) != 3 || res.Items[0].Name != "Item 1" {
		t.Errorf("result = %+v", res)
	}
	// A replay answers the same and counts as the original, but sells nothing.
	h.svc.purchase.Replay = true
	decode(t, h.do("POST", "/purchase?code="+code, nil), http.StatusOK, &res)
	if n := h.counter("purchase_success_total"); n != 2 {
		t.Errorf("purchase_success_total = %d, want 2", n)
	}
	if n := h.counter("sale_items_sold_total"); n != 2 {
		t.Errorf("sale_items_sold_total = %d, want 2", n)
	}
	var replays int
	for _, s := range h.spans.Ended() {
		if s.Name() != "sale.purchase" {
			continue
		}
		if v, _ := spanAttr(s, "sale.id"); v.AsInt64() != h.sale.ID {
			t.Errorf("sale.id = %v", v.Emit())
		}
		if v, _ := spanAttr(s, "purchase.items_purchased"); v.AsInt64() != 2 {
			t.Errorf("purchase.items_purchased = %v", v.Emit())
		}
		if v, _ := spanAttr(s, "purchase.items_failed"); v.AsInt64() != 1 {
			t.Errorf("purchase.items_failed = %v", v.Emit())
		}
		if v, _ := spanAttr(s, "sale.outcome"); v.AsString() != outcomePurchased {
			t.Errorf("sale.outcome = %v", v.Emit())
		}
		if v, _ := spanAttr(s, "purchase.replay"); v.AsBool() {
			replays++
		}
	}
	if replays != 1 {
		t.Errorf("%d replay spans, want 1", replays)
	}
	assertNoSecrets(t, h, code)
}

func TestPurchaseNothingAvailable(t *testing.T) {
	h := newHarness(t, Options{})
	h.svc.purchase = &flashsale.Purchase{SaleID: h.sale.ID, Result: flashsale.PurchaseResult{FailedCount: 1}}
	w := h.do("POST", "/purchase?code="+flashsale.NewCode(h.sale.ID), nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"items":[]`) {
		t.Errorf("answer %d %s, want 200 with items []", w.Code, w.Body)
	}
	if n := h.counter("purchase_failure_total", attribute.String("reason", reasonNothingAvailable)); n != 1 {
		t.Errorf("purchase_failure_total{reason=nothing_available} = %d, want 1", n)
	}
	if n := h.counter("purchase_success_total") + h.counter("sale_items_sold_total"); n != 0 {
		t.Errorf("success or items sold counted: %d", n)
	}
}

func TestPurchaseDomainErrors(t *testing.T) {
	tests := []struct {
		name       string
		set        func(*fakeService)
		code       string
		status     int
		retryAfter bool
	}{
		{"busy", func(f *fakeService) { f.purchaseErr = flashsale.Errorf(flashsale.EPurchaseBusy, "busy") }, flashsale.EPurchaseBusy, http.StatusConflict, true},
		{"unknown code", func(f *fakeService) { f.purchaseErr = flashsale.Errorf(flashsale.ECodeNotFound, "no cart") }, flashsale.ECodeNotFound, http.StatusNotFound, false},
		{"ended", func(f *fakeService) { f.purchaseErr = flashsale.Errorf(flashsale.ESaleEnded, "over") }, flashsale.ESaleEnded, http.StatusGone, false},
		{"not started", func(f *fakeService) { f.purchaseErr = flashsale.Errorf(flashsale.ESaleNotStarted, "soon") }, flashsale.ESaleNotStarted, http.StatusConflict, false},
		{"unavailable", func(f *fakeService) { f.purchaseErr = flashsale.Unavailable("database", nil) }, flashsale.EUnavailable, http.StatusServiceUnavailable, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			tt.set(h.svc)
			w := h.do("POST", "/purchase?code="+flashsale.NewCode(h.sale.ID), nil)
			wantError(t, w, tt.status, tt.code)
			if got := w.Header().Get("Retry-After") == "1"; got != tt.retryAfter {
				t.Errorf("Retry-After: 1 = %v, want %v", got, tt.retryAfter)
			}
			if n := h.counter("purchase_failure_total", attribute.String("reason", tt.code)); n != 1 {
				t.Errorf("purchase_failure_total{reason=%s} = %d, want 1", tt.code, n)
			}
			span := h.span("sale.purchase")
			if got, want := span.Status().Code == codes.Error, tt.status >= 500; got != want {
				t.Errorf("span status %v, want error=%v", span.Status(), want)
			}
		})
	}
	// A code of an unknown sale is 404 as well.
	h := newHarness(t, Options{})
	wantError(t, h.do("POST", "/purchase?code="+flashsale.NewCode(h.sale.ID+1), nil), http.StatusNotFound, flashsale.ECodeNotFound)
}

// FuzzPurchaseQuery checks that parsePurchaseQuery never panics and either
// returns a well-formed code or an invalid_* error.
func FuzzPurchaseQuery(f *testing.F) {
	valid := flashsale.NewCode(1_700_000_000)
	for _, s := range []string{
		"", "code=", "code=" + valid, "code=" + valid + "&code=" + valid, "code=" + valid + "&code=x",
		"code=" + valid[1:], "code=" + valid + "A", "code=" + strings.Repeat("A", 64), "code=" + strings.Repeat("A", 65),
		"code=" + codeFor(0), "code=" + codeFor(-1), "code=" + codeFor(1<<62), "code=%zz", "code=%C3%A9",
		"code=" + strings.Repeat("%2B", flashsale.CodeLen), "code=+1", "code=%201", "code=0x10", "code;x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parsePurchaseQuery(raw)
		if err != nil {
			wantInvalid(t, err)
			return
		}
		if len(q.Code) != flashsale.CodeLen || q.SaleID <= 0 {
			t.Fatalf("accepted %+v", q)
		}
		if id, err := flashsale.ParseCode(q.Code); err != nil || id != q.SaleID {
			t.Fatalf("accepted code %q: sale %d, %v", q.Code, id, err)
		}
	})
}
