package telemetry

import (
	"maps"
	"testing"
)

func TestLoadConfigExporters(t *testing.T) {
	for _, tc := range []struct {
		name           string
		env            map[string]string
		prometheus     bool
		traces, metric *otlpConfig
	}{
		{name: "default", env: nil, prometheus: true},
		{
			name:       "general endpoint",
			env:        map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/base/"},
			prometheus: true,
			traces:     &otlpConfig{protocol: "http/protobuf", endpoint: "http://collector:4318/base/v1/traces"},
			metric:     &otlpConfig{protocol: "http/protobuf", endpoint: "http://collector:4318/base/v1/metrics"},
		},
		{
			name: "grpc general endpoint is used as given",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317",
				"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
				"OTEL_EXPORTER_OTLP_HEADERS":  "a=1",
			},
			prometheus: true,
			traces:     &otlpConfig{protocol: "grpc", endpoint: "https://collector:4317", headers: map[string]string{"a": "1"}},
			metric:     &otlpConfig{protocol: "grpc", endpoint: "https://collector:4317", headers: map[string]string{"a": "1"}},
		},
		{
			name: "per-signal settings win",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT":         "http://collector:4318",
				"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics:9000/push",
				"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL":  "grpc",
				"OTEL_EXPORTER_OTLP_HEADERS":          "a=1",
				"OTEL_EXPORTER_OTLP_TRACES_HEADERS":   "b=2",
			},
			prometheus: true,
			traces:     &otlpConfig{protocol: "grpc", endpoint: "http://collector:4318", headers: map[string]string{"b": "2"}},
			metric:     &otlpConfig{protocol: "http/protobuf", endpoint: "http://metrics:9000/push", headers: map[string]string{"a": "1"}},
		},
		{
			name:   "explicit otlp without endpoint uses the exporter default",
			env:    map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp"},
			traces: &otlpConfig{protocol: "http/protobuf"},
			metric: &otlpConfig{protocol: "http/protobuf"},
		},
		{
			name:       "explicit list overrides the endpoint",
			env:        map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "prometheus", "OTEL_TRACES_EXPORTER": "none"},
			prometheus: true,
		},
		{
			name: "none wins in a list",
			env:  map[string]string{"OTEL_METRICS_EXPORTER": "prometheus,none"},
		},
		{
			name:       "disabled",
			env:        map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
			prometheus: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if cfg.prometheus != tc.prometheus {
				t.Errorf("prometheus = %v, want %v", cfg.prometheus, tc.prometheus)
			}
			checkOTLP(t, "traces", cfg.tracesOTLP, tc.traces)
			checkOTLP(t, "metrics", cfg.metricsOTLP, tc.metric)
		})
	}
}

func checkOTLP(t *testing.T, signal string, got, want *otlpConfig) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil:
		t.Errorf("%s OTLP = %+v, want %+v", signal, got, want)
	case got.protocol != want.protocol || got.endpoint != want.endpoint || !maps.Equal(got.headers, want.headers):
		t.Errorf("%s OTLP = %+v, want %+v", signal, *got, *want)
	}
}

func TestParseKeyValues(t *testing.T) {
	got, err := parseKeyValues(" a = 1 ,b=x%3Dy%2Cz, ,c=")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"a": "1", "b": "x=y,z", "c": ""}; !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"a", "=1", "a=%zz"} {
		if _, err := parseKeyValues(bad); err == nil {
			t.Errorf("parseKeyValues(%q) succeeded", bad)
		}
	}
}
