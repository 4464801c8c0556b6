package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
)

func TestAdminDisabled(t *testing.T) {
	h := newHarness(t, Options{})
	w := h.do("POST", "/admin/sales", strings.NewReader(`{"total_items":5,"duration":"10m"}`), "Authorization", "Bearer ")
	wantError(t, w, http.StatusNotFound, flashsale.ENotFound)
}

func TestAdminUnauthorized(t *testing.T) {
	// The service has no stores: touching one would answer 500, not 401.
	h := newHarness(t, Options{AdminToken: testAdminToken})
	body := `{"total_items":5,"duration":"10m"}`
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Basic " + testAdminToken, testAdminToken, "Bearer " + testAdminToken + "x", "Bearer " + testAdminToken[:5]} {
		w := h.do("POST", "/admin/sales", strings.NewReader(body), "Authorization", auth)
		wantError(t, w, http.StatusUnauthorized, flashsale.EUnauthorized)
		if got := w.Header().Get("WWW-Authenticate"); got != "Bearer" {
			t.Errorf("WWW-Authenticate = %q", got)
		}
	}
	if strings.Contains(h.logs.String(), testAdminToken) {
		t.Errorf("token logged:\n%s", h.logs)
	}
}

func TestAdminRejectsBadBody(t *testing.T) {
	h := newHarness(t, Options{AdminToken: testAdminToken})
	tests := []struct {
		name, body, code string
		status           int
	}{
		{"empty", ``, flashsale.EInvalid, 400},
		{"not json", `total_items=5`, flashsale.EInvalid, 400},
		{"array", `[]`, flashsale.EInvalid, 400},
		{"unknown field", `{"total_items":5,"duration":"10m","start":"now"}`, flashsale.EInvalid, 400},
		{"missing total_items", `{"duration":"10m"}`, flashsale.EInvalid, 400},
		{"missing duration", `{"total_items":5}`, flashsale.EInvalid, 400},
		{"null total_items", `{"total_items":null,"duration":"10m"}`, flashsale.EInvalid, 400},
		{"string total_items", `{"total_items":"5","duration":"10m"}`, flashsale.EInvalid, 400},
		{"float total_items", `{"total_items":5.5,"duration":"10m"}`, flashsale.EInvalid, 400},
		{"zero total_items", `{"total_items":0,"duration":"10m"}`, flashsale.EInvalid, 400},
		{"too many items", `{"total_items":1000000,"duration":"10m"}`, flashsale.EInvalid, 400},
		{"overflow total_items", `{"total_items":99999999999999999999,"duration":"10m"}`, flashsale.EInvalid, 400},
		{"bad duration", `{"total_items":5,"duration":"ten minutes"}`, flashsale.EInvalid, 400},
		{"numeric duration", `{"total_items":5,"duration":600}`, flashsale.EInvalid, 400},
		{"short duration", `{"total_items":5,"duration":"500ms"}`, flashsale.EInvalid, 400},
		{"long duration", `{"total_items":5,"duration":"169h"}`, flashsale.EInvalid, 400},
		{"negative duration", `{"total_items":5,"duration":"-10m"}`, flashsale.EInvalid, 400},
		{"trailing data", `{"total_items":5,"duration":"10m"} {}`, flashsale.EInvalid, 400},
		{"trailing brace", `{"total_items":5,"duration":"10m"}}`, flashsale.EInvalid, 400},
		{"truncated", `{"total_items":5,`, flashsale.EInvalid, 400},
		{"too large", `{"total_items":5,"duration":"10m","x":"` + strings.Repeat("x", maxBodyBytes) + `"}`, eTooLarge, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := h.do("POST", "/admin/sales", strings.NewReader(tt.body), "Authorization", "Bearer "+testAdminToken)
			wantError(t, w, tt.status, tt.code)
		})
	}
}

func TestAdminCreateSale(t *testing.T) {
	h := newStoreHarness(t, Options{AdminToken: testAdminToken})
	w := h.do("POST", "/admin/sales", strings.NewReader(`{"total_items":5,"duration":"10m"}`+"\n"), "Authorization", "bearer "+testAdminToken)
	var got saleResponse
	decode(t, w, http.StatusCreated, &got)
	start, err := time.Parse(time.RFC3339, got.StartedAt)
	if err != nil || time.Since(start) > time.Minute {
		t.Errorf("started_at = %q", got.StartedAt)
	}
	if end, err := time.Parse(time.RFC3339, got.EndedAt); err != nil || end.Sub(start) != 10*time.Minute {
		t.Errorf("ended_at = %q", got.EndedAt)
	}
	if got.ID != start.Unix() || got.TotalItems != 5 || got.ItemsSold != 0 {
		t.Errorf("sale = %+v", got)
	}
	if loc := w.Header().Get("Location"); loc != "/sales/"+itoa(got.ID) {
		t.Errorf("Location = %q", loc)
	}
}
