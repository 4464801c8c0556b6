package main

import (
	"crypto/rand"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/flashsale/flashsale/internal/telemetry"
	"github.com/flashsale/flashsale/internal/testenv"
)

// traceOf returns the ended spans of one trace, waiting briefly for spans
// that end after the response (the attempt batch, the server span).
func traceOf(t *testing.T, rec *tracetest.SpanRecorder, id trace.TraceID, want ...string) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var spans []sdktrace.ReadOnlySpan
		names := map[string]bool{}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == id {
				spans = append(spans, s)
				names[s.Name()] = true
			}
		}
		missing := slices.DeleteFunc(slices.Clone(want), func(n string) bool { return names[n] })
		if len(missing) == 0 {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s lacks spans %v; has %v", id, missing, spanNames(spans))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name())
	}
	return names
}

func named(spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

func attrOf(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// under reports whether s descends from ancestor within spans.
func under(spans []sdktrace.ReadOnlySpan, s, ancestor sdktrace.ReadOnlySpan) bool {
	byID := make(map[trace.SpanID]sdktrace.ReadOnlySpan, len(spans))
	for _, c := range spans {
		byID[c.SpanContext().SpanID()] = c
	}
	for p := s.Parent().SpanID(); p.IsValid(); {
		if p == ancestor.SpanContext().SpanID() {
			return true
		}
		up, ok := byID[p]
		if !ok {
			return false
		}
		p = up.Parent().SpanID()
	}
	return false
}

// dbSystem tells the spans of redisotel and otelsql by their
// db.system attribute.
func dbSystem(s sdktrace.ReadOnlySpan) string {
	for _, key := range []attribute.Key{"db.system.name", "db.system"} {
		if v, ok := attrOf(s, key); ok {
			return v.AsString()
		}
	}
	return ""
}

// tracedRequest sends a POST with a W3C traceparent of a fresh sampled trace
// and returns that trace's id and the remote parent span id.
func tracedRequest(t *testing.T, url string) (trace.TraceID, trace.SpanID, int) {
	t.Helper()
	var tid trace.TraceID
	var sid trace.SpanID
	copy(tid[:], randomBytes(16))
	copy(sid[:], randomBytes(8))
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Header.Set("traceparent", "00-"+tid.String()+"-"+sid.String()+"-01")
	req.Header.Set("baggage", "client.tier=gold")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return tid, sid, resp.StatusCode
}

// TestTraces checks the trace of a checkout and of a purchase: the server
// span (named by route, child of the incoming traceparent) → the domain span
// (sale id, outcome, item count) → Redis command and SQL statement spans,
// with no user id, code or bound value in any attribute. The batches that
// write attempts and purchases are linked to their requests and children of
// the first.
func TestTraces(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	e := MustEnv(t, nil)
	inst := MustStart(t, e, telemetry.WithSpanProcessor(rec))
	sale := MustCreateSale(t, inst.URL, 5, time.Hour)
	const user = "tracer-user-7f3a"
	item := itoa(sale.ID*1_000_000 + 2)

	tid, parent, st := tracedRequest(t, inst.URL+"/checkout?user_id="+user+"&id="+item)
	if st != http.StatusOK {
		t.Fatalf("checkout: %d", st)
	}
	spans := traceOf(t, rec, tid, "POST /checkout", "sale.checkout")
	server := named(spans, "POST /checkout")
	if server.SpanKind() != trace.SpanKindServer || server.Parent().SpanID() != parent || !server.Parent().IsRemote() {
		t.Errorf("server span: kind %v parent %v remote %v; want server, child of the incoming %v",
			server.SpanKind(), server.Parent().SpanID(), server.Parent().IsRemote(), parent)
	}
	if v, _ := attrOf(server, "http.route"); v.AsString() != "/checkout" {
		t.Errorf("server span http.route = %q", v.AsString())
	}
	domain := named(spans, "sale.checkout")
	if domain.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Error("sale.checkout is not a child of the server span")
	}
	for key, want := range map[attribute.Key]any{"sale.id": sale.ID, "sale.outcome": "accepted", "cart.items_count": int64(1)} {
		if v, ok := attrOf(domain, key); !ok || v.AsInterface() != want {
			t.Errorf("sale.checkout %s = %v, want %v", key, v.AsInterface(), want)
		}
	}
	redisSpans := 0
	for _, s := range spans {
		if dbSystem(s) == "redis" {
			redisSpans++
			if !under(spans, s, domain) {
				t.Errorf("redis span %q is not under sale.checkout", s.Name())
			}
			for _, kv := range s.Attributes() {
				if kv.Key == "db.statement" || kv.Key == "db.query.text" || strings.HasPrefix(string(kv.Key), "code.") {
					t.Errorf("redis span %q has %s: statements and caller info must be off", s.Name(), kv.Key)
				}
			}
		}
	}
	if redisSpans == 0 {
		t.Errorf("checkout trace has no Redis span: %v", spanNames(spans))
	}

	// The attempt row was written by a batch span linked to the request; as
	// the batch's first (here only) request, the checkout is also its parent,
	// so the checkout's trace shows the insert.
	var batch sdktrace.ReadOnlySpan
	deadline := time.Now().Add(5 * time.Second)
	for batch == nil && time.Now().Before(deadline) {
		for _, s := range rec.Ended() {
			for _, link := range s.Links() {
				if link.SpanContext.TraceID() == tid && s.Name() == "checkouts.commit" {
					batch = s
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if batch == nil {
		t.Fatal("no checkouts.commit span linked to the checkout request")
	}
	spans = traceOf(t, rec, tid, "checkouts.commit")
	if !under(spans, batch, domain) {
		t.Error("checkouts.commit of a lone checkout is not under sale.checkout")
	}
	var batchSQL []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if dbSystem(s) == "postgresql" && under(spans, s, batch) {
			batchSQL = append(batchSQL, s)
		}
	}
	if len(batchSQL) == 0 {
		t.Errorf("attempt batch has no SQL span: %v", spanNames(spans))
	}

	// The purchase: SQL statements and the Redis lock under sale.purchase.
	var code string
	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	if err := db.QueryRow(`SELECT checkout_code FROM checkout_attempts WHERE user_id = $1`, user).Scan(&code); err != nil {
		t.Fatal(err)
	}
	tid, parent, st = tracedRequest(t, inst.URL+"/purchase?code="+code)
	if st != http.StatusOK {
		t.Fatalf("purchase: %d", st)
	}
	spans = traceOf(t, rec, tid, "POST /purchase", "sale.purchase", "purchases.commit")
	server = named(spans, "POST /purchase")
	if server.Parent().SpanID() != parent {
		t.Error("purchase server span is not a child of the incoming traceparent")
	}
	domain = named(spans, "sale.purchase")
	if domain.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Error("sale.purchase is not a child of the server span")
	}
	for key, want := range map[attribute.Key]any{"sale.id": sale.ID, "sale.outcome": "purchased", "purchase.items_purchased": int64(1)} {
		if v, ok := attrOf(domain, key); !ok || v.AsInterface() != want {
			t.Errorf("sale.purchase %s = %v, want %v", key, v.AsInterface(), want)
		}
	}
	kinds := map[string]int{}
	for _, s := range spans {
		sys := dbSystem(s)
		if sys == "" {
			continue
		}
		kinds[sys]++
		if !under(spans, s, domain) {
			t.Errorf("%s span %q is not under sale.purchase", sys, s.Name())
		}
	}
	if kinds["redis"] == 0 || kinds["postgresql"] < 3 {
		t.Errorf("purchase trace has %v Redis/SQL spans, want Redis and each SQL statement: %v", kinds, spanNames(spans))
	}

	// No span of either trace, nor the batch, holds the user id, the code or
	// the item id in an attribute.
	for _, s := range append(rec.Ended(), batch) {
		for _, kv := range s.Attributes() {
			v := kv.Value.Emit()
			if strings.Contains(v, user) || strings.Contains(v, code) || strings.Contains(v, item) {
				t.Errorf("span %q attribute %s = %q holds an id", s.Name(), kv.Key, v)
			}
		}
	}
}

// TestTracesNotForProbes checks that probes and scrapes start no traces.
func TestTracesNotForProbes(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	inst := MustStart(t, MustEnv(t, nil), telemetry.WithSpanProcessor(rec))
	before := len(rec.Ended())
	for _, p := range []string{"/health", "/readyz", "/livez", "/metrics"} {
		resp, err := client.Get(inst.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	time.Sleep(100 * time.Millisecond)
	if spans := rec.Ended()[before:]; len(spans) > 0 {
		t.Errorf("probes and scrapes made spans: %v", spanNames(spans))
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
