package telemetry

import (
	"fmt"

	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/propagation"
)

// newPropagator composes the propagators named in OTEL_PROPAGATORS.
func newPropagator(names []string) (propagation.TextMapPropagator, error) {
	p, err := autoprop.TextMapPropagator(names...)
	if err != nil {
		return nil, fmt.Errorf("OTEL_PROPAGATORS: %w", err)
	}
	return p, nil
}
