package batch

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Group is a group commit: the requests of concurrent callers are committed
// in one transaction per batch, and each caller waits for its batch's
// commit. A store supplies only the commit of a batch; the Group runs each
// commit in the batch's span under a timeout, hands each request its
// answer, and commits request by request a batch that failed for a reason
// other than an outage — a bug the store should not have — so that one
// request cannot fail the others.
type Group[R Pending[A], A any] struct {
	opts    GroupOptions
	batches *Batcher[R]
	commit  func(ctx context.Context, reqs []R) ([]A, error)
	failed  func(err error) A
}

// GroupOptions configure a Group. Every field must be set.
type GroupOptions struct {
	// Name is what the batches carry: "purchases" names their spans
	// "purchases.commit", with the batch's size as "purchases.batch_size".
	Name string
	// MaxBatch bounds the requests of one transaction, Writers the batches
	// in flight at once, Timeout one batch's commit.
	MaxBatch, Writers int
	Timeout           time.Duration
	Tracer            trace.Tracer
	Logger            *slog.Logger
	// Outage reports whether a batch's error is an outage, after which
	// committing its requests one by one would fail as well.
	Outage func(error) bool
}

// Pending is a request of a Group: a pointer to a type that embeds Answer.
type Pending[A any] interface {
	Request
	answer() *Answer[A]
}

// Answer is embedded in every request type of a Group: the request's place
// in the queue and the channel of its answer.
type Answer[A any] struct {
	Queued
	done chan A
}

func (a *Answer[A]) answer() *Answer[A] { return a }

// NewGroup starts the writers of a group commit whose batches commit
// commits, answering each request of a failed batch with failed(err). Close
// stops them.
func NewGroup[R Pending[A], A any](opts GroupOptions, commit func(ctx context.Context, reqs []R) ([]A, error), failed func(err error) A) *Group[R, A] {
	g := &Group[R, A]{opts: opts, commit: commit, failed: failed}
	g.batches = New(opts.MaxBatch, opts.Writers, g.write)
	return g
}

// Do queues req for the next batch and returns its answer once that batch
// is committed. It returns an error only when req was not committed: when
// the Group is closed (ErrClosed), or ctx ended while req still waited for
// a writer (ctx's error). Once in a batch, req's answer is the batch's.
func (g *Group[R, A]) Do(ctx context.Context, req R) (a A, err error) {
	ans := req.answer()
	ans.done = make(chan A, 1)
	if err := g.batches.Submit(ctx, req); err != nil {
		return a, err
	}
	a, ok := Await(ctx, req, ans.done)
	if !ok {
		return a, ctx.Err()
	}
	return a, nil
}

// Close stops accepting requests, commits the queued ones and stops the
// writers.
func (g *Group[R, A]) Close() { g.batches.Close() }

// write commits one batch and answers its requests.
func (g *Group[R, A]) write(reqs []R) {
	answers, err := g.commitInSpan(reqs)
	if err != nil && len(reqs) > 1 && !g.opts.Outage(err) {
		g.opts.Logger.Error(g.opts.Name+" batch rejected, committing one by one", "err", err, "requests", len(reqs))
		for _, req := range reqs {
			g.write([]R{req})
		}
		return
	}
	for i, req := range reqs {
		if err != nil {
			req.answer().done <- g.failed(err)
		} else {
			req.answer().done <- answers[i]
		}
	}
}

// commitInSpan commits reqs in the batch's span: a child of the first
// request's span (the request that opened the batch, so its trace shows
// the batch's statements), linked to every request it carries.
func (g *Group[R, A]) commitInSpan(reqs []R) ([]A, error) {
	links := make([]trace.Link, 0, len(reqs))
	for _, req := range reqs {
		if l := req.queued().link; l.SpanContext.IsValid() {
			links = append(links, l)
		}
	}
	ctx := trace.ContextWithSpanContext(context.Background(), reqs[0].queued().link.SpanContext)
	ctx, span := g.opts.Tracer.Start(ctx, g.opts.Name+".commit",
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int(g.opts.Name+".batch_size", len(reqs))))
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, g.opts.Timeout)
	defer cancel()
	answers, err := g.commit(ctx, reqs)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, g.opts.Name+" batch")
	}
	return answers, err
}
