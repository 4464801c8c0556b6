package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// newRegistry returns a registry of its own holding the process and Go
// runtime collectors.
func newRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register runtime collector: %w", err)
		}
	}
	return reg, nil
}

// droppedFamilies are metric families left out of the exposition.
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

// newMetricsHandler serves reg, in the OpenMetrics format when the scraper
// asks for it (the only format that carries exemplars). An error in one
// metric family is logged and counted in promhttp_metric_handler_errors_total
// but does not fail the scrape.
func newMetricsHandler(reg *prometheus.Registry, logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(filteredGatherer{reg}, promhttp.HandlerOpts{
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

// newMeterProvider returns an SDK meter provider with a Prometheus reader on
// reg (when reg is non-nil) and a periodic OTLP reader (when configured). It
// returns nil when there is no reader at all.
func newMeterProvider(ctx context.Context, cfg config, res *resource.Resource, reg *prometheus.Registry) (*sdkmetric.MeterProvider, error) {
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithView(droppedViews()...)}
	if reg != nil {
		r, err := newPrometheusReader(reg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdkmetric.WithReader(r))
	}
	if cfg.metricsOTLP != nil {
		exp, err := newMetricExporter(ctx, *cfg.metricsOTLP)
		if err != nil {
			return nil, err
		}
		// Given explicitly, the interval and timeout read through getenv
		// override what the reader reads from the process environment.
		var ropts []sdkmetric.PeriodicReaderOption
		if cfg.metricInterval > 0 {
			ropts = append(ropts, sdkmetric.WithInterval(cfg.metricInterval))
		}
		if cfg.metricTimeout > 0 {
			ropts = append(ropts, sdkmetric.WithTimeout(cfg.metricTimeout))
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, ropts...)))
	}
	if len(opts) == 2 {
		return nil, nil
	}
	return sdkmetric.NewMeterProvider(opts...), nil
}

// newMetricExporter returns an OTLP metric exporter. Options given here
// override what the exporter reads from the process environment itself.
func newMetricExporter(ctx context.Context, c otlpConfig) (sdkmetric.Exporter, error) {
	var (
		exp sdkmetric.Exporter
		err error
	)
	switch c.protocol {
	case protocolGRPC:
		var opts []otlpmetricgrpc.Option
		if c.endpoint != "" {
			opts = append(opts, otlpmetricgrpc.WithEndpointURL(c.endpoint))
		}
		if c.headers != nil {
			opts = append(opts, otlpmetricgrpc.WithHeaders(c.headers))
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	default:
		var opts []otlpmetrichttp.Option
		if c.endpoint != "" {
			opts = append(opts, otlpmetrichttp.WithEndpointURL(c.endpoint))
		}
		if c.headers != nil {
			opts = append(opts, otlpmetrichttp.WithHeaders(c.headers))
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("create OTLP metric exporter (%s): %w", c.protocol, err)
	}
	return exp, nil
}

// droppedInstruments are recorded by instrumentation libraries but not kept:
// otelhttp's request and response body-size histograms, semantic conventions
// still in development, which say nothing about an API whose requests carry
// no body and whose answers are a few hundred bytes of JSON. Each cost two
// histogram records (and exemplars) per request. The stable
// http.server.request.duration stays.
var droppedInstruments = []string{"http.server.request.body.size", "http.server.response.body.size"}

func droppedViews() []sdkmetric.View {
	views := make([]sdkmetric.View, 0, len(droppedInstruments))
	for _, name := range droppedInstruments {
		views = append(views, sdkmetric.NewView(sdkmetric.Instrument{Name: name}, sdkmetric.Stream{Aggregation: sdkmetric.AggregationDrop{}}))
	}
	return views
}
