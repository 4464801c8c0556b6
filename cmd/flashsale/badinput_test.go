package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/internal/testenv"
)

func TestBadInputGetsJSONErrors(t *testing.T) {
	e := MustEnv(t, nil)
	inst := MustStart(t, e)
	sale := MustCreateSale(t, inst.URL, 10, 600e9)
	long := strings.Repeat("x", 65)
	cases := []struct {
		name, method, path, body, auth string
		status                         int
		code                           string
	}{
		{"checkout without user", "POST", "/checkout?id=1", "", "", 400, "invalid_user_id"},
		{"checkout with a 65-char user", "POST", "/checkout?id=1&user_id=" + long, "", "", 400, "invalid_user_id"},
		{"checkout without item", "POST", "/checkout?user_id=u", "", "", 400, "invalid_item_id"},
		{"checkout with a word for item", "POST", "/checkout?user_id=u&id=abc", "", "", 400, "invalid_item_id"},
		{"checkout with a negative item", "POST", "/checkout?user_id=u&id=-5", "", "", 400, "invalid_item_id"},
		{"checkout with an overflowing item", "POST", "/checkout?user_id=u&id=9223372036854775808", "", "", 400, "invalid_item_id"},
		{"checkout with id and item_id disagreeing", "POST", "/checkout?user_id=u&id=1&item_id=2", "", "", 400, "invalid_item_id"},
		{"checkout with a control character in user", "POST", "/checkout?user_id=a%00b&id=1", "", "", 400, "invalid_user_id"},
		{"checkout by GET", "GET", "/checkout?user_id=u&id=1", "", "", 405, "method_not_allowed"},
		{"purchase without code", "POST", "/purchase", "", "", 400, "invalid_code"},
		{"purchase with a short code", "POST", "/purchase?code=abc", "", "", 400, "invalid_code"},
		{"purchase with a long code", "POST", "/purchase?code=" + long, "", "", 400, "invalid_code"},
		{"purchase by GET", "GET", "/purchase?code=abc", "", "", 405, "method_not_allowed"},
		{"sale with a word id", "GET", "/sales/abc", "", "", 400, "invalid_request"},
		{"unknown sale", "GET", "/sales/12345", "", "", 404, "not_found"},
		{"items of an unknown sale", "GET", "/sales/12345/items", "", "", 404, "not_found"},
		{"items with limit 0", "GET", "/sales/" + itoa(sale.ID) + "/items?limit=0", "", "", 400, "invalid_request"},
		{"items with limit 1001", "GET", "/sales/" + itoa(sale.ID) + "/items?limit=1001", "", "", 400, "invalid_request"},
		{"items with a negative offset", "GET", "/sales/" + itoa(sale.ID) + "/items?offset=-1", "", "", 400, "invalid_request"},
		{"unknown route", "GET", "/nope", "", "", 404, "not_found"},
		{"admin without token", "POST", "/admin/sales", `{"total_items":5,"duration":"1m"}`, "", 401, "unauthorized"},
		{"admin with a wrong token", "POST", "/admin/sales", `{"total_items":5,"duration":"1m"}`, "Bearer wrong-token-x", 401, "unauthorized"},
		{"admin with malformed JSON", "POST", "/admin/sales", `{"total_items":`, "Bearer test-admin-token", 400, "invalid_request"},
		{"admin with an unknown field", "POST", "/admin/sales", `{"total_items":5,"duration":"1m","x":1}`, "Bearer test-admin-token", 400, "invalid_request"},
		{"admin with a bad duration", "POST", "/admin/sales", `{"total_items":5,"duration":"soon"}`, "Bearer test-admin-token", 400, "invalid_request"},
		{"admin with zero items", "POST", "/admin/sales", `{"total_items":0,"duration":"1m"}`, "Bearer test-admin-token", 400, "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body *strings.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			} else {
				body = strings.NewReader("")
			}
			req, err := http.NewRequest(c.method, inst.URL+c.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct{ Error, Message string }
			if err := decodeJSON(resp, &got); err != nil {
				t.Fatalf("status %d, not JSON: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != c.status || got.Error != c.code || got.Message == "" {
				t.Errorf("got %d %+v, want %d %s", resp.StatusCode, got, c.status, c.code)
			}
		})
	}
	// Only well-formed checkouts are attempts; none of the above was one.
	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT count(*) FROM checkout_attempts`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d attempts persisted for malformed requests", n)
	}
}
