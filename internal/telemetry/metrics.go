package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/otlptranslator"
	prometheusbridge "go.opentelemetry.io/contrib/bridges/prometheus"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// runtimeGatherer gathers the process and Go runtime collectors. They
// describe the process, not one Telemetry, so one registry serves every
// instance in the process: on /metrics beside the OTel exporter, and over
// OTLP through the Prometheus bridge.
var runtimeGatherer = sync.OnceValue(func() prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	)
	return filteredGatherer{reg}
})

// registerRuntimeProducer makes the runtime series part of every metric
// reader autoexport creates (unless OTEL_METRICS_PRODUCERS names others), so
// an OTLP-only deployment has memory and goroutine series too, under the
// names /metrics serves.
var registerRuntimeProducer = sync.OnceFunc(func() {
	autoexport.WithFallbackMetricProducer(func(context.Context) (sdkmetric.Producer, error) {
		return prometheusbridge.NewMetricProducer(prometheusbridge.WithGatherer(runtimeGatherer())), nil
	})
})

// droppedFamilies are metric families left out of the runtime series.
//
// The Go collector exposes the gauge go_memstats_alloc_bytes next to the
// counter go_memstats_alloc_bytes_total. OpenMetrics names a counter's family
// without _total, so the two families share a name and strict OpenMetrics
// parsers reject the whole scrape (prometheus/client_golang#829). The gauge
// is runtime.MemStats.Alloc, which always equals HeapAlloc, exposed as
// go_memstats_heap_alloc_bytes, so dropping it loses nothing.
var droppedFamilies = []string{"go_memstats_alloc_bytes"}

// filteredGatherer drops droppedFamilies from what it gathers.
type filteredGatherer struct{ prometheus.Gatherer }

// Gather implements prometheus.Gatherer.
func (g filteredGatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := g.Gatherer.Gather()
	mfs = slices.DeleteFunc(mfs, func(mf *dto.MetricFamily) bool {
		return slices.Contains(droppedFamilies, mf.GetName())
	})
	return mfs, err
}

// newBuildInfo returns the gauge flashsale_build_info, always 1, whose
// labels name the running build, so that a dashboard shows which build each
// instance runs. Its labels change only with the binary.
func newBuildInfo(build Build) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "flashsale_build_info",
		Help: "The running build: version, VCS revision and Go version; always 1.",
		ConstLabels: prometheus.Labels{
			"version": build.Version, "revision": build.Revision, "goversion": runtime.Version(),
		},
	})
	g.Set(1)
	return g
}

// newMetricsHandler serves reg and the runtime series, in the OpenMetrics
// format when the scraper asks for it (the only format that carries
// exemplars). An error in one metric family is logged and counted in
// promhttp_metric_handler_errors_total but does not fail the scrape.
func newMetricsHandler(reg *prometheus.Registry, logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{reg, runtimeGatherer()}, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
		ErrorLog:          scrapeErrorLog{logger},
		Registry:          reg,
	})
}

// scrapeErrorLog adapts a slog.Logger to promhttp.Logger.
type scrapeErrorLog struct{ logger *slog.Logger }

// Println logs a scrape error.
func (l scrapeErrorLog) Println(v ...any) {
	l.logger.Error("serving metrics", slog.String("error", fmt.Sprint(v...)))
}

// newPrometheusReader returns an OTel Prometheus exporter registered on reg.
// See the package documentation for the choice of options.
func newPrometheusReader(reg prometheus.Registerer) (sdkmetric.Reader, error) {
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(),
		otelprom.WithoutTargetInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("create Prometheus exporter: %w", err)
	}
	return exp, nil
}

// meterOptions returns the meter provider's options: res, the views, and
// readers.
func meterOptions(res *resource.Resource, readers []sdkmetric.Reader) []sdkmetric.Option {
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithView(view)}
	for _, r := range readers {
		opts = append(opts, sdkmetric.WithReader(r))
	}
	return opts
}

// droppedInstruments are recorded by instrumentation libraries but not kept:
//
//   - redisotel's pool instruments named before the database conventions
//     were stable, in milliseconds and nanoseconds where Prometheus wants
//     base units (promtool check metrics rejects them). The pool's state
//     (db.client.connections.usage, .waits, .timeouts, ...) stays, and
//     Redis latency is redis_command_duration_seconds.
//   - otelsql's db.sql.connection.wait_duration, a counter of milliseconds,
//     for the same reason. The count of waits, db.sql.connection.wait, stays.
var droppedInstruments = []string{
	"db.client.connections.create_time", "db.client.connections.use_time", "db.client.connections.waits_duration",
	"db.sql.connection.wait_duration",
}

// view drops droppedInstruments.
func view(i sdkmetric.Instrument) (sdkmetric.Stream, bool) {
	if slices.Contains(droppedInstruments, i.Name) {
		return sdkmetric.Stream{Aggregation: sdkmetric.AggregationDrop{}}, true
	}
	return sdkmetric.Stream{}, false
}
