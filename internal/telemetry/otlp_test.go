package telemetry_test

import (
	"context"
	"slices"
	"testing"

	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/flashsale/flashsale/internal/telemetry"
	"github.com/flashsale/flashsale/internal/testenv"
)

// produce records a span named "checkout" and a checkout_attempts_total
// value through tel, then shuts tel down so that everything is flushed.
func produce(t *testing.T, tel *telemetry.Telemetry) {
	t.Helper()
	ctx, span := tel.TracerProvider.Tracer("test").Start(t.Context(), "checkout")
	c, err := tel.MeterProvider.Meter("test").Int64Counter("checkout_attempts_total")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 1)
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
	if got := rcv.MetricNames(); !slices.Contains(got, "checkout_attempts_total") {
		t.Errorf("received metrics %v, want checkout_attempts_total", got)
	}

	for _, p := range rcv.Paths() {
		if p != "/v1/traces" && p != "/v1/metrics" {
			t.Errorf("request to %s", p)
		}
	}
	for _, h := range rcv.Headers() {
		if got := h.Get("X-Api-Key"); got != "secret value" {
			t.Errorf("x-api-key = %q, want %q", got, "secret value")
		}
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
}

func TestOTLPExporterNone(t *testing.T) {
	for _, tc := range []struct {
		name, key      string
		spans, metrics bool
	}{
		{"traces", "OTEL_TRACES_EXPORTER", false, true},
		{"metrics", "OTEL_METRICS_EXPORTER", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv, url := testenv.StartOTLPHTTP(t)
			tel := setup(t, env("OTEL_EXPORTER_OTLP_ENDPOINT", url, tc.key, "none"))
			produce(t, tel)
			if got := len(rcv.SpanNames()) > 0; got != tc.spans {
				t.Errorf("spans received = %v, want %v", got, tc.spans)
			}
			if got := len(rcv.MetricNames()) > 0; got != tc.metrics {
				t.Errorf("metrics received = %v, want %v", got, tc.metrics)
			}
		})
	}
}

// TestOTLPOptIn checks that nothing is exported unless getenv asks for it,
// even when the process environment, which the exporters would read
// themselves, names an endpoint.
func TestOTLPOptIn(t *testing.T) {
	rcv, url := testenv.StartOTLPHTTP(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_METRICS_EXPORTER", "otlp")

	tel := setup(t, env())
	produce(t, tel)
	if got := rcv.SpanNames(); len(got) != 0 {
		t.Errorf("received spans %v", got)
	}
	if got := rcv.MetricNames(); len(got) != 0 {
		t.Errorf("received metrics %v", got)
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
	if got := rcv.MetricNames(); !slices.Contains(got, "checkout_attempts_total") {
		t.Errorf("received metrics %v, want checkout_attempts_total", got)
	}
}
