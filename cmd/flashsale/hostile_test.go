package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
)

// hostileExchange writes raw bytes to addr and reads one HTTP response; a
// request no well-behaved client would send can be tested this way.
func hostileExchange(t *testing.T, addr, req string) (status int, contentType string, body []byte) {
	t.Helper()
	resp, body := testenv.RawExchange(t, addr, req)
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

// TestHostileInputPersistsNothing sends oversized and malformed requests to a
// real instance on PostgreSQL and Redis: each answers its 4xx JSON error, and
// PostgreSQL holds afterwards only the attempt rows of the well-formed
// checkouts among them, and no sale, cart purchase, purchase or count.
func TestHostileInputPersistsNothing(t *testing.T) {
	e := MustEnv(t, nil)
	inst := MustStart(t, e)
	sale := MustCreateSale(t, inst.URL, 10, 10*time.Minute)
	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	count := func(query string) int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(context.Background(), query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	salesBefore := count(`SELECT count(*) FROM sales`)
	addr := strings.TrimPrefix(inst.URL, "http://")
	item := itoa(sale.ID*1_000_000 + 1)
	code := "AAAAAAAAAAA" + strings.Repeat("A", 21) // a sale id of 0: malformed
	mega := strings.Repeat("x", 1<<20)
	auth := "Authorization: Bearer test-admin-token\r\n"
	req := func(method, target, body string, headers ...string) string {
		return method + " " + target + " HTTP/1.1\r\nHost: t\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n" +
			strings.Join(headers, "") + "\r\n" + body
	}
	tests := []struct {
		name, req string
		status    int
		code      string
	}{
		{"10 KB query", req("POST", "/checkout?user_id=h1&id="+item+"&pad="+strings.Repeat("x", 10<<10), ""), 414, "uri_too_long"},
		{"100 KB URI", req("POST", "/purchase?code="+strings.Repeat("A", 100<<10), ""), 414, "uri_too_long"},
		{"64 KB header", req("POST", "/checkout?user_id=h1&id="+item, "", "X-Pad: "+strings.Repeat("x", 64<<10)+"\r\n"), 431, "headers_too_large"},
		{"1 MB checkout body", req("POST", "/checkout?user_id=h1&id="+item, mega), 413, "request_too_large"},
		{"1 MB admin body", req("POST", "/admin/sales", mega, auth), 413, "request_too_large"},
		{"NUL in user_id", req("POST", "/checkout?user_id=h%001&id="+item, ""), 400, "invalid_user_id"},
		{"invalid UTF-8 in user_id", req("POST", "/checkout?user_id=%ff&id="+item, ""), 400, "invalid_user_id"},
		{"invalid escape in user_id", req("POST", "/checkout?user_id=%zz&id="+item, ""), 400, "invalid_request"},
		{"repeated user_id", req("POST", "/checkout?user_id=h1&user_id=h2&id="+item, ""), 400, "invalid_user_id"},
		{"huge item id", req("POST", "/checkout?user_id=h1&id="+strings.Repeat("9", 40), ""), 400, "invalid_item_id"},
		{"overflowing item id", req("POST", "/checkout?user_id=h1&id=9223372036854775808", ""), 400, "invalid_item_id"},
		{"negative item id", req("POST", "/checkout?user_id=h1&id=-"+item, ""), 400, "invalid_item_id"},
		{"parameters in a form body", req("POST", "/checkout", "user_id=h1&id="+item, "Content-Type: application/x-www-form-urlencoded\r\n"), 413, "request_too_large"},
		{"malformed code", req("POST", "/purchase?code="+code, ""), 400, "invalid_code"},
		{"negative limit", req("GET", "/sales/"+itoa(sale.ID)+"/items?limit=-1", ""), 400, "invalid_request"},
		{"overflowing sale id", req("GET", "/sales/99999999999999999999", ""), 400, "invalid_request"},
		{"admin text body", req("POST", "/admin/sales", `{"total_items":5,"duration":"1m"}`, auth, "Content-Type: text/plain\r\n"), 415, "unsupported_media_type"},
		{"admin overflowing items", req("POST", "/admin/sales", `{"total_items":99999999999999999999,"duration":"1m"}`, auth), 400, "invalid_request"},
		{"admin negative duration", req("POST", "/admin/sales", `{"total_items":5,"duration":"-1m"}`, auth), 400, "invalid_request"},
		{"admin wrong token", req("POST", "/admin/sales", `{"total_items":5,"duration":"1m"}`, "Authorization: Bearer wrong-token\r\n"), 401, "unauthorized"},
		{"small checkout body", req("POST", "/checkout?user_id=h2&id="+item, "<xml/>", "Content-Type: application/xml\r\n"), 413, "request_too_large"},
		// Well-formed, so an attempt: an item of no sale.
		{"unknown item", req("POST", "/checkout?user_id=h1&id=999000001", ""), 404, "item_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, ct, body := hostileExchange(t, addr, tt.req)
			if ct != "application/json; charset=utf-8" {
				t.Fatalf("Content-Type %q, body %.200q", ct, body)
			}
			var got struct{ Error, Message string }
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %.200q: %v", body, err)
			}
			if status != tt.status || got.Error != tt.code || (tt.code != "" && got.Message == "") {
				t.Errorf("got %d %+v, want %d %q", status, got, tt.status, tt.code)
			}
		})
	}
	// Attempts are written in batches: wait for the one of the well-formed
	// checkout, then check that nothing else was written.
	deadline := time.Now().Add(10 * time.Second)
	for count(`SELECT count(*) FROM checkout_attempts`) < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for query, want := range map[string]int{
		`SELECT count(*) FROM checkout_attempts`:                       1,
		`SELECT count(*) FROM checkout_attempts WHERE user_id <> 'h1'`: 0,
		`SELECT count(*) FROM sales`:                                   salesBefore,
		`SELECT count(*) FROM carts WHERE state = 'purchased'`:         0,
		`SELECT count(*) FROM purchases`:                               0,
		`SELECT count(*) FROM user_sale_counts`:                        0,
		`SELECT count(*) FROM items WHERE sold`:                        0,
		`SELECT coalesce(sum(items_sold), 0) FROM sales`:               0,
	} {
		if got := count(query); got != want {
			t.Errorf("%s = %d, want %d", query, got, want)
		}
	}
}

// TestSlowHeadersCutOff checks that a client sending its header one byte a
// second is disconnected by READ_HEADER_TIMEOUT long before it is done, while
// the instance keeps serving others.
func TestSlowHeadersCutOff(t *testing.T) {
	e := MustEnv(t, env{"READ_HEADER_TIMEOUT": "1s"})
	inst := MustStart(t, e)
	conn, err := net.Dial("tcp", strings.TrimPrefix(inst.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(conn) // until the server closes the connection
		closed <- b
	}()
	header := "GET /sales/active HTTP/1.1\r\nHost: t\r\nX-Slow: " + strings.Repeat("s", 30) + "\r\n\r\n"
	sent := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
loop:
	for sent < len(header) {
		if _, err := conn.Write([]byte{header[sent]}); err != nil {
			break // the server closed the connection
		}
		sent++
		select {
		case <-tick.C:
		case b := <-closed:
			closed <- b
			break loop
		}
	}
	var got []byte
	select {
	case got = <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the connection stayed open")
	}
	if sent >= len(header) {
		t.Fatalf("the whole %d-byte header was sent without the server closing the connection", len(header))
	}
	// net/http closes the connection, silently or after its own plain-text
	// 400 for the partial request.
	if len(got) != 0 && !strings.HasPrefix(string(got), "HTTP/1.1 400 Bad Request\r\n") {
		t.Errorf("the server answered %q", got)
	}
	t.Logf("cut off after %d of %d header bytes", sent, len(header))
	if st, _ := call(t, http.MethodGet, inst.URL+"/sales/active", nil, nil); st != http.StatusOK && st != http.StatusNotFound {
		t.Errorf("GET /sales/active after the slow client: %d", st)
	}
}

// TestAdminOnItsOwnListener checks ADMIN_ADDR: the admin API answers on its
// own listener only, and the public listener answers 404 for it.
func TestAdminOnItsOwnListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := ln.Addr().String()
	ln.Close()
	e := MustEnv(t, env{"ADMIN_ADDR": adminAddr})
	inst := MustStart(t, e)
	body := `{"total_items": 5, "duration": "10m"}`
	if st, code := call(t, http.MethodPost, inst.URL+"/admin/sales", strings.NewReader(body), nil); st != http.StatusNotFound || code != "not_found" {
		t.Errorf("admin on the public listener: %d %s", st, code)
	}
	admin := "http://" + adminAddr
	var s loadgen.Sale
	if st, code := call(t, http.MethodPost, admin+"/admin/sales", strings.NewReader(body), &s); st != http.StatusCreated || s.TotalItems != 5 {
		t.Errorf("admin on its listener: %d %s %+v", st, code, s)
	}
	if st, code := call(t, http.MethodPost, admin+"/checkout?user_id=u1&id=1", nil, nil); st != http.StatusNotFound || code != "not_found" {
		t.Errorf("checkout on the admin listener: %d %s", st, code)
	}
	req, _ := http.NewRequest(http.MethodPost, admin+"/admin/sales", strings.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("admin without a token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// ADMIN_ADDR without ADMIN_TOKEN is a configuration error.
	_, err = loadConfig(func(k string) string { return map[string]string{"ADMIN_ADDR": adminAddr}[k] })
	if err == nil || !strings.Contains(err.Error(), "ADMIN_ADDR needs ADMIN_TOKEN") {
		t.Errorf("ADMIN_ADDR without ADMIN_TOKEN: %v", err)
	}
}
