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
// otel.SetTracerProvider or otel.SetTextMapPropagator. Every instrumentation
// library of the service is handed the providers explicitly. The one
// exception is asked for: [WithGlobalErrorHandler] sends OpenTelemetry's
// own error reports to the service's log.
//
// # Configuration
//
// The OpenTelemetry SDK and its contrib packages read the standard
// environment variables from the process environment themselves:
// autoexport the exporters (OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER,
// OTEL_LOGS_EXPORTER, OTEL_EXPORTER_OTLP_*), resource.WithFromEnv the
// resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES), the trace SDK its
// sampler (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG), autoprop the
// propagators (OTEL_PROPAGATORS), the periodic reader, batch span and log
// processors their tuning (OTEL_METRIC_EXPORT_*, OTEL_BSP_*, OTEL_BLRP_*).
// This package holds only the glue they lack, where the service departs from
// the specification's defaults (exporters.go; the table is in the README's
// Configuration section):
//
//   - Traces and logs are exported only when OTEL_<SIGNAL>_EXPORTER is set or
//     an OTLP endpoint is (OTEL_EXPORTER_OTLP_ENDPOINT or the signal's own).
//     Without an exporter the SDK tracer provider is still installed, so
//     spans carry valid trace IDs for logs and exemplars.
//   - OTEL_METRICS_EXPORTER unset means prometheus, plus otlp when an
//     endpoint is set; "prometheus" is MetricsHandler, on the service's own
//     listener, not autoexport's listener on port 9464; any other single
//     name is autoexport's, and "none" turns MetricsHandler off too.
//   - The resource defaults service.name to "flashsale", service.version to
//     the build's version and service.instance.id to a random UUID; the
//     environment overrides each.
//   - OTEL_SDK_DISABLED=true, which the Go SDK does not read, gives no-op
//     providers; MetricsHandler still serves the process, Go runtime and
//     build series.
//
// An exporter name autoexport does not know makes Setup fail; a sampler or
// propagator name the SDK does not know is reported through OpenTelemetry's
// error handler (see [WithGlobalErrorHandler]) and the default is used.
//
// The process and Go runtime collectors are on one registry per process.
// MetricsHandler serves them beside the OTel exporter, and every reader
// autoexport creates carries them through the Prometheus bridge (unless
// OTEL_METRICS_PRODUCERS names other producers), so an OTLP-only deployment
// has memory and goroutine series under the same names.
//
// # Prometheus names
//
// The Prometheus exporter is registered on a registry of its own, together
// with the process and Go runtime collectors, and served by MetricsHandler
// with OpenMetrics negotiation enabled, so exemplars (trace_id, span_id) reach
// scrapers that ask for application/openmetrics-text.
//
// Names are translated with the UnderscoreEscapingWithSuffixes strategy,
// which is the Prometheus convention: invalid characters become underscores,
// monotonic counters end in _total and a unit adds its suffix, but a suffix
// already present is not repeated. So an Int64Counter "checkout_attempts_total"
// is exported as checkout_attempts_total, a Float64Histogram
// "http_request_duration_seconds" with unit "s" as
// http_request_duration_seconds_{bucket,sum,count}, and gauges without a unit
// keep their name. Rules for instruments created in this service:
//
//   - Give counters a name ending in _total (it would be added anyway, and
//     the name in code then matches the name in dashboards).
//   - Give histograms of durations the unit "s" and a name ending in
//     _seconds. Another unit adds another suffix (unit "ms" gives
//     _milliseconds).
//   - Never use the unit "1": on gauges it appends _ratio. Use no unit, or an
//     annotation such as "{item}", which adds no suffix.
//
// The otel_scope_name, otel_scope_version and otel_scope_schema_url labels
// are dropped (WithoutScopeInfo): with them every series would change
// identity whenever an instrumentation library is upgraded. The target_info
// series is dropped as well (WithoutTargetInfo): Prometheus already
// identifies the target by job and instance, and the resource attributes it
// carries (process.pid, host.name) would change on every restart. The build
// is named by flashsale_build_info{version, revision, goversion} instead,
// whose labels change only with the binary.
//
// One view (metrics.go) drops what standard tools reject or clients could
// inflate: otelhttp's server.address and server.port, which come from the
// request's Host header; instruments in milliseconds or nanoseconds, which
// promtool check metrics rejects; and otelhttp's body-size histograms.
//
// Dropping scope labels has a cost: two instruments whose names translate to
// the same Prometheus name (for example counters "orders" and "orders_total",
// or the same name created by two meters) are no longer told apart. The
// exporter drops an instrument whose type conflicts with an earlier one, and
// the registry rejects a series already collected with the same labels. To
// keep one such mistake from failing the whole scrape, MetricsHandler uses
// promhttp.ContinueOnError: the remaining families are served, the error is
// logged and promhttp_metric_handler_errors_total{cause="gathering"} counts
// it. Keep Prometheus names unique across the service, and remember that
// OpenMetrics names a counter's family without _total: a gauge "x" next to a
// counter "x_total" makes the OpenMetrics exposition invalid. For that reason
// the Go collector's gauge go_memstats_alloc_bytes, which clashes with its
// counter go_memstats_alloc_bytes_total and always equals
// go_memstats_heap_alloc_bytes, is left out.
package telemetry
