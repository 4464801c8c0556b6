package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The exporters are autoexport's, which read OTEL_*_EXPORTER,
// OTEL_EXPORTER_OTLP_* and the exporters' own variables. This file holds
// only where the service departs from the specification's defaults (the
// table in docs/TELEMETRY.md): without an OTLP endpoint,
// traces and logs are not exported (the specification's default exporter,
// otlp, would send them to localhost), and the default metrics exporter is
// prometheus, served on the service's own /metrics, plus otlp when an
// endpoint is set.

// exported reports whether signal ("TRACES", "METRICS" or "LOGS") goes to
// autoexport: when OTEL_<signal>_EXPORTER names an exporter, or, unset, when
// an OTLP endpoint is configured for it.
func exported(signal string) bool {
	return os.Getenv("OTEL_"+signal+"_EXPORTER") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}

// newSpanExporter returns the span exporter, or nil when spans are not
// exported.
func newSpanExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	if !exported("TRACES") {
		return nil, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER: %w", err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		return nil, nil
	}
	return exp, nil
}

// newLogExporter returns the log record exporter, or nil when logs are not
// exported.
func newLogExporter(ctx context.Context) (sdklog.Exporter, error) {
	if !exported("LOGS") {
		return nil, nil
	}
	exp, err := autoexport.NewLogExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTEL_LOGS_EXPORTER: %w", err)
	}
	if autoexport.IsNoneLogExporter(exp) {
		return nil, nil
	}
	return exp, nil
}

// servesPrometheus reports whether the Prometheus exposition is served:
// OTEL_METRICS_EXPORTER unset or "prometheus", which here means the
// service's /metrics rather than autoexport's listener of its own.
func servesPrometheus() bool {
	v := strings.TrimSpace(os.Getenv("OTEL_METRICS_EXPORTER"))
	return v == "" || v == "prometheus"
}

// newMetricReader returns the reader that pushes metrics, or nil when they
// are not pushed. It carries the runtime series too.
func newMetricReader(ctx context.Context) (sdkmetric.Reader, error) {
	if strings.TrimSpace(os.Getenv("OTEL_METRICS_EXPORTER")) == "prometheus" || !exported("METRICS") {
		return nil, nil
	}
	registerRuntimeProducer()
	r, err := autoexport.NewMetricReader(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTEL_METRICS_EXPORTER (one of prometheus, otlp, console, none): %w", err)
	}
	if autoexport.IsNoneMetricReader(r) {
		return nil, nil
	}
	return r, nil
}
