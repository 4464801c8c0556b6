package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/telemetry"
	"github.com/flashsale/flashsale/internal/testenv"
)

// cutProxy forwards TCP connections to a server until Cut, which closes the
// listener and every connection: the server then looks down to its clients.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(p.Cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				c.Close()
				s.Close()
				return
			}
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) Addr() string { return p.ln.Addr().String() }

// Cut closes the listener and every connection through the proxy.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestSecretsNeverAppear runs the service with a database password in
// DATABASE_URL and an admin token, drives every route, answered and refused,
// then cuts the database off and drives them again, so that connection errors
// that could embed the URL are logged, traced and answered. Neither secret
// may appear in the logs (at debug level), in any span's name, attributes,
// events or status, in the scraped metrics, or in any response; and no user
// id or checkout code may appear in a metric or span either.
func TestSecretsNeverAppear(t *testing.T) {
	password := "pgPW-" + testenv.RandomID()
	token := "adminTOK-" + testenv.RandomID()
	users := []string{"usr-" + testenv.RandomID(), "usr-" + testenv.RandomID()}

	// The local PostgreSQL trusts its clients: the password is sent and
	// ignored. The database is reached through a proxy that can be cut.
	dbURL, err := url.Parse(testenv.MustDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, dbURL.Host)
	dbURL.Host = proxy.Addr()
	dbURL.User = url.UserPassword(dbURL.User.Username(), password)
	e := MustEnv(t, env{
		"DATABASE_URL":    dbURL.String(),
		"ADMIN_TOKEN":     token,
		"LOG_LEVEL":       "debug",
		"REQUEST_TIMEOUT": "2s",
	})
	// Libraries that write to the standard logger (OpenTelemetry's default
	// error handler does) reach the process's stderr: captured as well.
	stdLog := &testenv.Buffer{}
	log.SetOutput(stdLog)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	rec := tracetest.NewSpanRecorder()
	inst := MustStart(t, e, telemetry.WithSpanProcessor(rec))

	var (
		mu        sync.Mutex
		responses strings.Builder // every status line, header and body received
		codes     []string
	)
	send := func(method, path, body string, header ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, inst.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&responses, "%s\n", resp.Status) // the request itself is the client's
		for k, vs := range resp.Header {
			fmt.Fprintf(&responses, "%s: %s\n", k, strings.Join(vs, ", "))
		}
		responses.Write(b)
		return resp.StatusCode, string(b)
	}
	auth := []string{"Authorization", "Bearer " + token, "Content-Type", "application/json"}
	st, body := send("POST", "/admin/sales", `{"total_items":10,"duration":"10m"}`, auth...)
	if st != http.StatusCreated {
		t.Fatalf("create sale: %d %s", st, body)
	}
	var created loadgen.Sale
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.ID == 0 {
		t.Fatalf("create sale: %s: %v", body, err)
	}
	sale := created.ID
	drive := func(phase string) {
		for i, u := range users {
			item := itoa(flashsale.ItemID(sale, i+1))
			st, body := send("POST", "/checkout?user_id="+u+"&id="+item, "")
			if st == http.StatusOK {
				var c checkoutResp
				if err := json.Unmarshal([]byte(body), &c); err == nil && c.Code != "" {
					mu.Lock()
					codes = append(codes, c.Code)
					mu.Unlock()
					send("POST", "/purchase?code="+c.Code, "")
					send("POST", "/purchase?code="+c.Code, "") // replay
				}
			}
			send("POST", "/checkout?user_id="+u+"&id="+item, "")          // already in cart or sold
			send("POST", "/checkout?user_id="+u+"&id=999000001", "")      // no such item
			send("POST", "/checkout?user_id="+u+"&id="+item+"%zz", "")    // malformed
			send("POST", "/purchase?code="+flashsale.NewCode(sale), "")   // guessed
			send("POST", "/purchase?code="+flashsale.NewCode(sale+1), "") // unknown sale
		}
		send("GET", "/sales/active", "")
		send("GET", "/sales/"+itoa(sale), "")
		send("GET", "/sales/"+itoa(sale)+"/items?limit=5", "")
		send("GET", "/sales/1", "")
		send("POST", "/admin/sales", `{"total_items":0,"duration":"1m"}`, auth...)
		for _, a := range []string{"", "Bearer " + token + "x", "Basic " + token, "Bearer x" + token, token} {
			send("POST", "/admin/sales", `{"total_items":5,"duration":"1m"}`, "Authorization", a)
		}
		send("GET", "/health", "")
		send("GET", "/readyz", "")
		send("GET", "/livez", "")
		send("GET", "/nope?token="+url.QueryEscape(token), "")
		t.Logf("%s: driven", phase)
	}
	drive("database up")

	// The database goes away: connections break and new ones are refused.
	proxy.Cut()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if st, _ := send("GET", "/readyz", ""); st == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("readiness did not notice the database was down")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Before the wrong tokens of the second drive spend this address's
	// budget of failed admin authentications (10), after which the admin
	// API answers it 429.
	if st, _ := send("POST", "/admin/sales", `{"total_items":5,"duration":"2m"}`, auth...); st != http.StatusServiceUnavailable {
		t.Errorf("create sale with the database down: %d", st)
	}
	drive("database down")
	_, metrics := send("GET", "/metrics", "")
	inst.Stop(t) // flushes spans and the last log lines

	logs := inst.log.String() + stdLog.String()
	if !strings.Contains(logs, "database") || !strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("the database outage was not logged:\n%.4000s", logs)
	}
	var spans strings.Builder
	for _, s := range rec.Ended() {
		writeSpan(&spans, s)
	}
	if !strings.Contains(spans.String(), "status=Error") {
		t.Error("no span recorded an error")
	}
	secrets := map[string]string{"database password": password, "admin token": token}
	for where, text := range map[string]string{"logs": logs, "spans": spans.String(), "metrics": metrics, "responses": responses.String()} {
		for what, secret := range secrets {
			if i := strings.Index(text, secret); i >= 0 {
				t.Errorf("the %s appears in the %s: ...%s...", what, where, text[max(0, i-200):min(len(text), i+100)])
			}
		}
	}
	if len(codes) == 0 {
		t.Fatal("no checkout succeeded")
	}
	for where, text := range map[string]string{"spans": spans.String(), "metrics": metrics} {
		for _, id := range append(slices.Clone(users), codes...) {
			if i := strings.Index(text, id); i >= 0 {
				t.Errorf("user id or code %q appears in the %s: ...%s...", id, where, text[max(0, i-200):min(len(text), i+100)])
			}
		}
	}
}

// writeSpan writes everything a span holds that an exporter would send.
func writeSpan(w io.Writer, s sdktrace.ReadOnlySpan) {
	fmt.Fprintf(w, "span %s status=%s %q\n", s.Name(), s.Status().Code, s.Status().Description)
	for _, kv := range s.Attributes() {
		fmt.Fprintf(w, "  %s=%s\n", kv.Key, kv.Value.Emit())
	}
	for _, ev := range s.Events() {
		fmt.Fprintf(w, "  event %s\n", ev.Name)
		for _, kv := range ev.Attributes {
			fmt.Fprintf(w, "    %s=%s\n", kv.Key, kv.Value.Emit())
		}
	}
	for _, l := range s.Links() {
		for _, kv := range l.Attributes {
			fmt.Fprintf(w, "  link %s=%s\n", kv.Key, kv.Value.Emit())
		}
	}
	for _, kv := range s.Resource().Attributes() {
		fmt.Fprintf(w, "  resource %s=%s\n", kv.Key, kv.Value.Emit())
	}
}
