package telemetry

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// defaultServiceName is service.name when neither OTEL_SERVICE_NAME nor
// OTEL_RESOURCE_ATTRIBUTES names the service.
const defaultServiceName = "flashsale"

// newResource describes this process: the service's defaults (its name, the
// build's version and a random service.instance.id), the cheap built-in
// detectors, then OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME. Later
// sources override earlier ones.
//
// Every instance needs its own identity over OTLP, where service.instance.id
// becomes the Prometheus instance label: without it the series of two
// replicas collide. Hence a random UUID, unless the deployment names the
// instance.
func newResource(ctx context.Context, build Build) (*resource.Resource, error) {
	defaults := []attribute.KeyValue{
		semconv.ServiceName(defaultServiceName),
		semconv.ServiceInstanceID(uuid.NewString()),
	}
	if build.Version != "" {
		defaults = append(defaults, semconv.ServiceVersion(build.Version))
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(defaults...),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithOSType(),
		resource.WithProcessPID(),
		resource.WithProcessExecutableName(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		resource.WithProcessRuntimeDescription(),
		resource.WithFromEnv(),
	)
	// A detector that fails (no hostname, a malformed attribute in
	// OTEL_RESOURCE_ATTRIBUTES) leaves a partial resource that is still
	// worth exporting; the failure is reported like the SDK's own.
	if errors.Is(err, resource.ErrPartialResource) {
		otel.Handle(err)
	} else if err != nil {
		return nil, fmt.Errorf("detect resource: %w", err)
	}
	return res, nil
}
