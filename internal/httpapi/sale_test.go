package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
)

func TestSaleRejectsBadID(t *testing.T) {
	h := newHarness(t, Options{})
	for _, id := range []string{"abc", "0", "-1", "%2B1", "0x10", "1.5", "9223372036854775808", strings.Repeat("1", 65), "%20"} {
		for _, suffix := range []string{"", "/items"} {
			w := h.do("GET", "/sales/"+id+suffix, nil)
			wantError(t, w, http.StatusBadRequest, flashsale.EInvalid)
		}
	}
}

func TestSaleItemsRejectsBadPaging(t *testing.T) {
	h := newHarness(t, Options{})
	for _, q := range []string{
		"limit=0", "limit=1001", "limit=-1", "limit=", "limit=abc", "limit=%2B5", "limit=99999999999",
		"offset=-1", "offset=", "offset=x", "offset=1000000", "offset=9223372036854775808",
		"limit=1&limit=2", "offset=1&offset=2", "limit=%zz",
	} {
		w := h.do("GET", "/sales/1/items?"+q, nil)
		wantError(t, w, http.StatusBadRequest, flashsale.EInvalid)
	}
}

func TestSale(t *testing.T) {
	h := newHarness(t, Options{})
	var got saleResponse
	decode(t, h.do("GET", "/sales/"+itoa(h.sale.ID), nil), http.StatusOK, &got)
	want := saleResponse{
		ID: h.sale.ID, StartedAt: h.sale.StartedAt.Format(time.RFC3339), EndedAt: h.sale.EndedAt.Format(time.RFC3339),
		TotalItems: 10, ItemsSold: 2,
	}
	if got != want {
		t.Errorf("sale = %+v, want %+v", got, want)
	}
	decode(t, h.do("GET", "/sales/active", nil), http.StatusOK, &got)
	if got != want {
		t.Errorf("active sale = %+v, want %+v", got, want)
	}
	wantError(t, h.do("GET", "/sales/"+itoa(h.sale.ID+1), nil), http.StatusNotFound, flashsale.ENotFound)
	wantError(t, h.do("GET", "/sales/"+itoa(h.sale.ID+1)+"/items", nil), http.StatusNotFound, flashsale.ENotFound)
}

func TestNoActiveSale(t *testing.T) {
	h := newHarness(t, Options{})
	h.svc.sales = map[int64]*flashsale.Sale{}
	wantError(t, h.do("GET", "/sales/active", nil), http.StatusNotFound, flashsale.ENotFound)
	// Within a second the reading stands: a failing store is seen by a
	// server that has not read the sale yet.
	h = newHarness(t, Options{})
	h.svc.saleErr = flashsale.Unavailable("database", nil)
	w := h.do("GET", "/sales/active", nil)
	wantError(t, w, http.StatusServiceUnavailable, flashsale.EUnavailable)
	if w.Header().Get("Retry-After") != "1" {
		t.Error("no Retry-After on 503")
	}
}

func TestSaleItems(t *testing.T) {
	h := newHarness(t, Options{})
	target := "/sales/" + itoa(h.sale.ID) + "/items"
	w := h.do("GET", target, nil)
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != "[]" {
		t.Errorf("empty page: %d %s, want 200 []", w.Code, w.Body)
	}
	if h.svc.itemsOffset != 0 || h.svc.itemsLimit != defaultItemsLimit {
		t.Errorf("default page offset %d limit %d", h.svc.itemsOffset, h.svc.itemsLimit)
	}
	h.svc.items = []flashsale.Item{{ID: flashsale.ItemID(h.sale.ID, 6), SaleID: h.sale.ID, Name: "Item 6", ImageURL: "https://img.example/6.png", Sold: true}}
	var items []map[string]any
	decode(t, h.do("GET", target+"?offset=5&limit=1000", nil), http.StatusOK, &items)
	if h.svc.itemsOffset != 5 || h.svc.itemsLimit != 1000 {
		t.Errorf("page offset %d limit %d, want 5 and 1000", h.svc.itemsOffset, h.svc.itemsLimit)
	}
	if len(items) != 1 || len(items[0]) != 4 || items[0]["name"] != "Item 6" || items[0]["image_url"] != "https://img.example/6.png" || items[0]["sold"] != true {
		t.Errorf("items = %v", items)
	}
}

// FuzzItemsPage checks that parseItemsPage never panics and either returns a
// page within bounds or an invalid_request error.
func FuzzItemsPage(f *testing.F) {
	for _, s := range []string{
		"", "offset=0&limit=1", "offset=999999&limit=1000", "offset=1000000", "limit=1001", "limit=0",
		"limit=-1", "offset=-1", "limit=+1", "limit=%2B1", "limit=%201", "limit=0x10", "limit=1e3",
		"offset=9223372036854775808", "limit=10&limit=10", "limit=10&limit=20", "limit=%D9%A1", "limit;offset",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := parseItemsPage(raw)
		if err != nil {
			wantInvalid(t, err)
			return
		}
		if p.Offset < 0 || p.Offset > maxItemsOffset || p.Limit < 1 || p.Limit > maxItemsLimit {
			t.Fatalf("accepted %+v", p)
		}
	})
}
