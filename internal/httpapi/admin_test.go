package httpapi

import (
	"net/http"
	"net/http/httptest"
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
	h := newHarness(t, Options{AdminToken: testAdminToken})
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

// TestAdminAuthorization covers the forms of the Authorization header: each
// refusal is a 401 with WWW-Authenticate, logged at Warn with its reason and
// never with what was sent, and counted as a 401 of /admin/sales.
func TestAdminAuthorization(t *testing.T) {
	h := newHarness(t, Options{AdminToken: testAdminToken})
	wrong := "wrong-" + testAdminToken
	refusals := []struct {
		name   string
		auth   []string // Authorization headers sent
		reason string
	}{
		{"missing", nil, authMissing},
		{"empty", []string{""}, authMalformed},
		{"Basic scheme", []string{"Basic " + wrong}, authMalformed},
		{"Bearer alone", []string{"Bearer"}, authMalformed},
		{"Bearer and spaces", []string{"Bearer   "}, authMalformed},
		{"token without scheme", []string{wrong}, authMalformed},
		{"tab separator", []string{"Bearer\t" + testAdminToken}, authMalformed},
		{"two headers", []string{"Bearer " + testAdminToken, "Bearer " + testAdminToken}, authMalformed},
		{"wrong token", []string{"Bearer " + wrong}, authWrong},
		{"token prefix", []string{"Bearer " + testAdminToken[:len(testAdminToken)-1]}, authWrong},
		{"token and more", []string{"Bearer " + testAdminToken + " " + testAdminToken}, authWrong},
		{"token in another case", []string{"Bearer " + strings.ToUpper(testAdminToken)}, authWrong},
	}
	for i, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.logs.String())
			req := httptest.NewRequest("POST", "/admin/sales", strings.NewReader(`{"total_items":5,"duration":"10m"}`))
			req.RemoteAddr = "198.18.0." + itoa(int64(i+1)) + ":4242" // apart from the failure budget of one address
			for _, a := range tt.auth {
				req.Header.Add("Authorization", a)
			}
			w := httptest.NewRecorder()
			h.srv.Handler().ServeHTTP(w, req)
			wantError(t, w, http.StatusUnauthorized, flashsale.EUnauthorized)
			if got := w.Header().Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			logs := h.logs.String()[before:]
			if !strings.Contains(logs, "level=WARN msg=\"admin request refused\" reason="+tt.reason) {
				t.Errorf("refusal not logged with reason %s:\n%s", tt.reason, logs)
			}
			for _, secret := range []string{testAdminToken, wrong, strings.ToUpper(testAdminToken)} {
				if strings.Contains(logs, secret) {
					t.Errorf("log holds what was sent (%q):\n%s", secret, logs)
				}
			}
		})
	}
	if n := h.counter("http_requests_total", requestAttrs("/admin/sales", "POST", "401")...); n != int64(len(refusals)) {
		t.Errorf("401s counted %d, want %d", n, len(refusals))
	}
	assertNoSecrets(t, h, testAdminToken, wrong)
	// Accepted: the scheme in any case, spaces around the token.
	for i, auth := range []string{"Bearer " + testAdminToken, "bearer  " + testAdminToken, "BEARER " + testAdminToken + "  "} {
		body := `{"total_items":5,"duration":"` + itoa(int64(10+i)) + `m"}`
		w := h.do("POST", "/admin/sales", strings.NewReader(body), "Authorization", auth)
		if w.Code != http.StatusCreated && w.Code != http.StatusConflict { // a sale per second
			t.Errorf("%q: status %d %s", auth, w.Code, w.Body)
		}
	}
}

// TestAdminSeparateListener checks that with SeparateAdmin the API's handler
// does not serve the admin route and the admin handler serves only it.
func TestAdminSeparateListener(t *testing.T) {
	h := newHarness(t, Options{AdminToken: testAdminToken, SeparateAdmin: true})
	body := `{"total_items":5,"duration":"10m"}`
	w := h.do("POST", "/admin/sales", strings.NewReader(body), "Authorization", "Bearer "+testAdminToken)
	wantError(t, w, http.StatusNotFound, flashsale.ENotFound)
	admin := h.srv.AdminHandler()
	if admin == nil {
		t.Fatal("no admin handler")
	}
	do := func(method, target, body, auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		admin.ServeHTTP(w, req)
		return w
	}
	wantError(t, do("POST", "/admin/sales", body, ""), http.StatusUnauthorized, flashsale.EUnauthorized)
	wantError(t, do("GET", "/admin/sales", "", "Bearer "+testAdminToken), http.StatusMethodNotAllowed, flashsale.EMethodNotAllowed)
	wantError(t, do("POST", "/checkout?user_id=u1&id=1", "", ""), http.StatusNotFound, flashsale.ENotFound)
	wantError(t, do("GET", "/sales/active", "", ""), http.StatusNotFound, flashsale.ENotFound)
	var got saleResponse
	decode(t, do("POST", "/admin/sales", body, "Bearer "+testAdminToken), http.StatusCreated, &got)
	if n := h.counter("http_requests_total", requestAttrs("/admin/sales", "POST", "201")...); n != 1 {
		t.Errorf("admin 201 counted %d times", n)
	}
	// Without an admin token there is nothing to serve separately.
	if newHarness(t, Options{SeparateAdmin: true}).srv.AdminHandler() != nil {
		t.Error("admin handler without an admin token")
	}
}

// TestAdminGuessingThrottled checks that failed admin authentications are
// limited per client address: past adminFailureLimit in a window, the
// address is answered 429 with Retry-After whatever it sends, the right
// token included, until the window ends; other addresses are not held back;
// and the logs never hold what was sent.
func TestAdminGuessingThrottled(t *testing.T) {
	h := newHarness(t, Options{AdminToken: testAdminToken})
	now := time.Now()
	h.srv.adminGuard.now = func() time.Time { return now }
	send := func(addr, token string, duration int) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/admin/sales", strings.NewReader(`{"total_items":5,"duration":"`+itoa(int64(duration))+`m"}`))
		req.RemoteAddr = addr + ":4242"
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.srv.Handler().ServeHTTP(w, req)
		return w
	}
	const attacker, operator = "192.0.2.66", "198.51.100.7"
	guess := func(i int) string { return "guess-" + itoa(int64(i)) + "-" + testAdminToken }
	for i := range adminFailureLimit {
		wantError(t, send(attacker, guess(i), 10), http.StatusUnauthorized, flashsale.EUnauthorized)
	}
	for i, token := range []string{guess(adminFailureLimit), testAdminToken} {
		w := send(attacker, token, 10)
		wantError(t, w, http.StatusTooManyRequests, flashsale.ERateLimited)
		if ra := w.Header().Get("Retry-After"); ra != "60" {
			t.Errorf("request %d over the budget: Retry-After %q, want 60", i, ra)
		}
	}
	if w := send(operator, testAdminToken, 11); w.Code != http.StatusCreated {
		t.Errorf("another address with the token: %d %s", w.Code, w.Body)
	}
	// IPv6 addresses are counted per /64, as the abuse limits count them.
	for i := range adminFailureLimit {
		send("[2001:db8:1:2::"+itoa(int64(i+1))+"]", guess(i), 10)
	}
	wantError(t, send("[2001:db8:1:2::ff]", guess(0), 10), http.StatusTooManyRequests, flashsale.ERateLimited)

	now = now.Add(adminFailureWindow) // the next window
	if w := send(attacker, testAdminToken, 12); w.Code != http.StatusCreated && w.Code != http.StatusConflict {
		t.Errorf("the attacker's address in the next window, with the token: %d %s", w.Code, w.Body)
	}
	logs := h.logs.String()
	if n := strings.Count(logs, "admin authentication failures over the limit"); n != 2 {
		t.Errorf("the spent budget logged %d times, want 2 (one per address):\n%s", n, logs)
	}
	if n := strings.Count(logs, `msg="admin request refused"`); n != 2*adminFailureLimit {
		t.Errorf("%d refusals logged, want %d", n, 2*adminFailureLimit)
	}
	for i := range adminFailureLimit + 1 {
		if strings.Contains(logs, guess(i)) {
			t.Fatalf("the log holds a token sent:\n%s", logs)
		}
	}
	assertNoSecrets(t, h, testAdminToken)
	if n := h.counter("http_requests_total", requestAttrs("/admin/sales", "POST", "429")...); n != 3 {
		t.Errorf("429s counted %d, want 3", n)
	}
}
