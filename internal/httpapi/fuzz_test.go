package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// The fuzz targets of this file, with FuzzCheckoutQuery, FuzzPurchaseQuery
// and FuzzItemsPage, cover the parsing of every route. `make fuzz` runs each
// for FUZZTIME; `make test` runs each briefly.

// FuzzQuery checks the strict query parser: no panic, an invalid_request
// error for anything it refuses, and nothing over maxQueryLen accepted.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"", "a=1", "a=1&a=2", "a=1&a=1", "a", "=", "&&", "a=%zz", "a=%2", "a=%", "a;b", "a=1;b=2",
		"a=%00", "a=%ff", "a=+", "%3D=%26", strings.Repeat("a=1&", 1100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := parseQuery(raw)
		if err != nil {
			wantInvalid(t, err)
			return
		}
		if len(raw) > maxQueryLen {
			t.Fatalf("accepted a %d-byte query", len(raw))
		}
		for key := range v {
			s, ok, err := queryValue(v, key, flashsale.EInvalid)
			if err != nil {
				wantInvalid(t, err)
				continue
			}
			if !ok || s != v[key][0] {
				t.Fatalf("queryValue(%q) = %q, %v; values %q", key, s, ok, v[key])
			}
		}
	})
}

// FuzzSaleID checks the parser of /sales/{id}: only positive decimal int64s
// of at most MaxIDLen ASCII digits are accepted, and their value is exact.
func FuzzSaleID(f *testing.F) {
	for _, s := range []string{
		"", "0", "1", "-1", "+1", " 1", "1 ", "01", "0x10", "1e3", "1.0", "9223372036854775807",
		"9223372036854775808", strings.Repeat("0", 63) + "1", strings.Repeat("0", 64) + "1", "١", "1\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := parseID(s)
		if !ok {
			if id != 0 {
				t.Fatalf("refused %q with id %d", s, id)
			}
			return
		}
		if id <= 0 || len(s) > flashsale.MaxIDLen || strings.TrimLeft(s, "0123456789") != "" {
			t.Fatalf("accepted %q as %d", s, id)
		}
		if want, err := strconv.ParseInt(s, 10, 64); err != nil || want != id {
			t.Fatalf("parsed %q as %d", s, id)
		}
		r := httptest.NewRequest("GET", "/sales/1", nil)
		r.SetPathValue("id", s)
		if got, err := parseSaleID(r); err != nil || got != id {
			t.Fatalf("parseSaleID(%q) = %d, %v", s, got, err)
		}
	})
}

// FuzzCreateSaleBody checks the decoder of POST /admin/sales: no panic; a
// refusal is invalid_request, request_too_large or unsupported_media_type,
// all 4xx; an accepted body holds both fields.
func FuzzCreateSaleBody(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"", `{"total_items":5,"duration":"10m"}`},
		{"application/json", `{"total_items":5,"duration":"10m"}`},
		{"application/json; charset=utf-8", `{"total_items":5,"duration":"1h"} `},
		{"text/plain", `{"total_items":5,"duration":"10m"}`},
		{"application/", `{}`},
		{"", `{"total_items":5,"duration":"10m"}{}`},
		{"", `{"total_items":99999999999999999999,"duration":"10m"}`},
		{"", `{"total_items":5,"duration":"9999999999h"}`},
		{"", `{"total_items":5,"duration":"\u0000"}`},
		{"", `{"total_items":5,"duration":"10m","x":1}`},
		{"", `[`},
		{"", ``},
		{"", `{"total_items":5,"duration":"` + strings.Repeat("9", maxBodyBytes) + `"}`},
	} {
		f.Add(s.ct, s.body)
	}
	f.Fuzz(func(t *testing.T, ct, body string) {
		r := httptest.NewRequest("POST", "/admin/sales", strings.NewReader(body))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		n, err := decodeCreateSale(httptest.NewRecorder(), r)
		if err != nil {
			code := flashsale.ErrorCode(err)
			status := errorStatus(code)
			if status < 400 || status >= 500 || flashsale.ErrorMessage(err) == "" {
				t.Fatalf("refusal %q answers %d: %v", code, status, err)
			}
			return
		}
		if len(body) > maxBodyBytes {
			t.Fatalf("accepted a %d-byte body", len(body))
		}
		var req createSaleRequest
		if json.Unmarshal([]byte(body), &req) != nil || req.TotalItems == nil || req.Duration == nil || *req.TotalItems != n.TotalItems {
			t.Fatalf("accepted %q as %+v", body, n)
		}
	})
}

// fuzzServer returns a Server on a fakeService, so that any request reaching
// the service is served.
func fuzzServer() (*Server, *flashsale.Sale) {
	svc, sale := newFakeService()
	svc.purchase = &flashsale.Purchase{Result: flashsale.PurchaseResult{Success: true, TotalPurchased: 1}, SaleID: sale.ID, UserID: "u1"}
	srv, err := NewServer(svc, Options{AdminToken: testAdminToken})
	if err != nil {
		panic(err)
	}
	return srv, sale
}

// FuzzRequest sends whole requests, as read from the wire, to the API's
// handler: whatever the method, target, header and body, the answer is never
// a 5xx, is JSON, and every error is the API's envelope with a code and a
// message. Requests net/http itself refuses to parse never reach the API.
func FuzzRequest(f *testing.F) {
	srv, sale := fuzzServer()
	item := strconv.FormatInt(flashsale.ItemID(sale.ID, 1), 10)
	code := flashsale.NewCode(sale.ID)
	for _, s := range []struct{ method, target, header, body string }{
		{"POST", "/checkout?user_id=u1&id=" + item, "", ""},
		{"POST", "/checkout?user_id=u1&id=" + item + "&item_id=" + item, "Content-Type: text/plain", "x"},
		{"POST", "/checkout?user_id=%00&id=1", "", ""},
		{"POST", "/purchase?code=" + code, "", ""},
		{"POST", "/purchase?code=" + code + "&code=" + code, "", "{}"},
		{"GET", "/sales/active", "", ""},
		{"GET", "/sales/" + strconv.FormatInt(sale.ID, 10), "", ""},
		{"GET", "/sales/" + strconv.FormatInt(sale.ID, 10) + "/items?offset=1&limit=2", "", ""},
		{"GET", "/sales/1/items?limit=%zz", "", ""},
		{"POST", "/admin/sales", "Authorization: Bearer " + testAdminToken, `{"total_items":5,"duration":"10m"}`},
		{"POST", "/admin/sales", "Authorization: Bearer " + testAdminToken, `{"total_items":5,"duration":"-1m"}`},
		{"POST", "/admin/sales", "Authorization: Basic x", `{}`},
		{"DELETE", "/sales/1", "", ""},
		{"GET", "/livez", "", ""},
		{"GET", "/nope/../sales/1", "", ""},
		{"OPTIONS", "*", "", ""},
	} {
		f.Add(s.method, s.target, s.header, s.body)
	}
	f.Fuzz(func(t *testing.T, method, target, header, body string) {
		var raw bytes.Buffer
		raw.WriteString(method + " " + target + " HTTP/1.1\r\nHost: t\r\n")
		if header != "" {
			raw.WriteString(header + "\r\n")
		}
		raw.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
		r, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil {
			return // net/http answers this itself, before the API
		}
		r.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %q: %d %s", method, target, w.Code, w.Body)
		}
		if r.URL.Path == "/livez" || r.URL.Path == "/readyz" || r.URL.Path == "/health" {
			return
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Fatalf("%s %q: Content-Type %q", method, target, ct)
		}
		if w.Code < 400 {
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("%s %q: %d with body %q", method, target, w.Code, w.Body)
			}
			return
		}
		var e errorResponse
		dec := json.NewDecoder(w.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil || e.Error == "" || e.Message == "" {
			t.Fatalf("%s %q: %d with body %q: not the error envelope (%v)", method, target, w.Code, w.Body, errors.Join(err))
		}
	})
}
