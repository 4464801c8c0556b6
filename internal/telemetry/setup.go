package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Build identifies the running binary: the version and VCS revision stamped
// at build time (see the Makefile).
type Build struct {
	Version, Revision string
}

// Telemetry holds the configured providers. Its fields are safe for
// concurrent use.
type Telemetry struct {
	// MeterProvider is an SDK meter provider, or a no-op one when the SDK is
	// disabled or no metric exporter is configured.
	MeterProvider metric.MeterProvider
	// TracerProvider is an SDK tracer provider, or a no-op one when the SDK
	// is disabled.
	TracerProvider trace.TracerProvider
	// Propagator injects and extracts context in the formats named by
	// OTEL_PROPAGATORS.
	Propagator propagation.TextMapPropagator
	// MetricsHandler serves the Prometheus exposition (mount it at
	// /metrics). It is nil when the Prometheus exporter is disabled.
	MetricsHandler http.Handler

	// loggerProvider receives log records when logs are exported; else nil.
	loggerProvider log.LoggerProvider

	shutdowns []func(context.Context) error
	once      sync.Once
	err       error
}

// Option configures Setup.
type Option func(*options)

type options struct {
	logger       *slog.Logger
	processors   []sdktrace.SpanProcessor
	globalErrors bool
}

// WithGlobalErrorHandler sends the errors OpenTelemetry reports through its
// process-wide handler (a failed export, a failing metric callback, an
// unknown sampler or propagator name) to the logger at Warn, instead of the
// standard log package on stderr, so they reach the service's JSON log. It
// is the one thing Setup may install globally: main asks for it; tests
// running several instances in one process do not.
func WithGlobalErrorHandler() Option {
	return func(o *options) { o.globalErrors = true }
}

// WithSpanProcessor adds p to the tracer provider, beside the exporter when
// there is one: for tests (an in-memory recorder) and for embedding. It has
// no effect when the SDK is disabled.
func WithSpanProcessor(p sdktrace.SpanProcessor) Option {
	return func(o *options) { o.processors = append(o.processors, p) }
}

// WithLogger sets the logger for errors that happen while serving
// MetricsHandler. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// Setup configures OpenTelemetry from the standard environment variables,
// which the SDK, autoexport and the exporters read from the process
// environment. build becomes service.version and flashsale_build_info. The
// package documentation lists where the service departs from the
// specification's defaults.
//
// The caller must call Shutdown to flush pending telemetry.
func Setup(ctx context.Context, build Build, opts ...Option) (*Telemetry, error) {
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.globalErrors {
		log := o.logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("opentelemetry", "err", err)
		}))
	}

	t := &Telemetry{
		MeterProvider:  metricnoop.NewMeterProvider(),
		TracerProvider: tracenoop.NewTracerProvider(),
		Propagator:     autoprop.NewTextMapPropagator(),
	}
	var reg *prometheus.Registry
	if servesPrometheus() {
		reg = prometheus.NewRegistry()
		reg.MustRegister(newBuildInfo(build))
		t.MetricsHandler = newMetricsHandler(reg, o.logger)
	}
	// The Go SDK does not read OTEL_SDK_DISABLED itself.
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return t, nil
	}
	res, err := newResource(ctx, build)
	if err != nil {
		return nil, err
	}
	if err := t.setupProviders(ctx, res, reg, o.processors); err != nil {
		return nil, errors.Join(fmt.Errorf("telemetry config: %w", err), t.Shutdown(ctx))
	}
	return t, nil
}

// setupProviders creates the meter, tracer and logger providers. Each one
// created is shut down by t.Shutdown, also when a later one fails.
func (t *Telemetry) setupProviders(ctx context.Context, res *resource.Resource, reg *prometheus.Registry, processors []sdktrace.SpanProcessor) error {
	var readers []sdkmetric.Reader
	if reg != nil {
		r, err := newPrometheusReader(reg)
		if err != nil {
			return err
		}
		readers = append(readers, r)
	}
	push, err := newMetricReader(ctx)
	if err != nil {
		return err
	}
	if push != nil {
		readers = append(readers, push)
	}
	if len(readers) > 0 {
		mp := sdkmetric.NewMeterProvider(meterOptions(res, readers)...)
		t.MeterProvider = mp
		t.shutdowns = append(t.shutdowns, mp.Shutdown)
	}

	// The sampler is the SDK's default, which reads OTEL_TRACES_SAMPLER.
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, p := range processors {
		topts = append(topts, sdktrace.WithSpanProcessor(p))
	}
	spans, err := newSpanExporter(ctx)
	if err != nil {
		return err
	}
	if spans != nil {
		topts = append(topts, sdktrace.WithBatcher(spans))
	}
	// Without an exporter spans are still sampled and get valid IDs, which
	// logs and exemplars refer to.
	tp := sdktrace.NewTracerProvider(topts...)
	t.TracerProvider = tp
	t.shutdowns = append(t.shutdowns, tp.Shutdown)

	logs, err := newLogExporter(ctx)
	if err != nil {
		return err
	}
	if logs != nil {
		lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(logs)))
		t.loggerProvider = lp
		t.shutdowns = append(t.shutdowns, lp.Shutdown)
	}
	return nil
}

// Shutdown flushes and stops every provider and joins their errors. Calls
// after the first return the first call's result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.once.Do(func() {
		var errs []error
		for _, shutdown := range t.shutdowns {
			if err := shutdown(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			t.err = fmt.Errorf("telemetry shutdown: %w", err)
		}
	})
	return t.err
}
