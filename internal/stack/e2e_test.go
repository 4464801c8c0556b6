package stack

// TestStack is the end-to-end test of the observability stack with real servers and no
// container engine: the service (built from ./cmd/flashsale), its own Redis, the shared
// PostgreSQL (a fresh database from testenv), the OpenTelemetry Collector running
// otel-collector/config.yaml unchanged (only its ${env:...} addresses overridden) with
// traces going to an in-process OTLP/gRPC sink, and two Prometheus servers running
// configs derived from prometheus/prometheus.yml (the service's /metrics) and
// prometheus/prometheus-otlp.yml (the Collector's exporter) with the repository's rule
// files. A short scripted sale goes through the API; then Prometheus's HTTP API must show
// every target up, every Grafana panel expression answering, every rule healthy, the
// counters equal to what was sent on both paths (direct scrape and through the Collector),
// each stored once in its Prometheus, traces forwarded, exemplars
// pointing at forwarded traces, and FlashsaleRedisUnreachable firing while the Redis is
// stopped and resolving once it is back.
//
// Binaries: FLASHSALE_OTELCOL (the collector: `scripts/collector.sh build`),
// FLASHSALE_PROMETHEUS (default `prometheus` on PATH), FLASHSALE_REDIS_SERVER (default
// `redis-server` on PATH); the database: FLASHSALE_TEST_DATABASE_URL (internal/testenv).
// Anything missing skips the test, unless FLASHSALE_REQUIRE_SERVICES=1. -short skips it.
//
//	eval "$(scripts/services.sh env)"
//	FLASHSALE_REQUIRE_SERVICES=1 FLASHSALE_OTELCOL=$(scripts/collector.sh path) \
//	  go test -run TestStack -v ./internal/stack

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
)

// Timing of the test's Prometheus (prometheus/README.md, "Test overlays"): the flashsale
// job is scraped every 3s, the minimum the README allows (a scrape during a Redis outage
// may be slow, and the scrape timeout equals the interval); the collector's jobs every
// 2s, the service's OTLP push period; rules are evaluated every 2s. The alerts' for: are
// not shortened: FlashsaleRedisUnreachable (1m) fires about 62s after Redis stops.
const (
	e2eScrapeInterval     = "2s"
	e2eAppScrapeInterval  = "3s"
	e2eEvaluationInterval = "2s"
	e2eInstanceID         = "e2e-1"
	e2eSaleItems          = 300
)

// Jobs of prometheus/prometheus.yml and (the exporter) prometheus/prometheus-otlp.yml.
const (
	jobApp               = "flashsale"
	jobCollector         = "otel-collector"
	jobCollectorExporter = "otel-collector-exporter"
)

// e2eStack is the running stack.
type e2eStack struct {
	owner      *testing.T // the top-level test, which owns the processes
	root       string
	tmp        string
	promBin    string
	redis      *testenv.RedisServer // the outage check stops and restarts it
	collector  *proc
	app        *proc
	prometheus *proc // the service's /metrics and the collector's own telemetry
	// prometheusOTLP stores the metrics pushed over OTLP (the collector's exporter).
	prometheusOTLP *proc
	sink           *testenv.OTLPReceiver
	prom           *promClient
	promOTLP       *promClient
	api            *apiClient
	targets        map[string]string // job -> host:port, of prometheus
	targetsOTLP    map[string]string // job -> host:port, of prometheusOTLP
	ruleFiles      []string          // absolute paths of the rule files both Prometheus load
	// recordingRules are the recording rules' names, once the rules check has passed.
	recordingRules []string
	timings        []string // "what duration", logged together at the end
}

// timing records a duration for the summary line.
func (s *e2eStack) timing(what string, d time.Duration) {
	s.timings = append(s.timings, fmt.Sprintf("%s %s", what, d.Round(100*time.Millisecond)))
}

// watched are the processes whose death fails any wait.
func (s *e2eStack) watched() []*proc {
	return []*proc{s.collector, s.app, s.prometheus, s.prometheusOTLP}
}

func (s *e2eStack) waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	return waitFor(t, timeout, what, s.watched(), cond)
}

func TestStack(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the end-to-end stack test (real servers, about 1.5 minutes)")
	}
	begin := time.Now()
	otelcol := lookBinary(t, "FLASHSALE_OTELCOL", "", "path of the collector binary; `scripts/collector.sh build` builds it and prints it")
	promBin := lookBinary(t, "FLASHSALE_PROMETHEUS", "prometheus", "apt-get install prometheus")
	dbURL := testenv.MustDatabase(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	s := &e2eStack{owner: t, root: root, tmp: t.TempDir(), promBin: promBin}
	s.start(t, otelcol, dbURL)
	s.timing("stack up", time.Since(begin))
	t.Logf("stack up in %s (service %s, collector %s/%s, prometheus %s, prometheus-otlp %s)", time.Since(begin).Round(time.Millisecond),
		s.targets[jobApp], s.targets[jobCollector], s.targetsOTLP[jobCollectorExporter], s.prom.base, s.promOTLP.base)

	// Every target up before the traffic, so that Prometheus sees the sale as it happens.
	if !t.Run("targets", func(t *testing.T) {
		s.checkTargets(t, "prometheus", s.prom, s.targets)
		s.checkTargets(t, "prometheus-otlp", s.promOTLP, s.targetsOTLP)
	}) {
		t.FailNow()
	}

	// The sale, discovered through the API only.
	sl := s.activeSale(t)
	items, err := s.api.items(sl.ID)
	if err != nil {
		t.Fatalf("list the sale's items: %v", err)
	}
	if len(items) != e2eSaleItems || sl.TotalItems != e2eSaleItems {
		t.Fatalf("sale %d: total_items %d, %d items listed; want %d (SALE_ITEMS)", sl.ID, sl.TotalItems, len(items), e2eSaleItems)
	}
	var one loadgen.Sale
	if err := s.api.getJSON(fmt.Sprintf("/sales/%d", sl.ID), &one); err != nil || one.ID != sl.ID {
		t.Fatalf("GET /sales/%d: %+v, %v", sl.ID, one, err)
	}

	trafficStart := time.Now()
	driveSale(t, s.api, sl, items)
	trafficEnd := time.Now()
	s.timing("traffic", trafficEnd.Sub(trafficStart))
	if err := s.api.getJSON(fmt.Sprintf("/sales/%d", sl.ID), &sl); err != nil {
		t.Fatal(err)
	}
	t.Logf("traffic: %s in %s; sale %d: %d of %d items sold", s.api.tally, trafficEnd.Sub(trafficStart).Round(time.Millisecond),
		sl.ID, sl.ItemsSold, sl.TotalItems)
	if len(s.api.tally.errs) > 0 {
		t.Fatalf("the traffic met transport errors or malformed answers:\n%s", strings.Join(s.api.tally.errs, "\n"))
	}
	if sl.ItemsSold != sl.TotalItems {
		t.Errorf("the sale is not sold out after the sweeps: %d of %d sold", sl.ItemsSold, sl.TotalItems)
	}
	for _, reason := range []string{"invalid_user_id", "invalid_item_id", "item_not_found", "user_limit_reached", "already_in_cart", "item_sold"} {
		if s.api.tally.checkoutFailure[reason] == 0 {
			t.Errorf("the traffic produced no checkout failure %q", reason)
		}
	}
	for _, reason := range []string{"invalid_code", "code_not_found", "nothing_available"} {
		if s.api.tally.purchaseFailure[reason] == 0 {
			t.Errorf("the traffic produced no purchase failure %q", reason)
		}
	}

	t.Run("counters", func(t *testing.T) { s.checkCounters(t, trafficEnd, sl) })
	t.Run("traces", func(t *testing.T) { s.checkTraces(t) })
	t.Run("exemplars", func(t *testing.T) { s.checkExemplars(t, trafficStart) })
	t.Run("dashboards", func(t *testing.T) { s.checkDashboards(t) })
	t.Run("rules", func(t *testing.T) { s.checkRules(t) })
	t.Run("redis_outage", func(t *testing.T) { s.checkRedisOutage(t, items[0].ID) })
	t.Run("logs_and_runtime", func(t *testing.T) { s.checkLogsAndRuntime(t) })
	t.Run("recording_series", func(t *testing.T) { s.checkRecordingSeries(t) })

	// Diagnostics: how long the service's scrapes took, and every alert that fired.
	if v, err := s.prom.query(`max_over_time(scrape_duration_seconds{job="flashsale"}[15m])`); err == nil && len(v) > 0 {
		t.Logf("slowest flashsale scrape: %.3fs (timeout %s)", v[0].value(), e2eAppScrapeInterval)
	}
	if v, err := s.prom.query(`count by (alertname) (max_over_time(ALERTS{alertstate="firing"}[15m]))`); err == nil {
		names := []string{}
		for _, smp := range v {
			names = append(names, smp.Metric["alertname"])
		}
		sort.Strings(names)
		t.Logf("alerts that fired during the test: %v", names)
	}
	s.timing("total", time.Since(begin))
	t.Logf("timings: %s", strings.Join(s.timings, ", "))
}

// ---------------------------------------------------------------------------
// Start-up

func (s *e2eStack) start(t *testing.T, otelcol, dbURL string) {
	t.Helper()
	pp := &ports{t: t, used: map[int]bool{}}

	appBin := testenv.ServiceBinary(t)

	s.redis = testenv.StartRedis(t)

	// The collector, traces to the in-process sink.
	var sinkAddr string
	s.sink, sinkAddr = testenv.StartOTLPGRPC(t)
	otlpGRPC := loopback(pp.next())
	telemetryPort := pp.next()
	exporter := loopback(pp.next())
	health := loopback(pp.next())
	colEnv := map[string]string{
		"OTLP_GRPC_ENDPOINT":           otlpGRPC,
		"OTLP_HTTP_ENDPOINT":           loopback(pp.next()),
		"TRACES_OTLP_ENDPOINT":         sinkAddr,
		"PROMETHEUS_EXPORTER_ENDPOINT": exporter,
		"TELEMETRY_METRICS_HOST":       "127.0.0.1",
		"TELEMETRY_METRICS_PORT":       strconv.Itoa(telemetryPort),
		"HEALTH_CHECK_ENDPOINT":        health,
		"PPROF_ENDPOINT":               loopback(pp.next()),
		"ZPAGES_ENDPOINT":              loopback(pp.next()),
	}
	colConfig := filepath.Join(s.root, "otel-collector", "config.yaml")
	checkCollectorEnv(t, colConfig, colEnv)
	env := baseEnv()
	for k, v := range colEnv {
		env = append(env, k+"="+v)
	}
	s.collector = startProc(t, t, "otel-collector", s.tmp, env, otelcol, "--config", colConfig)
	s.collector.skip = `"otelcol.component.id": "debug"` // the debug exporter's line per batch
	s.waitFor(t, time.Minute, "the collector's health_check at "+health, func() (bool, string) {
		code, err := httpStatus("http://" + health + "/")
		return code == 200, fmt.Sprintf("status %d, %v", code, err)
	})

	// The service.
	app := loopback(pp.next())
	s.app = startProc(t, t, "flashsale", s.tmp, baseEnv(
		"HTTP_ADDR="+app,
		"DATABASE_URL="+dbURL,
		"REDIS_URL="+s.redis.URL(),
		"ADMIN_TOKEN=e2e-admin-token",
		"SALE_ITEMS="+strconv.Itoa(e2eSaleItems),
		"SHUTDOWN_TIMEOUT=5s",
		"SHUTDOWN_DELAY=0",
		"LOG_LEVEL=warn",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+otlpGRPC,
		"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_METRIC_EXPORT_INTERVAL=2000",
		"OTEL_RESOURCE_ATTRIBUTES=service.instance.id="+e2eInstanceID,
	), appBin)
	s.api = newAPIClient("http://" + app)
	s.waitFor(t, time.Minute, "the service's /readyz at "+app, func() (bool, string) {
		code, err := httpStatus("http://" + app + "/readyz")
		return code == 200, fmt.Sprintf("status %d, %v", code, err)
	})

	// The two Prometheus servers, with configs derived from the repository's: the
	// service's /metrics and the collector's own telemetry in one, the metrics pushed
	// over OTLP (the collector's prometheus exporter) in the other.
	s.targets = map[string]string{
		jobApp:       app,
		jobCollector: loopback(telemetryPort),
	}
	s.targetsOTLP = map[string]string{jobCollectorExporter: exporter}
	s.prometheus, s.prom, s.ruleFiles = s.startPrometheus(t, pp, "prometheus", "prometheus.yml", s.targets)
	s.prometheusOTLP, s.promOTLP, _ = s.startPrometheus(t, pp, "prometheus-otlp", "prometheus-otlp.yml", s.targetsOTLP)
}

// startPrometheus starts a Prometheus (named name in logs) on a config derived from
// prometheus/<config> with the test's targets and intervals, and waits until it is
// ready. It returns the process, a client of its API and the rule files it loads.
func (s *e2eStack) startPrometheus(t *testing.T, pp *ports, name, config string, targets map[string]string) (*proc, *promClient, []string) {
	t.Helper()
	promDir := filepath.Join(s.root, "prometheus")
	src, err := os.ReadFile(filepath.Join(promDir, config))
	if err != nil {
		t.Fatal(err)
	}
	derived, err := derivePrometheusConfig(src, promOverlay{
		Targets:            targets,
		ScrapeInterval:     e2eScrapeInterval,
		JobScrapeInterval:  map[string]string{jobApp: e2eAppScrapeInterval},
		EvaluationInterval: e2eEvaluationInterval,
		RuleDir:            promDir,
	})
	if err != nil {
		t.Fatalf("derive the test's Prometheus config from prometheus/%s: %v", config, err)
	}
	var parsed struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	if err := yaml.Unmarshal(derived, &parsed); err != nil {
		t.Fatal(err)
	}
	var ruleFiles []string
	for _, pattern := range parsed.RuleFiles {
		m, err := filepath.Glob(pattern)
		if err != nil || len(m) == 0 {
			t.Fatalf("%s: rule_files entry %s matches no file (%v)", config, pattern, err)
		}
		ruleFiles = append(ruleFiles, m...)
	}
	dir := filepath.Join(s.tmp, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, config)
	if err := os.WriteFile(cfgPath, derived, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- derived Prometheus config %s ----\n%s", config, derived)
		}
	})
	addr := loopback(pp.next())
	p := startProc(t, t, name, dir, baseEnv(), s.promBin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr,
		"--enable-feature=exemplar-storage",
		"--web.enable-lifecycle")
	client := &promClient{base: "http://" + addr, hc: &http.Client{Timeout: 20 * time.Second}}
	waitFor(t, time.Minute, name+" /-/ready at "+addr, append(s.watched(), p), func() (bool, string) {
		code, err := httpStatus("http://" + addr + "/-/ready")
		return code == 200, fmt.Sprintf("status %d, %v", code, err)
	})
	return p, client, ruleFiles
}

// checkCollectorEnv fails when otel-collector/config.yaml reads an address variable the
// test does not set: its compose default (0.0.0.0:port) would bind every interface and
// could clash with a real collector. Variables that are not addresses are listed here.
func checkCollectorEnv(t *testing.T, path string, set map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	notAddresses := setOf("TRACES_OTLP_INSECURE", "MEMORY_LIMIT_MIB", "MEMORY_SPIKE_LIMIT_MIB", "DEBUG_VERBOSITY", "COLLECTOR_LOG_LEVEL")
	re := regexp.MustCompile(`\$\{env:([A-Za-z_][A-Za-z0-9_]*)`)
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(line, -1) {
			if _, ok := set[m[1]]; !ok && !notAddresses[m[1]] {
				t.Fatalf("%s reads ${env:%s}, which the end-to-end test does not set: give it a loopback address in e2e_test.go (or list it as not an address)", path, m[1])
			}
		}
	}
}

// activeSale returns the running sale, waiting for the next one when it ends within 90s
// (the traffic must not straddle a sale rotation).
func (s *e2eStack) activeSale(t *testing.T) loadgen.Sale {
	t.Helper()
	var sl loadgen.Sale
	if err := s.api.getJSON("/sales/active", &sl); err != nil {
		t.Fatal(err)
	}
	if left := time.Until(sl.EndedAt); left < 90*time.Second {
		t.Logf("sale %d ends in %s: waiting for the next one", sl.ID, left.Round(time.Second))
		s.waitFor(t, left+time.Minute, "the next sale", func() (bool, string) {
			var next loadgen.Sale
			err := s.api.getJSON("/sales/active", &next)
			if err == nil && next.ID != sl.ID {
				sl = next
				return true, ""
			}
			return false, fmt.Sprintf("active sale %d, %v", next.ID, err)
		})
	}
	return sl
}

// ---------------------------------------------------------------------------
// Assertions

// checkTargets: every job's one target is up on prom, at the test's address, and prom
// scrapes nothing else.
func (s *e2eStack) checkTargets(t *testing.T, name string, prom *promClient, targets map[string]string) {
	s.waitFor(t, time.Minute, "every scrape target of "+name+" up", func() (bool, string) {
		active, dropped, err := prom.targets()
		if err != nil {
			return false, err.Error()
		}
		var status []string
		ok := dropped == 0
		for _, job := range sortedKeys(targets) {
			n := 0
			for _, tg := range active {
				if tg.Labels["job"] != job {
					continue
				}
				n++
				u, _ := url.Parse(tg.ScrapeURL)
				if tg.Health != "up" || u == nil || u.Host != targets[job] {
					ok = false
				}
				status = append(status, fmt.Sprintf("%s %s %s %q", job, tg.ScrapeURL, tg.Health, tg.LastError))
			}
			if n != 1 {
				ok = false
				status = append(status, fmt.Sprintf("%s: %d targets", job, n))
			}
		}
		if len(active) != len(targets) || dropped != 0 {
			status = append(status, fmt.Sprintf("%d active targets, %d dropped", len(active), dropped))
			ok = false
		}
		return ok, strings.Join(status, "; ")
	})
}

// checkCounters: the service's counters equal the traffic's tally on the direct scrape
// (exactly, at the first scrape after the traffic) and through the collector
// (eventually), and the sale gauges and items-sold counter equal the sale's state.
func (s *e2eStack) checkCounters(t *testing.T, trafficEnd time.Time, sl loadgen.Sale) {
	ta := s.api.tally
	s.waitFor(t, 30*time.Second, "a scrape of the service after the traffic", func() (bool, string) {
		v, err := s.prom.query(`timestamp(checkout_attempts_total{job="flashsale"})`)
		if err != nil || len(v) != 1 {
			return false, fmt.Sprintf("%v %v", v, err)
		}
		ts := time.UnixMilli(int64(v[0].value() * 1000))
		return ts.After(trafficEnd.Add(50 * time.Millisecond)), "last scrape at " + ts.Format(time.RFC3339Nano)
	})

	exact := func(expr string, want float64) {
		t.Helper()
		v, err := s.prom.query(expr)
		switch {
		case err != nil:
			t.Errorf("%v", err)
		case len(v) != 1:
			t.Errorf("%s: %d series, want 1: %v", expr, len(v), v)
		case v[0].value() != want:
			t.Errorf("%s = %v, want %v (what the test sent/saw)", expr, v[0].value(), want)
		}
	}
	byReason := func(metric string, want map[string]int) {
		t.Helper()
		v, err := s.prom.query(metric + `{job="flashsale"}`)
		if err != nil {
			t.Error(err)
			return
		}
		got := map[string]int{}
		for _, smp := range v {
			if n := int(smp.value()); n != 0 {
				got[smp.Metric["reason"]] = n
			}
		}
		if fmtCounts(got) != fmtCounts(want) {
			t.Errorf("%s by reason = %s, want %s", metric, fmtCounts(got), fmtCounts(want))
		}
	}
	exact(`checkout_attempts_total{job="flashsale"}`, float64(ta.checkouts))
	exact(`count(checkout_attempts_total)`, 1) // stored once: the OTLP copy is in the other Prometheus
	exact(`checkout_success_total{job="flashsale"}`, float64(ta.checkoutSuccess))
	byReason("checkout_failure_total", ta.checkoutFailure)
	exact(`purchase_attempts_total{job="flashsale"}`, float64(ta.purchases))
	exact(`purchase_success_total{job="flashsale"}`, float64(ta.purchaseSuccess))
	byReason("purchase_failure_total", ta.purchaseFailure)
	exact(`sale_items_sold_total{job="flashsale"}`, float64(sl.ItemsSold))
	// The sale gauges are read from PostgreSQL at most a second before a
	// scrape: the next scrapes catch up.
	for expr, want := range map[string]float64{
		`sale_items_sold_current{job="flashsale"}`: float64(sl.ItemsSold),
		`sale_items_offered{job="flashsale"}`:      float64(sl.TotalItems),
		`sale_active{job="flashsale"}`:             1,
	} {
		s.waitFor(t, 30*time.Second, expr+" to equal the sale's", func() (bool, string) {
			v, err := s.prom.query(expr)
			if err != nil || len(v) != 1 {
				return false, fmt.Sprintf("%v %v", v, err)
			}
			return v[0].value() == want, v[0].String()
		})
	}
	t.Logf("direct scrape: counters equal the traffic's tally (%d checkouts, %d purchases)", ta.checkouts, ta.purchases)
	// The catalog's name of the sold gauge, recorded by a rule at the next evaluation.
	s.waitFor(t, 30*time.Second, "the recorded sale_items_sold to equal the sale's", func() (bool, string) {
		v, err := s.prom.query(`sale_items_sold{job="flashsale"}`)
		if err != nil || len(v) != 1 {
			return false, fmt.Sprintf("%v %v", v, err)
		}
		return v[0].value() == float64(sl.ItemsSold), v[0].String()
	})
	if v, err := s.prom.query(`redis_lock_failure_total{job="flashsale",lock_type="purchase",reason="contended"}`); err == nil && len(v) == 1 {
		// Not asserted: whether a double-fired purchase meets the other's lock is timing.
		t.Logf("contended purchase lock attempts: %v", v[0].value())
	}

	// Through the collector, in the other Prometheus: the exporter's job/instance
	// (service.name and service.instance.id) are kept (honor_labels: true), so the
	// series read as on the direct path.
	var labels map[string]string
	for _, m := range []struct {
		name string
		want int
	}{{"checkout_attempts_total", ta.checkouts}, {"checkout_success_total", ta.checkoutSuccess}, {"purchase_attempts_total", ta.purchases}} {
		expr := m.name + `{job="flashsale"}`
		s.waitFor(t, time.Minute, fmt.Sprintf("%s = %d on prometheus-otlp", expr, m.want), func() (bool, string) {
			v, err := s.promOTLP.query(expr)
			if err != nil || len(v) != 1 {
				return false, fmt.Sprintf("%v %v", v, err)
			}
			labels = v[0].Metric
			return v[0].value() == float64(m.want), v[0].String()
		})
	}
	want := map[string]string{"__name__": "purchase_attempts_total", "job": "flashsale", "instance": e2eInstanceID}
	if v, err := s.promOTLP.query(`count(checkout_attempts_total)`); err != nil || len(v) != 1 || v[0].value() != 1 {
		t.Errorf("count(checkout_attempts_total) on prometheus-otlp = %v, %v; want 1 (one copy of each series)", v, err)
	}
	if fmt.Sprint(labels) != fmt.Sprint(want) {
		t.Errorf("labels through the collector: %v, want %v", labels, want)
	}
	t.Logf("through the collector: counters equal the tally; labels %v", labels)
}

// checkTraces: the sink got the API's spans through the collector, and the collector
// counts them as sent.
func (s *e2eStack) checkTraces(t *testing.T) {
	want := []string{"POST /checkout", "sale.checkout", "POST /purchase", "sale.purchase"}
	s.waitFor(t, time.Minute, fmt.Sprintf("spans %q at the collector's trace sink", want), func() (bool, string) {
		names := s.sink.SpanNames()
		var missing []string
		for _, w := range want {
			if !slices.Contains(names, w) {
				missing = append(missing, w)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d spans received, missing %q", len(names), missing)
	})
	expr := `sum(otelcol_exporter_sent_spans{job="otel-collector",exporter="otlp_grpc/jaeger"})`
	s.waitFor(t, time.Minute, expr+" > 0", func() (bool, string) {
		v, err := s.prom.query(expr)
		if err != nil || len(v) == 0 {
			return false, fmt.Sprintf("%v %v", v, err)
		}
		return v[0].value() > 0, v[0].String()
	})
	t.Logf("sink holds %d spans", len(s.sink.Spans()))
}

// checkLogsAndRuntime: the service's log records (the outage's warnings at
// least) reached the collector's logs pipeline, and its Go runtime and
// process series came through the collector under the names /metrics serves.
func (s *e2eStack) checkLogsAndRuntime(t *testing.T) {
	for _, q := range []struct {
		prom *promClient
		expr string
	}{
		{s.prom, `sum(otelcol_receiver_accepted_log_records{job="otel-collector"})`},
		// The push path's Prometheus keeps the service's job and instance.
		{s.promOTLP, `sum(go_goroutines{job="flashsale", instance="` + e2eInstanceID + `"})`},
		{s.promOTLP, `sum(process_resident_memory_bytes{job="flashsale", instance="` + e2eInstanceID + `"})`},
	} {
		expr := q.expr
		s.waitFor(t, time.Minute, expr+" > 0", func() (bool, string) {
			v, err := q.prom.query(expr)
			if err != nil || len(v) == 0 {
				return false, fmt.Sprintf("%v %v", v, err)
			}
			return v[0].value() > 0, v[0].String()
		})
	}
}

// checkExemplars: Prometheus stored exemplars of the latency histogram, and one of their
// trace ids is a trace the sink received.
func (s *e2eStack) checkExemplars(t *testing.T, since time.Time) {
	expr := `http_request_duration_seconds_bucket{job="flashsale"}`
	s.waitFor(t, time.Minute, "an exemplar of "+expr+" whose trace reached the sink", func() (bool, string) {
		series, err := s.prom.exemplars(expr, since.Add(-time.Minute), time.Now())
		if err != nil {
			return false, err.Error()
		}
		traces := map[string]bool{}
		for _, sp := range s.sink.Spans() {
			traces[hex.EncodeToString(sp.GetTraceId())] = true
		}
		n, matched := 0, 0
		for _, se := range series {
			for _, ex := range se.Exemplars {
				n++
				if traces[ex.Labels["trace_id"]] {
					matched++
				}
			}
		}
		status := fmt.Sprintf("%d exemplars in %d series, %d with a trace id the sink received (%d traces)", n, len(series), matched, len(traces))
		if matched > 0 {
			t.Log(status)
		}
		return matched > 0, status
	})
}

// dashboardExprs returns every panel expression of grafana/dashboards/*.json, named
// "<file> panel <id> <refId> (<title>)", with Grafana's variables substituted as
// grafana/README.md says.
func dashboardExprs(t *testing.T, root string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no grafana/dashboards/*.json (%v)", err)
	}
	subst := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "15s", "$__range", "5m",
		"$job", "flashsale", "$instance", ".*")
	type panel struct {
		ID      int     `json:"id"`
		Title   string  `json:"title"`
		Panels  []panel `json:"panels"` // a collapsed row's panels
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	}
	exprs := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []panel `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				for _, tg := range p.Targets {
					if strings.TrimSpace(tg.Expr) != "" {
						exprs[fmt.Sprintf("%s panel %d %s (%s)", filepath.Base(f), p.ID, tg.RefID, p.Title)] = subst.Replace(tg.Expr)
					}
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
	}
	if len(exprs) == 0 {
		t.Fatal("the dashboards hold no panel expressions")
	}
	return exprs
}

// checkDashboards: every panel expression evaluates without error and returns a series.
func (s *e2eStack) checkDashboards(t *testing.T) {
	exprs := dashboardExprs(t, s.root)
	names := sortedKeys(exprs)
	pending := names
	s.waitFor(t, 90*time.Second, fmt.Sprintf("all %d dashboard expressions to return a series", len(names)), func() (bool, string) {
		var empty, failed []string
		for _, name := range pending {
			v, err := s.prom.query(exprs[name])
			switch {
			case err != nil:
				failed = append(failed, fmt.Sprintf("%s: %v", name, err))
			case len(v) == 0:
				empty = append(empty, name)
			}
		}
		if len(failed) > 0 {
			t.Fatalf("dashboard expressions that do not evaluate:\n%s", strings.Join(failed, "\n"))
		}
		pending = empty
		var report []string
		for _, name := range empty {
			report = append(report, fmt.Sprintf("%s: %s", name, exprs[name]))
		}
		return len(empty) == 0, fmt.Sprintf("%d of %d return no series:\n%s", len(empty), len(names), strings.Join(report, "\n"))
	})
	t.Logf("all %d dashboard expressions return series", len(names))
}

// checkRules: the rules Prometheus loaded are those of the rule files; after two
// evaluations of every group each is healthy; each recording rule has series.
func (s *e2eStack) checkRules(t *testing.T) {
	var contents [][]byte
	for _, f := range s.ruleFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		contents = append(contents, b)
	}
	wantRec, wantAlert, err := ruleNames(contents...)
	if err != nil {
		t.Fatal(err)
	}
	if len(wantRec) == 0 || len(wantAlert) == 0 {
		t.Fatalf("rule files %v: %d recording and %d alerting rules", s.ruleFiles, len(wantRec), len(wantAlert))
	}
	first := map[string]time.Time{} // group -> first evaluation seen
	var groups []promRuleGroup
	s.waitFor(t, time.Minute, "two evaluations of every rule group", func() (bool, string) {
		var err error
		groups, err = s.prom.rules()
		if err != nil {
			return false, err.Error()
		}
		var waiting []string
		for _, g := range groups {
			key := g.File + "/" + g.Name
			if f, ok := first[key]; !ok || g.LastEvaluation.IsZero() {
				if !g.LastEvaluation.IsZero() {
					first[key] = g.LastEvaluation
				}
				waiting = append(waiting, key)
			} else if !g.LastEvaluation.After(f) {
				waiting = append(waiting, key)
			}
		}
		return len(groups) > 0 && len(waiting) == 0, fmt.Sprintf("%d groups, waiting for %v", len(groups), waiting)
	})
	var gotRec, gotAlert []string
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Type == "recording" {
				gotRec = append(gotRec, r.Name)
			} else {
				gotAlert = append(gotAlert, r.Name)
			}
			if r.Health != "ok" || r.LastError != "" {
				t.Errorf("rule %s (group %s): health %q, last error %q", r.Name, g.Name, r.Health, r.LastError)
			}
		}
	}
	sort.Strings(gotRec)
	sort.Strings(gotAlert)
	if !slices.Equal(gotRec, wantRec) || !slices.Equal(gotAlert, wantAlert) {
		t.Errorf("Prometheus loaded recording rules %v and alerts %v; the rule files hold %v and %v", gotRec, gotAlert, wantRec, wantAlert)
	}
	t.Logf("%d recording and %d alerting rules healthy after two evaluations", len(gotRec), len(gotAlert))
	s.recordingRules = wantRec
}

// checkRecordingSeries: every recording rule, queried by name, returns a series. Run
// after the Redis outage: instance:http_requests_5xx:rate1m has no series until the
// service has answered a 5xx (the outage's 503s), as its expression has no "or" fallback.
func (s *e2eStack) checkRecordingSeries(t *testing.T) {
	if len(s.recordingRules) == 0 {
		t.Skip("the rules check did not run to its end")
	}
	pending := slices.Compact(slices.Clone(s.recordingRules))
	s.waitFor(t, time.Minute, "every recording rule to have series", func() (bool, string) {
		var empty []string
		for _, name := range pending {
			v, err := s.prom.query(name)
			if err != nil || len(v) == 0 {
				empty = append(empty, fmt.Sprintf("%s (%v)", name, err))
			}
		}
		return len(empty) == 0, fmt.Sprintf("no series: %v", empty)
	})
	t.Logf("all %d recording rules return series", len(pending))
}

// checkRedisOutage stops the test's Redis: the API answers 503, health_service_up{redis}
// drops to 0 and FlashsaleRedisUnreachable fires; then restarts it on the same port:
// the service recovers by itself and the alert resolves.
func (s *e2eStack) checkRedisOutage(t *testing.T, item int64) {
	const alert = `ALERTS{alertname="FlashsaleRedisUnreachable",alertstate="firing",job="flashsale"}`
	const redisUp = `health_service_up{job="flashsale",service="redis"}`
	gauge := func(want float64) func() (bool, string) {
		return func() (bool, string) {
			v, err := s.prom.query(redisUp)
			if err != nil || len(v) != 1 {
				return false, fmt.Sprintf("%v %v", v, err)
			}
			return v[0].value() == want, v[0].String()
		}
	}
	if v, err := s.prom.query(alert); err != nil || len(v) != 0 {
		t.Fatalf("%s before the outage: %v %v", alert, v, err)
	}

	stopped := time.Now()
	s.redis.Kill()
	t.Logf("redis-server stopped")

	var answer string
	var bad bool
	s.waitFor(t, 30*time.Second, "POST /checkout to answer 503 service_unavailable", func() (bool, string) {
		status, _, code := s.api.checkoutRaw("e2e-outage", fmt.Sprint(item), false)
		answer = fmt.Sprintf("%d %s", status, code)
		if status >= 500 && (status != 503 || code != "service_unavailable") {
			bad = true
			return true, answer
		}
		return status == 503, answer
	})
	if bad {
		t.Errorf("with Redis down, POST /checkout answered %s, want 503 service_unavailable", answer)
	}
	s.waitFor(t, time.Minute, redisUp+" == 0", gauge(0))
	t.Logf("%s == 0 after %s", redisUp, time.Since(stopped).Round(time.Millisecond))
	fire := s.waitFor(t, 3*time.Minute, alert+" (Redis stopped)", func() (bool, string) {
		v, err := s.prom.query(alert)
		if err != nil {
			return false, err.Error()
		}
		state, _ := s.prom.query(`ALERTS{alertname="FlashsaleRedisUnreachable"}`)
		return len(v) > 0, fmt.Sprintf("ALERTS: %v", state)
	})
	toFire := time.Since(stopped)
	s.timing("alert fired after", toFire)
	t.Logf("FlashsaleRedisUnreachable firing %s after Redis stopped (waited %s)", toFire.Round(time.Millisecond), fire.Round(time.Millisecond))

	restarted := time.Now()
	if err := s.redis.Start(); err != nil {
		t.Fatalf("restart redis-server: %v", err)
	}
	s.waitFor(t, time.Minute, redisUp+" == 1 after the restart", gauge(1))
	t.Logf("%s == 1 %s after Redis restarted", redisUp, time.Since(restarted).Round(time.Millisecond))
	s.waitFor(t, 2*time.Minute, "FlashsaleRedisUnreachable to stop firing (Redis back)", func() (bool, string) {
		v, err := s.prom.query(alert)
		if err != nil {
			return false, err.Error()
		}
		return len(v) == 0, fmt.Sprintf("%v", v)
	})
	toResolve := time.Since(restarted)
	s.timing("alert resolved after", toResolve)
	t.Logf("FlashsaleRedisUnreachable resolved %s after Redis restarted (outage %s)", toResolve.Round(time.Millisecond),
		restarted.Sub(stopped).Round(time.Millisecond))

	// The service rebuilt its Redis state from PostgreSQL: a checkout gets a real answer.
	s.waitFor(t, time.Minute, "POST /checkout to answer without a 5xx after the restart", func() (bool, string) {
		status, _, code := s.api.checkoutRaw("e2e-outage", fmt.Sprint(item), false)
		answer = fmt.Sprintf("%d %s", status, code)
		return status > 0 && status < 500, answer
	})
	t.Logf("after the restart POST /checkout answers %s", answer)
}
