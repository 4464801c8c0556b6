// Package telemetry configures OpenTelemetry for the flash-sale service.
//
// It is the only package besides cmd that touches the OpenTelemetry SDK and
// its exporters. Every other package receives the API types
// [go.opentelemetry.io/otel/metric.MeterProvider],
// [go.opentelemetry.io/otel/trace.TracerProvider] and
// [go.opentelemetry.io/otel/propagation.TextMapPropagator] from the
// [Telemetry] value that [Setup] returns:
//
//	tel, err := telemetry.Setup(ctx, telemetry.Build{Version: version, Revision: revision})
//	if err != nil {
//		return fmt.Errorf("set up telemetry: %w", err)
//	}
//	defer tel.Shutdown(context.WithoutCancel(ctx))
//	mux.Handle("GET /metrics", tel.MetricsHandler) // when non-nil
//	log = tel.Logger(log)                          // also over OTLP, when exported
//
// Setup installs nothing globally: it never calls otel.SetMeterProvider,
// otel.SetTracerProvider or otel.SetTextMapPropagator, and every
// instrumentation library is handed the providers explicitly. The one
// exception is asked for: [WithGlobalErrorHandler] sends OpenTelemetry's own
// error reports to the service's log.
//
// # Configuration
//
// The SDK and its contrib packages read the standard OTEL_* variables
// themselves (autoexport, resource.WithFromEnv, the trace SDK's sampler,
// autoprop). This package holds only the glue they lack where the service
// departs from the specification's defaults: exporters.go and resource.go.
// The deviations, for operators, are tabled in docs/TELEMETRY.md. Without an
// exporter the SDK tracer provider is still installed, so spans carry valid
// trace IDs for logs and exemplars.
//
// # Prometheus names
//
// MetricsHandler serves the OTel Prometheus exporter, the process and Go
// runtime collectors and flashsale_build_info from one registry of its own,
// with OpenMetrics negotiated so that exemplars reach Prometheus. Names are
// translated with the UnderscoreEscapingWithSuffixes strategy: invalid
// characters become underscores, counters end in _total and a unit adds its
// suffix, but a suffix already present is not repeated. For instruments of
// this service:
//
//   - Give counters a name ending in _total, so the name in code is the name
//     in dashboards.
//   - Give histograms of durations the unit "s" and a name ending in
//     _seconds. Another unit adds another suffix ("ms" gives _milliseconds).
//   - Never use the unit "1": on gauges it appends _ratio. Use no unit, or an
//     annotation such as "{item}", which adds no suffix.
//   - Keep every Prometheus name unique across the service, and never name a
//     gauge "x" beside a counter "x_total" (one family in OpenMetrics).
//
// Scope labels and target_info are dropped (series identity must not change
// with a library upgrade or a restart), so two instruments translating to one
// name are no longer told apart: MetricsHandler then serves the other
// families and counts the error in
// promhttp_metric_handler_errors_total{cause="gathering"}. The view in
// metrics.go drops what standard tools reject or clients could inflate.
// docs/TELEMETRY.md lists every series and why each was kept or dropped.
package telemetry
