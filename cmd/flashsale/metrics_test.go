package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
)

const (
	acceptText        = "text/plain;version=0.0.4"
	acceptOpenMetrics = "application/openmetrics-text; version=1.0.0"
)

// catalog is the metric catalog's series contract (docs/TELEMETRY.md): every name with its label names. The
// catalog's gauge sale_items_sold is served as sale_items_sold_current (its
// OpenMetrics family would clash with the counter sale_items_sold_total's), and
// Prometheus records sale_items_sold from it (prometheus/tests/recording.yml).
var catalog = map[string][]string{
	"http_request_duration_seconds":  {"handler", "method", "status_code"},
	"http_requests_total":            {"handler", "method", "status_code"},
	"sale_items_offered":             nil,
	"sale_items_sold_current":        nil,
	"sale_items_sold_total":          nil,
	"checkout_attempts_total":        nil,
	"checkout_success_total":         nil,
	"checkout_failure_total":         {"reason"},
	"purchase_attempts_total":        nil,
	"purchase_success_total":         nil,
	"purchase_failure_total":         {"reason"},
	"db_query_duration_seconds":      {"query_type", "table"},
	"db_connections_active":          nil,
	"db_connections_idle":            nil,
	"redis_command_duration_seconds": {"command"},
	"redis_lock_attempts_total":      {"lock_type"},
	"redis_lock_success_total":       {"lock_type"},
	"redis_lock_failure_total":       {"lock_type", "reason"},
	"redis_lock_duration_seconds":    {"lock_type"},
	"process_resident_memory_bytes":  nil,
	"process_cpu_seconds_total":      nil,
	"go_goroutines":                  nil,
	"go_memstats_heap_alloc_bytes":   nil,
	"go_memstats_sys_bytes":          nil,
	"sale_active":                    nil,
	"health_service_up":              {"service"},
}

// buckets are the catalog's histogram boundaries.
var buckets = map[string][]float64{
	"http_request_duration_seconds":  {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	"db_query_duration_seconds":      {.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	"redis_command_duration_seconds": {.0001, .0005, .001, .005, .01, .025, .05, .1, .25, .5, 1},
}

// metricsScrape is one decoded scrape of /metrics.
type metricsScrape map[string]*dto.MetricFamily

// scrapeMetrics fetches base/metrics in the text format and decodes it. Any
// status but 200 fails the test: one bad instrument fails the whole scrape.
func scrapeMetrics(t testing.TB, base string) metricsScrape {
	t.Helper()
	body, header := fetchMetrics(t, base, acceptText)
	fams := metricsScrape{}
	dec := expfmt.NewDecoder(strings.NewReader(body), expfmt.ResponseFormat(header))
	for {
		var mf dto.MetricFamily
		err := dec.Decode(&mf)
		if errors.Is(err, io.EOF) {
			return fams
		}
		if err != nil {
			t.Fatalf("decode /metrics: %v\n%s", err, body)
		}
		fams[mf.GetName()] = &mf
	}
}

func fetchMetrics(t testing.TB, base, accept string) (string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d\n%s", resp.StatusCode, raw)
	}
	return string(raw), resp.Header
}

// value sums the series of name whose labels include want: a counter's or
// gauge's value, or a histogram's sample count.
func (s metricsScrape) value(name string, want map[string]string) float64 {
	mf := s[name]
	var sum float64
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// labelValues returns the values of label across name's series.
func (s metricsScrape) labelValues(name, label string) []string {
	var vals []string
	for _, m := range s[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				vals = append(vals, l.GetValue())
			}
		}
	}
	slices.Sort(vals)
	return slices.Compact(vals)
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// l builds a label set from pairs.
func l(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// tally is the ground truth of one instance's traffic: what the client sent
// and what it was answered.
type tally struct {
	mu       sync.Mutex
	requests map[[3]string]int // handler, method, status -> count
	checkout map[string]int    // "" for 200, else the error code
	purchase map[string]int    // "" for a 200 that bought, nothing_available, or the error code
	sold     int               // items bought by first (non-replay) purchases
}

func newTally() *tally {
	return &tally{requests: map[[3]string]int{}, checkout: map[string]int{}, purchase: map[string]int{}}
}

// checkout sends a checkout through inst and records its outcome.
func (ty *tally) doCheckout(t testing.TB, base, rawQuery string) (checkoutResp, int, string) {
	var r checkoutResp
	st, code := call(t, http.MethodPost, base+"/checkout?"+rawQuery, nil, &r)
	ty.mu.Lock()
	defer ty.mu.Unlock()
	ty.requests[[3]string{"/checkout", "POST", strconv.Itoa(st)}]++
	ty.checkout[code]++
	return r, st, code
}

// doPurchase sends a purchase and records its outcome; firstTime says whether
// the code was never purchased before (so its items count as sold here).
func (ty *tally) doPurchase(t testing.TB, base, code string, firstTime bool) (purchaseResp, int, string) {
	r, st, ec := purchase(t, base, code)
	ty.mu.Lock()
	defer ty.mu.Unlock()
	ty.requests[[3]string{"/purchase", "POST", strconv.Itoa(st)}]++
	switch {
	case ec != "":
		ty.purchase[ec]++
	case r.TotalPurchased == 0:
		ty.purchase["nothing_available"]++
	default:
		ty.purchase[""]++
		if firstTime {
			ty.sold += r.TotalPurchased
		}
	}
	return r, st, ec
}

func (ty *tally) get(t testing.TB, base, path, handler string) {
	st, _ := call(t, http.MethodGet, base+path, nil, nil)
	ty.mu.Lock()
	defer ty.mu.Unlock()
	ty.requests[[3]string{handler, "GET", strconv.Itoa(st)}]++
}

// TestMetricsGroundTruth drives a scripted scenario with known outcomes
// (every failure reason, a contended purchase lock, a contended rotation
// lock) through two instances and checks each catalog instrument against
// what the client saw and what PostgreSQL holds.
func TestMetricsGroundTruth(t *testing.T) {
	e := MustEnv(t, env{"USER_ITEM_LIMIT": "2"})
	a := MustStart(t, e)
	ta := newTally()
	rdb := testenv.MustRedisClient(t, e["REDIS_URL"])
	prefix := e["REDIS_KEY_PREFIX"]

	// Instance b starts while another holder has the rotation lock: it must
	// read the sales a created instead of creating them.
	lockKey := prefix + ":lock:sale_rotation"
	if err := rdb.Set(context.Background(), lockKey, "held-by-test", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	b := MustStart(t, e)
	rdb.Del(context.Background(), lockKey)
	tb := newTally()

	// Sale "ended" lasts 2 s and takes one checkout while it runs.
	ended := MustCreateSale(t, a.URL, 5, 2*time.Second)
	ta.requests[[3]string{"/admin/sales", "POST", "201"}]++
	endedCode, st, _ := ta.doCheckout(t, a.URL, "user_id=late&id="+itoa(ended.ID*1_000_000+1))
	if st != http.StatusOK {
		t.Fatalf("checkout in the short sale: %d", st)
	}
	time.Sleep(time.Until(ended.EndedAt) + 100*time.Millisecond)
	ta.doCheckout(t, a.URL, "user_id=late&id="+itoa(ended.ID*1_000_000+2)) // sale_ended
	ta.doPurchase(t, a.URL, endedCode.Code, true)                          // sale_ended

	sale := MustCreateSale(t, a.URL, 6, time.Hour)
	ta.requests[[3]string{"/admin/sales", "POST", "201"}]++
	item := func(seq int) string { return itoa(sale.ID*1_000_000 + int64(seq)) }
	// The scheduled next sale has not started: find it through the store.
	var next loadgen.Sale
	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	if err := db.QueryRow(`SELECT id FROM sales WHERE started_at > now() ORDER BY id LIMIT 1`).Scan(&next.ID); err != nil {
		t.Fatalf("next sale: %v", err)
	}

	u1, _, _ := ta.doCheckout(t, a.URL, "user_id=u1&id="+item(1))
	ta.doCheckout(t, a.URL, "user_id=u1&id="+item(1)) // already_in_cart
	ta.doCheckout(t, a.URL, "user_id=u1&id="+item(2))
	ta.doCheckout(t, a.URL, "user_id=u1&id="+item(3))                   // user_limit_reached
	ta.doCheckout(t, a.URL, "user_id=&id="+item(3))                     // invalid_user_id
	ta.doCheckout(t, a.URL, "user_id=u2&id=abc")                        // invalid_item_id
	ta.doCheckout(t, a.URL, "user_id=u2&id="+item(999))                 // item_not_found
	ta.doCheckout(t, a.URL, "user_id=u2&id="+itoa(next.ID*1_000_000+1)) // sale_not_started
	ta.doCheckout(t, a.URL, "user_id=u2&id="+item(1)+"&user_id=u3")     // invalid_user_id (twice)
	u3, _, _ := tb.doCheckout(t, b.URL, "user_id=u3&id="+item(4))       // through b
	u4, _, _ := ta.doCheckout(t, a.URL, "user_id=u4&id="+item(4))       // same item, other cart
	u5, _, _ := tb.doCheckout(t, b.URL, "user_id=u5&id="+item(5))       // bought later through b
	u5code := u5.Code
	ta.doPurchase(t, a.URL, "not-a-code", true)                         // invalid_code
	ta.doPurchase(t, a.URL, strings.Repeat("A", len(u1.Code)), true)    // invalid_code or code_not_found
	ta.doPurchase(t, a.URL, u1.Code[:11]+strings.Repeat("A", 21), true) // code_not_found
	if r, st, _ := ta.doPurchase(t, a.URL, u1.Code, true); st != 200 || r.TotalPurchased != 2 {
		t.Fatalf("purchase u1: %d %+v", st, r)
	}
	ta.doPurchase(t, a.URL, u1.Code, false)           // replay: a success, no item
	ta.doCheckout(t, a.URL, "user_id=u6&id="+item(1)) // item_sold
	tb.doPurchase(t, b.URL, u3.Code, true)            // buys item 4 through b
	ta.doPurchase(t, a.URL, u4.Code, true)            // nothing_available
	lock := prefix + ":{" + prefix + ":" + itoa(sale.ID) + "}:lock:purchase:" + u5code
	if err := rdb.Set(context.Background(), lock, "held-by-test", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	tb.doPurchase(t, b.URL, u5code, true) // purchase_in_progress after waiting
	rdb.Del(context.Background(), lock)
	tb.doPurchase(t, b.URL, u5code, true) // buys item 5
	ta.get(t, a.URL, "/sales/active", "/sales/active")
	ta.get(t, a.URL, "/sales/"+itoa(sale.ID), "/sales/{id}")
	ta.get(t, a.URL, "/sales/"+itoa(sale.ID)+"/items?limit=3", "/sales/{id}/items")
	ta.get(t, a.URL, "/nowhere/"+u1.Code, "unmatched")
	for _, probe := range []string{"/health", "/livez", "/readyz"} {
		call(t, http.MethodGet, a.URL+probe, nil, nil) // not API traffic
	}

	wantCheckout := []string{"already_in_cart", "user_limit_reached", "invalid_user_id", "invalid_item_id",
		"item_not_found", "sale_not_started", "sale_ended", "item_sold"}
	wantPurchase := []string{"invalid_code", "code_not_found", "sale_ended", "nothing_available", "purchase_in_progress"}
	for _, r := range wantCheckout {
		if ta.checkout[r]+tb.checkout[r] == 0 {
			t.Errorf("scenario produced no checkout %s (got %v)", r, ta.checkout)
		}
	}
	for _, r := range wantPurchase {
		if ta.purchase[r]+tb.purchase[r] == 0 {
			t.Errorf("scenario produced no purchase %s (got %v / %v)", r, ta.purchase, tb.purchase)
		}
	}

	var dbSold, saleSold int
	if err := db.QueryRow(`SELECT count(*) FROM purchases`).Scan(&dbSold); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT items_sold FROM sales WHERE id = $1`, sale.ID).Scan(&saleSold); err != nil {
		t.Fatal(err)
	}
	if dbSold != 4 || saleSold != 4 {
		t.Errorf("PostgreSQL: %d purchases, sale items_sold %d; the scenario sells 4", dbSold, saleSold)
	}

	secrets := []string{u1.Code, u3.Code, u4.Code, u5code, endedCode.Code}
	for name, inst := range map[string]*struct {
		base string
		ty   *tally
	}{"a": {a.URL, ta}, "b": {b.URL, tb}} {
		t.Run("instance_"+name, func(t *testing.T) {
			s := scrapeMetrics(t, inst.base)
			var optional []string
			for op, outcomes := range map[string]map[string]int{"checkout": inst.ty.checkout, "purchase": inst.ty.purchase} {
				if len(outcomes) == 0 || (len(outcomes) == 1 && outcomes[""] > 0) {
					optional = append(optional, op+"_failure_total")
				}
			}
			checkCatalog(t, s, optional...)
			checkTally(t, s, inst.ty)
			checkNoIDs(t, s, secrets)
			// Both read the authoritative count of the active sale.
			if got := s.value("sale_items_sold_current", nil); int(got) != saleSold {
				t.Errorf("sale_items_sold_current = %v, PostgreSQL says %d", got, saleSold)
			}
			if _, ok := s["sale_items_sold"]; ok {
				t.Error("sale_items_sold is served: in OpenMetrics it is the family of the counter sale_items_sold_total")
			}
			if got := s.value("sale_items_offered", nil); got != 6 {
				t.Errorf("sale_items_offered = %v, want 6", got)
			}
			if got := s.value("sale_active", nil); got != 1 {
				t.Errorf("sale_active = %v, want 1", got)
			}
			for _, svc := range []string{"app", "database", "redis"} {
				if got := s.value("health_service_up", l("service", svc)); got != 1 {
					t.Errorf("health_service_up{service=%q} = %v, want 1", svc, got)
				}
			}
			checkLocks(t, s)
		})
	}
	sa, sb := scrapeMetrics(t, a.URL), scrapeMetrics(t, b.URL)
	if got := sa.value("sale_items_sold_total", nil); int(got) != ta.sold {
		t.Errorf("a: sale_items_sold_total = %v, a sold %d", got, ta.sold)
	}
	if got := sb.value("sale_items_sold_total", nil); int(got) != tb.sold {
		t.Errorf("b: sale_items_sold_total = %v, b sold %d", got, tb.sold)
	}
	if got := sa.value("sale_items_sold_total", nil) + sb.value("sale_items_sold_total", nil); int(got) != dbSold {
		t.Errorf("sale_items_sold_total over instances = %v, PostgreSQL has %d purchases", got, dbSold)
	}
	if got := sa.value("redis_lock_success_total", l("lock_type", "sale_rotation")); got < 1 {
		t.Errorf("a: rotation lock never taken (%v)", got)
	}
	if got := sb.value("redis_lock_failure_total", l("lock_type", "sale_rotation", "reason", "contended")); got < 1 {
		t.Errorf("b: rotation lock contention not counted (%v)", got)
	}
	if got := sb.value("redis_lock_failure_total", l("lock_type", "purchase", "reason", "contended")); got < 1 {
		t.Errorf("b: purchase lock contention not counted (%v)", got)
	}
	if got := sa.value("db_query_duration_seconds", l("query_type", "insert", "table", "checkout_attempts")); got < 1 {
		t.Errorf("a: no attempt insert in db_query_duration_seconds")
	}
	if got := sa.value("redis_command_duration_seconds", l("command", "evalsha")); got < 1 {
		t.Errorf("a: no evalsha in redis_command_duration_seconds (commands %v)", sa.labelValues("redis_command_duration_seconds", "command"))
	}
}

// checkCatalog checks that every catalog series is there with exactly its
// label names, with the catalog's buckets, and without scope labels.
// Families in optional may be absent: failure counters per reason appear with
// their first failure.
func checkCatalog(t *testing.T, s metricsScrape, optional ...string) {
	t.Helper()
	for name, labels := range catalog {
		mf, ok := s[name]
		if !ok || len(mf.GetMetric()) == 0 {
			if !slices.Contains(optional, name) {
				t.Errorf("%s missing", name)
			}
			continue
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, lp := range m.GetLabel() {
				got = append(got, lp.GetName())
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(labels))
			if !slices.Equal(got, want) {
				t.Errorf("%s has labels %v, want %v", name, got, want)
				break
			}
		}
	}
	for name, want := range buckets {
		for _, m := range s[name].GetMetric() {
			var got []float64
			for _, b := range m.GetHistogram().GetBucket() {
				if !math.IsInf(b.GetUpperBound(), 1) {
					got = append(got, b.GetUpperBound())
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s buckets %v, want %v", name, got, want)
			}
			break
		}
	}
	// otelhttp's stable duration histogram stays; its body-size histograms
	// (semantic conventions in development) are dropped.
	if len(s["http_server_request_duration_seconds"].GetMetric()) == 0 {
		t.Error("http_server_request_duration_seconds (otelhttp) is missing")
	}
	for name := range s {
		if strings.Contains(name, "body_size") {
			t.Errorf("%s is served: the body-size histograms are dropped", name)
		}
	}
	for name, mf := range s {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.HasPrefix(lp.GetName(), "otel_scope_") {
					t.Errorf("%s carries scope label %s: series identity would change with library versions", name, lp.GetName())
					return
				}
			}
		}
	}
}

// checkTally compares the API instruments with what the client saw.
func checkTally(t *testing.T, s metricsScrape, ty *tally) {
	t.Helper()
	ty.mu.Lock()
	defer ty.mu.Unlock()
	sent := 0
	for k, n := range ty.requests {
		sent += n
		labels := l("handler", k[0], "method", k[1], "status_code", k[2])
		if got := s.value("http_requests_total", labels); int(got) != n {
			t.Errorf("http_requests_total%v = %v, sent %d", labels, got, n)
		}
		if got := s.value("http_request_duration_seconds", labels); int(got) != n {
			t.Errorf("http_request_duration_seconds_count%v = %v, sent %d", labels, got, n)
		}
	}
	if got := s.value("http_requests_total", nil); int(got) != sent {
		t.Errorf("http_requests_total = %v, want %d: probes or scrapes counted as API traffic?", got, sent)
	}
	for _, h := range s.labelValues("http_requests_total", "handler") {
		if !strings.HasPrefix(h, "/") && h != "unmatched" {
			t.Errorf("handler label %q is not a route pattern", h)
		}
	}
	check := func(op string, outcomes map[string]int) {
		total := 0
		for reason, n := range outcomes {
			total += n
			if reason == "" {
				continue
			}
			if got := s.value(op+"_failure_total", l("reason", reason)); int(got) != n {
				t.Errorf("%s_failure_total{reason=%q} = %v, answered %d", op, reason, got, n)
			}
		}
		if got := s.value(op+"_attempts_total", nil); int(got) != total {
			t.Errorf("%s_attempts_total = %v, sent %d", op, got, total)
		}
		if got := s.value(op+"_success_total", nil); int(got) != outcomes[""] {
			t.Errorf("%s_success_total = %v, succeeded %d", op, got, outcomes[""])
		}
		if got := s.value(op+"_failure_total", nil); int(got) != total-outcomes[""] {
			t.Errorf("%s_failure_total = %v, failed %d", op, got, total-outcomes[""])
		}
	}
	check("checkout", ty.checkout)
	check("purchase", ty.purchase)
}

// idLike matches what user ids, item ids and codes look like here.
var idLike = regexp.MustCompile(`^(u\d+|late|\d{7,}|[A-Za-z0-9_-]{32})$`)

// checkNoIDs checks that no label value is a user id, an item id or a code.
func checkNoIDs(t *testing.T, s metricsScrape, codes []string) {
	t.Helper()
	for name, mf := range s {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				v := lp.GetValue()
				if idLike.MatchString(v) || slices.Contains(codes, v) {
					t.Errorf("%s{%s=%q}: an id in a label", name, lp.GetName(), v)
				}
			}
		}
	}
}

// checkLocks checks the lock instruments' arithmetic: every attempt is one
// success or one failure, and every acquired lock was released with its hold
// time recorded.
func checkLocks(t *testing.T, s metricsScrape) {
	t.Helper()
	for _, typ := range []string{"purchase", "sale_rotation"} {
		lt := l("lock_type", typ)
		attempts := s.value("redis_lock_attempts_total", lt)
		success := s.value("redis_lock_success_total", lt)
		failures := s.value("redis_lock_failure_total", lt)
		if attempts != success+failures {
			t.Errorf("%s lock: %v attempts != %v successes + %v failures", typ, attempts, success, failures)
		}
		if held := s.value("redis_lock_duration_seconds", lt); held != success {
			t.Errorf("%s lock: %v hold times recorded for %v acquisitions", typ, held, success)
		}
	}
}

// TestMetricsExemplars checks that an OpenMetrics scrape carries exemplars
// with trace ids on http_request_duration_seconds, and that the text format
// carries none.
func TestMetricsExemplars(t *testing.T) {
	inst := MustStart(t, MustEnv(t, nil))
	ty := newTally()
	for i := range 5 {
		ty.doCheckout(t, inst.URL, fmt.Sprintf("user_id=ex%d&id=1", i))
	}
	om, header := fetchMetrics(t, inst.URL, acceptOpenMetrics)
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type %q, want OpenMetrics", ct)
	}
	exemplar := regexp.MustCompile(`^http_request_duration_seconds_bucket\{.*handler="/checkout".*\} [0-9.]+ # \{.*trace_id="[0-9a-f]{32}".*\}`)
	found := false
	for _, line := range strings.Split(om, "\n") {
		found = found || exemplar.MatchString(line)
	}
	if !found {
		t.Errorf("no exemplar with trace_id on http_request_duration_seconds_bucket{handler=\"/checkout\"}:\n%s", om)
	}
	if !strings.HasSuffix(strings.TrimSpace(om), "# EOF") {
		t.Error("OpenMetrics scrape does not end with # EOF")
	}
	text, _ := fetchMetrics(t, inst.URL, acceptText)
	if strings.Contains(text, "trace_id") {
		t.Error("text format carries exemplars")
	}
}
