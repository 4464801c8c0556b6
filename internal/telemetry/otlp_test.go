package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"

	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/flashsale/flashsale/internal/telemetry"
	"github.com/flashsale/flashsale/internal/testenv"
)

// produce records a span named "checkout", a checkout_attempts_total value
// and a log record "checkout done" (and a debug record, below the logger's
// level) in that span through tel, then shuts tel down so that everything is
// flushed.
func produce(t *testing.T, tel *telemetry.Telemetry) {
	t.Helper()
	ctx, span := tel.TracerProvider.Tracer("test").Start(t.Context(), "checkout")
	c, err := tel.MeterProvider.Meter("test").Int64Counter("checkout_attempts_total")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 1)
	log := tel.Logger(telemetry.NewLogger(io.Discard, slog.LevelInfo))
	log.InfoContext(ctx, "checkout done", "sale_id", "s1")
	log.DebugContext(ctx, "below the level")
	span.End()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func stringAttr(res *resourcepb.Resource, key string) string {
	for _, kv := range res.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// checkLogs checks that the one record received is produce's, in its span.
func checkLogs(t *testing.T, rcv *testenv.OTLPReceiver) {
	t.Helper()
	logs := rcv.Logs()
	if len(logs) != 1 {
		t.Fatalf("received %d log records, want 1: %v", len(logs), logs)
	}
	rec := logs[0]
	if rec.GetBody().GetStringValue() != "checkout done" || rec.GetSeverityNumber() != logspb.SeverityNumber_SEVERITY_NUMBER_INFO {
		t.Errorf("log record = %v, want checkout done at INFO", rec)
	}
	var saleID string
	for _, kv := range rec.GetAttributes() {
		if kv.GetKey() == "sale_id" {
			saleID = kv.GetValue().GetStringValue()
		}
	}
	if saleID != "s1" {
		t.Errorf("log record attributes = %v, want sale_id=s1", rec.GetAttributes())
	}
	spans := rcv.Spans()
	if len(spans) != 1 || !slices.Equal(rec.GetTraceId(), spans[0].GetTraceId()) || !slices.Equal(rec.GetSpanId(), spans[0].GetSpanId()) {
		t.Errorf("log record's trace %x span %x: not the checkout span's", rec.GetTraceId(), rec.GetSpanId())
	}
}

func TestOTLPHTTP(t *testing.T) {
	rcv, url := testenv.StartOTLPHTTP(t)
	tel := setup(t, env(
		"OTEL_EXPORTER_OTLP_ENDPOINT", url,
		"OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=secret%20value",
		"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,service.name=ignored",
		"OTEL_SERVICE_NAME", "flashsale-test",
	))
	if tel.MetricsHandler == nil {
		t.Error("MetricsHandler is nil: OTLP must come in addition to Prometheus")
	}
	produce(t, tel)

	if got := rcv.SpanNames(); !slices.Equal(got, []string{"checkout"}) {
		t.Errorf("received spans %v, want [checkout]", got)
	}
	// The runtime series come through the Prometheus bridge under the names
	// /metrics serves.
	for _, want := range []string{"checkout_attempts_total", "process_resident_memory_bytes", "process_cpu_seconds_total", "go_goroutines", "go_memstats_heap_alloc_bytes"} {
		if got := rcv.MetricNames(); !slices.Contains(got, want) {
			t.Errorf("received metrics %v, want %s", got, want)
		}
	}
	checkLogs(t, rcv)

	for _, p := range rcv.Paths() {
		if p != "/v1/traces" && p != "/v1/metrics" && p != "/v1/logs" {
			t.Errorf("request to %s", p)
		}
	}
	for _, h := range rcv.Headers() {
		if got := h.Get("X-Api-Key"); got != "secret value" {
			t.Errorf("x-api-key = %q, want %q", got, "secret value")
		}
	}
	if len(rcv.Resources()) < 3 {
		t.Errorf("%d resources received, want one per signal", len(rcv.Resources()))
	}
	for _, res := range rcv.Resources() {
		for key, want := range map[string]string{
			"service.name":                "flashsale-test",
			"service.version":             "1.2.3",
			"deployment.environment.name": "test",
			"telemetry.sdk.language":      "go",
		} {
			if got := stringAttr(res, key); got != want {
				t.Errorf("resource %s = %q, want %q", key, got, want)
			}
		}
		if stringAttr(res, "host.name") == "" {
			t.Error("resource has no host.name")
		}
	}
}

func TestOTLPPerSignal(t *testing.T) {
	rcv, url := testenv.StartOTLPHTTP(t)
	tel := setup(t, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url+"/custom/traces"))
	produce(t, tel)

	if got := rcv.SpanNames(); !slices.Equal(got, []string{"checkout"}) {
		t.Errorf("received spans %v, want [checkout]", got)
	}
	if got := rcv.MetricNames(); len(got) != 0 {
		t.Errorf("received metrics %v without a metrics endpoint", got)
	}
	if got := rcv.Logs(); len(got) != 0 {
		t.Errorf("received logs %v without a logs endpoint", got)
	}
	if got := rcv.Paths(); !slices.Equal(got, []string{"/custom/traces"}) {
		t.Errorf("requests to %v, want [/custom/traces]", got)
	}
}

func TestOTLPExporterNone(t *testing.T) {
	for _, tc := range []struct {
		key                  string
		spans, metrics, logs bool
	}{
		{"OTEL_TRACES_EXPORTER", false, true, true},
		{"OTEL_METRICS_EXPORTER", true, false, true},
		{"OTEL_LOGS_EXPORTER", true, true, false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			rcv, url := testenv.StartOTLPHTTP(t)
			tel := setup(t, env("OTEL_EXPORTER_OTLP_ENDPOINT", url, tc.key, "none"))
			produce(t, tel)
			if got := len(rcv.SpanNames()) > 0; got != tc.spans {
				t.Errorf("spans received = %v, want %v", got, tc.spans)
			}
			if got := len(rcv.MetricNames()) > 0; got != tc.metrics {
				t.Errorf("metrics received = %v, want %v", got, tc.metrics)
			}
			if got := len(rcv.Logs()) > 0; got != tc.logs {
				t.Errorf("logs received = %v, want %v", got, tc.logs)
			}
		})
	}
}

func TestOTLPGRPC(t *testing.T) {
	rcv, addr := testenv.StartOTLPGRPC(t)

	tel := setup(t, env(
		"OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr,
		"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc",
	))
	produce(t, tel)

	if got := rcv.SpanNames(); !slices.Equal(got, []string{"checkout"}) {
		t.Errorf("received spans %v, want [checkout]", got)
	}
	for _, want := range []string{"checkout_attempts_total", "go_goroutines"} {
		if got := rcv.MetricNames(); !slices.Contains(got, want) {
			t.Errorf("received metrics %v, want %s", got, want)
		}
	}
	checkLogs(t, rcv)
}
