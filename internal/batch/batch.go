// Package batch gathers concurrent requests into batches: group commit for
// PostgreSQL, pipelining for Redis.
package batch

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// Batcher gathers concurrent requests: they queue up, and each of a few
// writers takes the first waiting request and the others already waiting (up
// to max) and handles them as one batch — one transaction, one pipeline.
// While some batches are in flight, the next ones gather the requests that
// arrive meanwhile, so a round trip's or a commit's cost is shared by every
// request it carries, and a lone request waits for nobody. Nothing is
// buffered beyond the waiting requests: each waits for its own batch's answer.
type Batcher[R any] struct {
	name   string
	queue  chan R
	max    int
	handle func(batch []R)

	mu     sync.RWMutex // guards closed against Submit racing Close
	closed bool
	wg     sync.WaitGroup
}

// New starts writers that hand batches of at most max requests to handle.
// name says what is unavailable when a request cannot be queued.
func New[R any](name string, max, writers int, handle func(batch []R)) *Batcher[R] {
	b := &Batcher[R]{name: name, queue: make(chan R, max), max: max, handle: handle}
	b.wg.Add(writers)
	for range writers {
		go b.write()
	}
	return b
}

// Submit queues req for the next batch. It fails with EUnavailable when the
// batcher is closed or ctx ends before req could be queued; once queued, req
// is handled whatever happens to ctx.
func (b *Batcher[R]) Submit(ctx context.Context, req R) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return flashsale.Unavailable(b.name, errors.New("shutting down"))
	}
	select {
	case b.queue <- req:
		return nil
	case <-ctx.Done():
		return flashsale.Unavailable(b.name, ctx.Err())
	}
}

// Close stops accepting requests, handles the queued ones and stops the
// writers.
func (b *Batcher[R]) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.queue)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Batcher[R]) write() {
	defer b.wg.Done()
	batch := make([]R, 0, b.max)
	for first := range b.queue {
		batch = append(batch[:0], first)
	gather:
		for len(batch) < b.max {
			select {
			case req, ok := <-b.queue:
				if !ok {
					break gather
				}
				batch = append(batch, req)
			default:
				break gather
			}
		}
		b.handle(batch)
		clear(batch)
	}
}

// Start starts the span of a batch: a child of the first
// request's span (the request that opened the batch, so its trace shows the
// batch's statements), linked to every request it carries.
func Start(tracer trace.Tracer, name string, parent trace.SpanContext, links []trace.Link, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	ctx := trace.ContextWithSpanContext(context.Background(), parent)
	opts = append(opts, trace.WithSpanKind(trace.SpanKindInternal), trace.WithLinks(links...))
	return tracer.Start(ctx, name, opts...)
}
