// Package telemetry configures OpenTelemetry for the flash-sale service.
//
// It is the only package besides cmd that touches the OpenTelemetry SDK and
// its exporters. Every other package receives the API types
// [go.opentelemetry.io/otel/metric.MeterProvider],
// [go.opentelemetry.io/otel/trace.TracerProvider] and
// [go.opentelemetry.io/otel/propagation.TextMapPropagator] from the
// [Telemetry] value that [Setup] returns:
//
//	tel, err := telemetry.Setup(ctx, os.Getenv, version)
//	if err != nil {
//		return fmt.Errorf("set up telemetry: %w", err)
//	}
//	defer tel.Shutdown(context.WithoutCancel(ctx))
//	mux.Handle("GET /metrics", tel.MetricsHandler) // when non-nil
//
// Setup installs nothing globally: it never calls otel.SetMeterProvider,
// otel.SetTracerProvider or otel.SetTextMapPropagator. Every instrumentation
// library of the service is handed the providers explicitly. The one
// exception is asked for: [WithGlobalErrorHandler] sends OpenTelemetry's
// own error reports to the service's log.
//
// # Configuration
//
// Setup reads the standard OpenTelemetry environment variables through the
// getenv function it is given (os.Getenv in production, a map lookup in
// tests). Values it does not recognise make Setup fail rather than being
// silently ignored, so a typo in a deployment surfaces at start-up.
//
//   - OTEL_SDK_DISABLED: "true" replaces the meter and tracer providers with
//     no-op providers and turns off every OTLP exporter. /metrics is still
//     served, with only the process and Go runtime collectors.
//   - OTEL_SERVICE_NAME: service.name; default "flashsale". It takes
//     precedence over a service.name in OTEL_RESOURCE_ATTRIBUTES.
//   - OTEL_RESOURCE_ATTRIBUTES: comma-separated key=value pairs with
//     percent-encoded values, added to the resource. The version passed to
//     Setup becomes service.version and overrides one given here; host.name,
//     os.type, process.* and telemetry.sdk.* are detected.
//   - OTEL_PROPAGATORS: comma list of tracecontext, baggage, b3, b3multi,
//     jaeger, xray, ottrace or none; default "tracecontext,baggage".
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG: always_on, always_off,
//     traceidratio, parentbased_always_on, parentbased_always_off or
//     parentbased_traceidratio (the argument is the ratio in [0, 1], default
//     1); default parentbased_always_on.
//   - OTEL_TRACES_EXPORTER: comma list of otlp or none. When unset, spans are
//     exported over OTLP only if OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Without an exporter the SDK
//     tracer provider is still installed, so spans carry valid trace IDs for
//     logs and exemplars.
//   - OTEL_METRICS_EXPORTER: comma list of prometheus, otlp or none. When
//     unset it is "prometheus", plus "otlp" if OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set. "none" turns every metric
//     exporter off, including Prometheus: MetricsHandler is then nil.
//   - OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
//     OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: "http/protobuf" (default) or "grpc".
//   - OTEL_EXPORTER_OTLP_ENDPOINT: base URL with an http or https scheme; over
//     http/protobuf the signal path (/v1/traces, /v1/metrics) is appended.
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and
//     OTEL_EXPORTER_OTLP_METRICS_ENDPOINT are used as given. Without any the
//     exporters default to localhost:4318 (HTTP) or localhost:4317 (gRPC).
//   - OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TRACES_HEADERS,
//     OTEL_EXPORTER_OTLP_METRICS_HEADERS: comma-separated key=value pairs with
//     percent-encoded values; a per-signal list replaces the general one.
//   - OTEL_METRIC_EXPORT_INTERVAL (default 60000) and
//     OTEL_METRIC_EXPORT_TIMEOUT (default 30000): period and timeout of the
//     OTLP metric push, in milliseconds.
//
// The SDK and the exporters read their other tuning variables from the
// process environment themselves, not through getenv:
// OTEL_METRICS_EXEMPLAR_FILTER (default trace_based),
// OTEL_BSP_* for the batch span processor, OTEL_SPAN_*_LIMIT, and
// OTEL_EXPORTER_OTLP_{TIMEOUT,COMPRESSION,CERTIFICATE,CLIENT_*,INSECURE} and
// OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE for the exporters.
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
// carries (process.pid, host.name) would change on every restart.
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
