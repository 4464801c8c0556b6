package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// newTracerProvider returns an SDK tracer provider with the configured
// sampler and, when OTLP export is on, a batch span processor. Without an
// exporter spans are still sampled and get valid IDs, which logs and
// exemplars refer to.
func newTracerProvider(ctx context.Context, cfg config, res *resource.Resource, processors []sdktrace.SpanProcessor) (*sdktrace.TracerProvider, error) {
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(cfg.sampler),
	}
	for _, p := range processors {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	if cfg.tracesOTLP != nil {
		exp, err := newSpanExporter(ctx, *cfg.tracesOTLP)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

// newSpanExporter returns an OTLP span exporter. Options given here override
// what the exporter reads from the process environment itself.
func newSpanExporter(ctx context.Context, c otlpConfig) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch c.protocol {
	case protocolGRPC:
		var opts []otlptracegrpc.Option
		if c.endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(c.endpoint))
		}
		if c.headers != nil {
			opts = append(opts, otlptracegrpc.WithHeaders(c.headers))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		opts := []otlptracehttp.Option{otlptracehttp.WithEncoding(otlptracehttp.EncodingProtobuf)}
		if c.endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(c.endpoint))
		}
		if c.headers != nil {
			opts = append(opts, otlptracehttp.WithHeaders(c.headers))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("create OTLP span exporter (%s): %w", c.protocol, err)
	}
	return exp, nil
}
