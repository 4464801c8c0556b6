package postgres

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/flashsale/flashsale/internal/batch"
	"github.com/flashsale/flashsale/internal/flashsale"
)

// The group commits of this package (checkouts, purchases) share their
// shape: a batch's transaction runs in one span, and a batch the database
// rejects for a reason other than an outage is committed request by request.

// linked is a request of a group commit: it carries its caller's span.
type linked interface{ spanLink() trace.Link }

// startBatch starts the span of a batch of reqs named name — a child of the
// first request's span, linked to every request, with the batch's size under
// sizeKey — and bounds its work by timeout.
func startBatch[R linked](tracer trace.Tracer, name, sizeKey string, reqs []R, timeout time.Duration) (context.Context, trace.Span, context.CancelFunc) {
	links := make([]trace.Link, 0, len(reqs))
	for _, req := range reqs {
		if l := req.spanLink(); l.SpanContext.IsValid() {
			links = append(links, l)
		}
	}
	ctx, span := batch.Start(tracer, name, reqs[0].spanLink().SpanContext, links,
		trace.WithAttributes(attribute.Int(sizeKey, len(reqs))))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, span, cancel
}

// writeBatch commits reqs and gives each request its answer. When the
// database rejects the batch for a reason other than an outage — a bug this
// code should not have — each request is committed alone, so one cannot fail
// the others. failed turns an error into a request's answer.
func writeBatch[R any, A any](log *slog.Logger, what string, reqs []R, commit func([]R) ([]A, error), answer func(R, A), failed func(error) A) {
	answers, err := commit(reqs)
	if err != nil && flashsale.ErrorCode(err) != flashsale.EUnavailable && len(reqs) > 1 {
		log.Error(what+" batch rejected, committing one by one", "err", err, "requests", len(reqs))
		for _, req := range reqs {
			if a, err := commit([]R{req}); err != nil {
				answer(req, failed(err))
			} else {
				answer(req, a[0])
			}
		}
		return
	}
	for i, req := range reqs {
		if err != nil {
			answer(req, failed(err))
		} else {
			answer(req, answers[i])
		}
	}
}
