package telemetry

import (
	"testing"
)

// TestExporterDefaults pins where the service departs from the
// specification's defaults: nothing is exported without an endpoint, and
// prometheus is the default metrics exporter, with otlp beside it when an
// endpoint is set.
func TestExporterDefaults(t *testing.T) {
	const endpoint = "http://127.0.0.1:1"
	for _, tc := range []struct {
		name                    string
		env                     map[string]string
		spans, logs, push, prom bool
	}{
		{name: "nothing set", prom: true},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, spans: true, logs: true, push: true, prom: true},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}, spans: true, prom: true},
		{name: "logs endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": endpoint}, logs: true, prom: true},
		{name: "metrics endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": endpoint}, push: true, prom: true},
		{
			name:  "explicit otlp without an endpoint: the exporters' default",
			env:   map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp"},
			spans: true, logs: true, push: true,
		},
		{
			name:  "prometheus alone",
			env:   map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_METRICS_EXPORTER": "prometheus"},
			spans: true, logs: true, prom: true,
		},
		{
			name: "none",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, signal := range []string{"TRACES", "LOGS", "METRICS"} {
				for _, key := range []string{"OTEL_" + signal + "_EXPORTER", "OTEL_EXPORTER_OTLP_" + signal + "_ENDPOINT"} {
					t.Setenv(key, tc.env[key])
				}
			}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.env["OTEL_EXPORTER_OTLP_ENDPOINT"])
			ctx := t.Context()
			spans, err := newSpanExporter(ctx)
			if err != nil {
				t.Fatal(err)
			}
			logs, err := newLogExporter(ctx)
			if err != nil {
				t.Fatal(err)
			}
			push, err := newMetricReader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := spans != nil; got != tc.spans {
				t.Errorf("span exporter = %v, want one: %v", spans, tc.spans)
			}
			if got := logs != nil; got != tc.logs {
				t.Errorf("log exporter = %v, want one: %v", logs, tc.logs)
			}
			if got := push != nil; got != tc.push {
				t.Errorf("push reader = %v, want one: %v", push, tc.push)
			}
			if got := servesPrometheus(); got != tc.prom {
				t.Errorf("servesPrometheus() = %v, want %v", got, tc.prom)
			}
			if spans != nil {
				_ = spans.Shutdown(ctx)
			}
			if logs != nil {
				_ = logs.Shutdown(ctx)
			}
			if push != nil {
				_ = push.Shutdown(ctx)
			}
		})
	}
}
