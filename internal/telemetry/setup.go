package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

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
// process-wide handler (a failed export, a failing metric callback) to the
// logger at Warn, instead of the standard log package on stderr, so they
// reach the service's JSON log. It is the one thing Setup may install
// globally: main asks for it; tests running several instances in one
// process do not.
func WithGlobalErrorHandler() Option {
	return func(o *options) { o.globalErrors = true }
}

// WithSpanProcessor adds p to the tracer provider, beside the OTLP exporter
// when there is one: for tests (an in-memory recorder) and for embedding.
// It has no effect when the SDK is disabled.
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

// Setup configures OpenTelemetry from the standard environment variables read
// through getenv (os.Getenv when nil). version becomes service.version. The
// package documentation lists the variables and their defaults.
//
// The caller must call Shutdown to flush pending telemetry.
func Setup(ctx context.Context, getenv func(string) string, version string, opts ...Option) (*Telemetry, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}

	cfg, err := loadConfig(getenv)
	if err != nil {
		return nil, fmt.Errorf("telemetry config: %w", err)
	}
	if o.globalErrors {
		log := o.logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("opentelemetry", "err", err)
		}))
	}
	prop, err := newPropagator(cfg.propagators)
	if err != nil {
		return nil, fmt.Errorf("telemetry config: %w", err)
	}

	t := &Telemetry{
		MeterProvider:  metricnoop.NewMeterProvider(),
		TracerProvider: tracenoop.NewTracerProvider(),
		Propagator:     prop,
	}

	var reg *prometheus.Registry
	if cfg.prometheus {
		if reg, err = newRegistry(); err != nil {
			return nil, err
		}
		t.MetricsHandler = newMetricsHandler(reg, o.logger)
	}
	if cfg.disabled {
		return t, nil
	}

	res, err := newResource(ctx, cfg, version)
	if err != nil {
		return nil, err
	}

	tp, err := newTracerProvider(ctx, cfg, res, o.processors)
	if err != nil {
		return nil, err
	}
	t.TracerProvider = tp
	t.shutdowns = append(t.shutdowns, tp.Shutdown)

	mp, err := newMeterProvider(ctx, cfg, res, reg)
	if err != nil {
		return nil, errors.Join(err, t.Shutdown(ctx))
	}
	if mp != nil {
		t.MeterProvider = mp
		t.shutdowns = append(t.shutdowns, mp.Shutdown)
	}
	return t, nil
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
