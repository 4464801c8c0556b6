package telemetry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/flashsale/flashsale/internal/telemetry"
	"github.com/flashsale/flashsale/internal/testenv"
)

const (
	acceptText        = "text/plain;version=0.0.4"
	acceptOpenMetrics = "application/openmetrics-text; version=1.0.0"
)

// build is the build the tests' telemetry describes.
var build = telemetry.Build{Version: "1.2.3", Revision: "0123abc"}

// env returns the given key, value pairs as a map.
func env(kv ...string) map[string]string {
	m := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// setup sets the OpenTelemetry environment e for the test, calls Setup and
// shuts the result down when the test ends.
func setup(t *testing.T, e map[string]string, opts ...telemetry.Option) *telemetry.Telemetry {
	t.Helper()
	testenv.SetOTelEnv(t, e)
	tel, err := telemetry.Setup(t.Context(), build, opts...)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tel
}

// scrape serves one request to h with the given Accept header and decodes the
// response in the negotiated format.
func scrape(t *testing.T, h http.Handler, accept string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	if h == nil {
		t.Fatal("MetricsHandler is nil")
	}
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", accept)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape status = %d, body:\n%s", rec.Code, rec.Body)
	}
	body := rec.Body.String()

	format := expfmt.ResponseFormat(rec.Header())
	if accept == acceptOpenMetrics && format.FormatType() != expfmt.TypeOpenMetrics {
		t.Fatalf("Content-Type = %q, want OpenMetrics", rec.Header().Get("Content-Type"))
	}
	families := make(map[string]*dto.MetricFamily)
	dec := expfmt.NewDecoder(strings.NewReader(body), format)
	for {
		var mf dto.MetricFamily
		err := dec.Decode(&mf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode %s: %v\n%s", format, err, body)
		}
		families[mf.GetName()] = &mf
	}
	return families, body
}

func labelNames(m *dto.Metric) []string {
	var names []string
	for _, l := range m.GetLabel() {
		names = append(names, l.GetName())
	}
	slices.Sort(names)
	return names
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// instruments creates the kinds of instrument the service uses and records
// one value in each.
func instruments(t *testing.T, ctx context.Context, mp metric.MeterProvider) {
	t.Helper()
	meter := mp.Meter("github.com/flashsale/flashsale/internal/telemetry_test", metric.WithInstrumentationVersion("0.0.1"))

	attempts, err := meter.Int64Counter("checkout_attempts_total",
		metric.WithDescription("Checkout attempts by outcome."))
	if err != nil {
		t.Fatal(err)
	}
	attempts.Add(ctx, 3, metric.WithAttributes(attribute.String("reason", "sold_out")))

	duration, err := meter.Float64Histogram("http_request_duration_seconds",
		metric.WithUnit("s"),
		metric.WithDescription("HTTP request latency."),
		metric.WithExplicitBucketBoundaries(0.005, 0.05, 0.5, 5))
	if err != nil {
		t.Fatal(err)
	}
	duration.Record(ctx, 0.02, metric.WithAttributes(
		attribute.String("handler", "/checkout"),
		attribute.String("method", "POST"),
		attribute.Int("status_code", 200)))

	_, err = meter.Int64ObservableGauge("sale_items_sold",
		metric.WithDescription("Items sold in the current sale."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(42, metric.WithAttributes(attribute.String("sale_id", "s1")))
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}

	conns, err := meter.Int64Gauge("db_connections_active", metric.WithUnit("{connection}"))
	if err != nil {
		t.Fatal(err)
	}
	conns.Record(ctx, 7)

	inFlight, err := meter.Int64UpDownCounter("http_requests_in_flight")
	if err != nil {
		t.Fatal(err)
	}
	inFlight.Add(ctx, 2)
}

func TestPrometheusNames(t *testing.T) {
	tel := setup(t, env())
	instruments(t, t.Context(), tel.MeterProvider)

	for _, accept := range []string{acceptText, acceptOpenMetrics} {
		t.Run(accept, func(t *testing.T) {
			families, body := scrape(t, tel.MetricsHandler, accept)

			want := map[string]struct {
				typ    dto.MetricType
				labels []string
			}{
				"checkout_attempts_total":       {dto.MetricType_COUNTER, []string{"reason"}},
				"http_request_duration_seconds": {dto.MetricType_HISTOGRAM, []string{"handler", "method", "status_code"}},
				"sale_items_sold":               {dto.MetricType_GAUGE, []string{"sale_id"}},
				"db_connections_active":         {dto.MetricType_GAUGE, nil},
				"http_requests_in_flight":       {dto.MetricType_GAUGE, nil},
			}
			for name, w := range want {
				mf, ok := families[name]
				if !ok {
					t.Errorf("family %q missing; body:\n%s", name, body)
					continue
				}
				if mf.GetType() != w.typ {
					t.Errorf("%s: type = %v, want %v", name, mf.GetType(), w.typ)
				}
				if len(mf.GetMetric()) != 1 {
					t.Errorf("%s: %d series, want 1", name, len(mf.GetMetric()))
					continue
				}
				if got := labelNames(mf.GetMetric()[0]); !slices.Equal(got, w.labels) {
					t.Errorf("%s: labels = %v, want %v", name, got, w.labels)
				}
			}

			for name, mf := range families {
				if strings.HasPrefix(name, "target_info") || strings.Contains(name, "_total_total") ||
					strings.Contains(name, "seconds_seconds") || strings.HasSuffix(name, "_ratio") {
					t.Errorf("unexpected family %q", name)
				}
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if strings.HasPrefix(l.GetName(), "otel_scope_") {
							t.Errorf("%s has scope label %s", name, l.GetName())
						}
					}
				}
			}
			for _, line := range []string{
				`checkout_attempts_total{reason="sold_out"} 3`,
				`http_request_duration_seconds_count{handler="/checkout",method="POST",status_code="200"} 1`,
				`sale_items_sold{sale_id="s1"} 42`,
				`db_connections_active 7`,
			} {
				if !strings.Contains(body, line) {
					t.Errorf("body lacks %q:\n%s", line, body)
				}
			}
			if strings.Contains(body, "otel_scope") || strings.Contains(body, "target_info") {
				t.Errorf("body mentions otel_scope or target_info:\n%s", body)
			}

			hist := families["http_request_duration_seconds"].GetMetric()[0].GetHistogram()
			var bounds []float64
			var counts []uint64
			for _, b := range hist.GetBucket() {
				bounds = append(bounds, b.GetUpperBound())
				counts = append(counts, b.GetCumulativeCount())
			}
			// The text parser keeps the +Inf bucket; it is implied otherwise.
			bounds = slices.DeleteFunc(bounds, func(f float64) bool { return f > 5 })
			if want := []float64{0.005, 0.05, 0.5, 5}; !slices.Equal(bounds, want) {
				t.Errorf("le buckets = %v, want %v", bounds, want)
			}
			if want := []uint64{0, 1, 1, 1}; !slices.Equal(counts[:4], want) {
				t.Errorf("cumulative counts = %v, want %v", counts, want)
			}
			if hist.GetSampleCount() != 1 || hist.GetSampleSum() != 0.02 {
				t.Errorf("count, sum = %d, %v, want 1, 0.02", hist.GetSampleCount(), hist.GetSampleSum())
			}
		})
	}
}

// TestPrometheusSuffixRules pins how the exporter turns instrument names and
// units into Prometheus names, including the traps the package documentation
// warns about.
func TestPrometheusSuffixRules(t *testing.T) {
	tel := setup(t, env())
	ctx := t.Context()
	meter := tel.MeterProvider.Meter("rules")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	orders, err := meter.Int64Counter("orders")
	must(err)
	orders.Add(ctx, 1)
	sent, err := meter.Float64Counter("payload.sent", metric.WithUnit("By"))
	must(err)
	sent.Add(ctx, 1)
	latency, err := meter.Float64Histogram("latency", metric.WithUnit("ms"))
	must(err)
	latency.Record(ctx, 1)
	fill, err := meter.Float64Gauge("stock_fill", metric.WithUnit("1"))
	must(err)
	fill.Record(ctx, 0.5)
	depth, err := meter.Int64Gauge("queue_depth", metric.WithUnit("{item}"))
	must(err)
	depth.Record(ctx, 1)

	families, body := scrape(t, tel.MetricsHandler, acceptText)
	for _, name := range []string{
		"orders_total",             // _total added to counters
		"payload_sent_bytes_total", // dots escaped, unit then _total
		"latency_milliseconds",     // unit suffix added
		"stock_fill_ratio",         // unit "1" on a gauge: avoid
		"queue_depth",              // annotations add nothing
	} {
		if _, ok := families[name]; !ok {
			t.Errorf("family %q missing:\n%s", name, body)
		}
	}
}

func TestRuntimeCollectors(t *testing.T) {
	tel := setup(t, env())
	families, _ := scrape(t, tel.MetricsHandler, acceptText)
	for _, name := range []string{
		"process_resident_memory_bytes",
		"process_cpu_seconds_total",
		"go_goroutines",
		"go_memstats_heap_alloc_bytes",
		"go_memstats_alloc_bytes_total",
		"promhttp_metric_handler_errors_total",
	} {
		if _, ok := families[name]; !ok {
			t.Errorf("family %q missing", name)
		}
	}
	bi := families["flashsale_build_info"]
	if bi == nil || len(bi.GetMetric()) != 1 || bi.GetMetric()[0].GetGauge().GetValue() != 1 ||
		labelValue(bi.GetMetric()[0], "version") != build.Version || labelValue(bi.GetMetric()[0], "revision") != build.Revision ||
		!strings.HasPrefix(labelValue(bi.GetMetric()[0], "goversion"), "go") {
		t.Errorf("flashsale_build_info = %v, want one series of 1 naming version %s, revision %s and the Go version", bi, build.Version, build.Revision)
	}
	// Its OpenMetrics family name would clash with go_memstats_alloc_bytes_total.
	if _, ok := families["go_memstats_alloc_bytes"]; ok {
		t.Error("go_memstats_alloc_bytes is exposed")
	}
	// The whole exposition, runtime collectors included, must be valid
	// OpenMetrics.
	scrape(t, tel.MetricsHandler, acceptOpenMetrics)
}

func TestExemplars(t *testing.T) {
	tel := setup(t, env())
	ctx, span := tel.TracerProvider.Tracer("test").Start(t.Context(), "checkout")
	sc := span.SpanContext()
	if !sc.IsSampled() {
		t.Fatal("span is not sampled under the default sampler")
	}
	instruments(t, ctx, tel.MeterProvider)
	span.End()

	families, body := scrape(t, tel.MetricsHandler, acceptOpenMetrics)
	var exemplarLine bool
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "http_request_duration_seconds_bucket{") &&
			strings.Contains(line, ` # {`) && strings.Contains(line, `trace_id="`+sc.TraceID().String()+`"`) {
			exemplarLine = true
		}
	}
	if !exemplarLine {
		t.Errorf("OpenMetrics body lacks the histogram exemplar of trace %s:\n%s", sc.TraceID(), body)
	}

	var found bool
	for _, b := range families["http_request_duration_seconds"].GetMetric()[0].GetHistogram().GetBucket() {
		if ex := b.GetExemplar(); ex != nil {
			found = true
			if b.GetUpperBound() != 0.05 || ex.GetValue() != 0.02 {
				t.Errorf("exemplar on le=%v with value %v, want le=0.05, 0.02", b.GetUpperBound(), ex.GetValue())
			}
			got := map[string]string{}
			for _, l := range ex.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if got["trace_id"] != sc.TraceID().String() || got["span_id"] != sc.SpanID().String() {
				t.Errorf("exemplar labels = %v, want trace %s span %s", got, sc.TraceID(), sc.SpanID())
			}
		}
	}
	if !found {
		t.Error("no histogram bucket has an exemplar")
	}
	if ex := families["checkout_attempts_total"].GetMetric()[0].GetCounter().GetExemplar(); ex == nil {
		t.Error("counter has no exemplar")
	}

	// The classic text format has no exemplars.
	_, text := scrape(t, tel.MetricsHandler, acceptText)
	if strings.Contains(text, "trace_id") {
		t.Errorf("text format carries exemplars:\n%s", text)
	}
}

// TestNameCollisions shows the trap of dropping scope labels: instruments
// whose Prometheus names coincide. The scrape must still succeed and serve
// every other family.
func TestNameCollisions(t *testing.T) {
	var logs bytes.Buffer
	tel := setup(t, env(), telemetry.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx := t.Context()
	a := tel.MeterProvider.Meter("a")
	b := tel.MeterProvider.Meter("b")

	// The same name from two meters: told apart only by the dropped scope
	// labels.
	for _, m := range []metric.Meter{a, b} {
		c, err := m.Int64Counter("dup_events_total")
		if err != nil {
			t.Fatal(err)
		}
		c.Add(ctx, 1)
	}
	// "conflict" becomes conflict_total, which a gauge already claims.
	c, err := a.Int64Counter("conflict")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 1)
	g, err := a.Int64Gauge("conflict_total")
	if err != nil {
		t.Fatal(err)
	}
	g.Record(ctx, 5)
	instruments(t, ctx, tel.MeterProvider)

	families, body := scrape(t, tel.MetricsHandler, acceptText)
	for _, name := range []string{"checkout_attempts_total", "http_request_duration_seconds", "dup_events_total", "go_goroutines"} {
		if _, ok := families[name]; !ok {
			t.Errorf("family %q missing after a collision:\n%s", name, body)
		}
	}
	if n := len(families["dup_events_total"].GetMetric()); n != 1 {
		t.Errorf("dup_events_total has %d series, want 1", n)
	}
	if !strings.Contains(logs.String(), "serving metrics") {
		t.Errorf("collision not logged; logs:\n%s", logs.String())
	}

	families, _ = scrape(t, tel.MetricsHandler, acceptText)
	var gathering float64
	for _, m := range families["promhttp_metric_handler_errors_total"].GetMetric() {
		if labelValue(m, "cause") == "gathering" {
			gathering = m.GetCounter().GetValue()
		}
	}
	if gathering < 1 {
		t.Errorf("promhttp_metric_handler_errors_total{cause=gathering} = %v, want >= 1", gathering)
	}
}

func TestSDKDisabled(t *testing.T) {
	tel := setup(t, env("OTEL_SDK_DISABLED", "true", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"))

	ctx, span := tel.TracerProvider.Tracer("test").Start(t.Context(), "op")
	if span.SpanContext().IsValid() || span.IsRecording() {
		t.Error("disabled SDK produced a real span")
	}
	span.End()
	instruments(t, ctx, tel.MeterProvider)

	families, body := scrape(t, tel.MetricsHandler, acceptText)
	if _, ok := families["checkout_attempts_total"]; ok {
		t.Errorf("disabled SDK exported instruments:\n%s", body)
	}
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if _, ok := families[name]; !ok {
			t.Errorf("family %q missing", name)
		}
	}
	if tel.Propagator == nil || len(tel.Propagator.Fields()) == 0 {
		t.Error("disabled SDK has no propagator")
	}
}

func TestMetricsExporterNone(t *testing.T) {
	tel := setup(t, env("OTEL_METRICS_EXPORTER", "none"))
	if tel.MetricsHandler != nil {
		t.Error("MetricsHandler is not nil with OTEL_METRICS_EXPORTER=none")
	}
	instruments(t, t.Context(), tel.MeterProvider) // must not fail on the no-op provider
}

func TestPropagators(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  []string
	}{
		{"", []string{"traceparent", "tracestate", "baggage"}},
		{"b3", []string{"b3"}},
		{"tracecontext,b3multi", []string{"traceparent", "tracestate", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags"}},
		{"none", nil},
	} {
		t.Run(tc.value, func(t *testing.T) {
			tel := setup(t, env("OTEL_PROPAGATORS", tc.value))
			got := tel.Propagator.Fields()
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("Fields() = %v, want %v", got, want)
			}
		})
	}
}

func TestSampler(t *testing.T) {
	for _, tc := range []struct {
		sampler, arg string
		sampled      bool
	}{
		{"", "", true},
		{"always_on", "", true},
		{"always_off", "", false},
		{"parentbased_always_off", "", false},
		{"traceidratio", "0", false},
		{"traceidratio", "1", true},
		{"parentbased_traceidratio", "0", false},
	} {
		t.Run(tc.sampler+"/"+tc.arg, func(t *testing.T) {
			tel := setup(t, env("OTEL_TRACES_SAMPLER", tc.sampler, "OTEL_TRACES_SAMPLER_ARG", tc.arg))
			_, span := tel.TracerProvider.Tracer("test").Start(t.Context(), "op")
			defer span.End()
			if got := span.SpanContext().IsSampled(); got != tc.sampled {
				t.Errorf("sampled = %v, want %v", got, tc.sampled)
			}
		})
	}
}

// TestSetupRejectsBadConfig: an exporter autoexport does not know fails
// Setup, with a message naming the variable.
func TestSetupRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{env("OTEL_METRICS_EXPORTER", "prometheus,statsd"), "OTEL_METRICS_EXPORTER"},
		{env("OTEL_TRACES_EXPORTER", "zipkin"), "OTEL_TRACES_EXPORTER"},
		{env("OTEL_LOGS_EXPORTER", "syslog"), "OTEL_LOGS_EXPORTER"},
		{env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), "invalid OTLP protocol"},
	} {
		t.Run(fmt.Sprint(tc.env), func(t *testing.T) {
			testenv.SetOTelEnv(t, tc.env)
			tel, err := telemetry.Setup(t.Context(), build)
			if err == nil {
				_ = tel.Shutdown(context.Background())
				t.Fatal("Setup succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %s", err, tc.want)
			}
		})
	}
}

// TestBadConfigReported: a value the SDK or a contrib package does not know
// is reported through OpenTelemetry's error handler, which the service logs,
// and the default is used, as the SDK does.
func TestBadConfigReported(t *testing.T) {
	t.Cleanup(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Print(err) }))
	})
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{env("OTEL_TRACES_SAMPLER", "sometimes"), "sometimes"},
		{env("OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "half"), "half"},
		{env("OTEL_PROPAGATORS", "tracecontext,carrier-pigeon"), "carrier-pigeon"},
	} {
		t.Run(fmt.Sprint(tc.env), func(t *testing.T) {
			var logs testenv.Buffer
			tel := setup(t, tc.env, telemetry.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))), telemetry.WithGlobalErrorHandler())
			_, span := tel.TracerProvider.Tracer("test").Start(t.Context(), "op")
			span.End()
			if !span.SpanContext().IsSampled() {
				t.Error("span not sampled: the default sampler is not in use")
			}
			if out := logs.String(); !strings.Contains(out, `"level":"WARN","msg":"opentelemetry"`) || !strings.Contains(out, tc.want) {
				t.Errorf("%s not reported in the log:\n%s", tc.want, out)
			}
		})
	}
}

func TestShutdownTwice(t *testing.T) {
	tel := setup(t, nil)
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// Example_instrumentNames shows the Prometheus names of the instruments the
// service creates.
func Example_instrumentNames() {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Build{Version: "dev"})
	if err != nil {
		panic(err)
	}
	defer tel.Shutdown(ctx)

	meter := tel.MeterProvider.Meter("example")
	attempts, _ := meter.Int64Counter("checkout_attempts_total")
	attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "ok")))
	duration, _ := meter.Float64Histogram("http_request_duration_seconds", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.1, 1))
	duration.Record(ctx, 0.2)
	_, _ = meter.Int64ObservableGauge("sale_items_sold",
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(5)
			return nil
		}))
	conns, _ := meter.Int64Gauge("db_connections_active")
	conns.Record(ctx, 3)

	rec := httptest.NewRecorder()
	tel.MetricsHandler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "go_") &&
			!strings.HasPrefix(line, "process_") && !strings.HasPrefix(line, "promhttp_") &&
			!strings.HasPrefix(line, "flashsale_build_info") {
			fmt.Println(line)
		}
	}
	// Output:
	// checkout_attempts_total{reason="ok"} 1
	// db_connections_active 3
	// http_request_duration_seconds_bucket{le="0.1"} 0
	// http_request_duration_seconds_bucket{le="1"} 1
	// http_request_duration_seconds_bucket{le="+Inf"} 1
	// http_request_duration_seconds_sum 0.2
	// http_request_duration_seconds_count 1
	// sale_items_sold 5
}

// TestGlobalErrorHandler: with WithGlobalErrorHandler, an error OpenTelemetry
// reports on its own (here a gauge callback failing during a scrape) reaches
// the service's logger at Warn instead of stderr.
func TestGlobalErrorHandler(t *testing.T) {
	t.Cleanup(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Print(err) }))
	})
	var logs testenv.Buffer
	tel := setup(t, env(), telemetry.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))), telemetry.WithGlobalErrorHandler())
	_, err := tel.MeterProvider.Meter("m").Int64ObservableGauge("failing_gauge",
		metric.WithInt64Callback(func(context.Context, metric.Int64Observer) error {
			return errors.New("read the active sale: database unreachable")
		}))
	if err != nil {
		t.Fatal(err)
	}
	scrape(t, tel.MetricsHandler, acceptText)
	out := logs.String()
	if !strings.Contains(out, `"level":"WARN","msg":"opentelemetry"`) || !strings.Contains(out, "database unreachable") {
		t.Fatalf("callback error not in the log:\n%s", out)
	}
}
