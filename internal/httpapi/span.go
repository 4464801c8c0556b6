package httpapi

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// endWithError records a failed domain call on span: its code as the outcome
// and, for 5xx-class failures only, the Error status. Business rejections
// (sold out, limit reached) are expected answers, not span errors. The error
// text is not recorded: it may name an item, and causes may hold anything;
// the request log has it, with the trace id.
func endWithError(span trace.Span, err error) {
	code := flashsale.ErrorCode(err)
	span.SetAttributes(attribute.String("sale.outcome", code))
	if errorStatus(code) >= 500 {
		span.SetAttributes(semconv.ErrorTypeKey.String(code))
		span.SetStatus(codes.Error, code)
	}
}
