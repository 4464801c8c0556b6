package telemetry

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// defaultServiceName is service.name when neither OTEL_SERVICE_NAME nor
// OTEL_RESOURCE_ATTRIBUTES names the service.
const defaultServiceName = "flashsale"

// newResource describes this process: the cheap built-in detectors, then the
// attributes from OTEL_RESOURCE_ATTRIBUTES, then service.name,
// service.version and, unless given, a random service.instance.id. Later sources override earlier ones.
func newResource(ctx context.Context, cfg config, version string) (*resource.Resource, error) {
	service := []attribute.KeyValue{}
	switch {
	case cfg.serviceName != "":
		service = append(service, semconv.ServiceName(cfg.serviceName))
	case !slices.ContainsFunc(cfg.resourceAttrs, isServiceName):
		service = append(service, semconv.ServiceName(defaultServiceName))
	}
	if version != "" {
		service = append(service, semconv.ServiceVersion(version))
	}
	// Every instance needs its own identity over OTLP, where it becomes the
	// Prometheus instance label: without it the series of two replicas
	// collide. A random UUID, unless the deployment names the instance.
	if !slices.ContainsFunc(cfg.resourceAttrs, func(kv attribute.KeyValue) bool { return kv.Key == semconv.ServiceInstanceIDKey }) {
		service = append(service, semconv.ServiceInstanceID(uuid.NewString()))
	}

	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithOSType(),
		resource.WithProcessPID(),
		resource.WithProcessExecutableName(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		resource.WithProcessRuntimeDescription(),
		resource.WithAttributes(cfg.resourceAttrs...),
		resource.WithAttributes(service...),
	)
	// A detector that fails (say, no hostname) leaves a partial resource that
	// is still worth exporting.
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("detect resource: %w", err)
	}
	return res, nil
}

func isServiceName(kv attribute.KeyValue) bool { return kv.Key == semconv.ServiceNameKey }
