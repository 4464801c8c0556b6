// Package batch gathers concurrent requests into batches: group commit for
// PostgreSQL (Group), pipelining for Redis (Batcher).
package batch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
)

// ErrClosed is the error of a request submitted to a closed Batcher.
var ErrClosed = errors.New("shutting down")

// Batcher gathers concurrent requests: they queue up, and each of a few
// writers takes the first waiting request and the others already waiting (up
// to max) and handles them as one batch — one transaction, one pipeline.
// While some batches are in flight, the next ones gather the requests that
// arrive meanwhile, so a round trip's or a commit's cost is shared by every
// request it carries, and a lone request waits for nobody. Nothing is
// buffered beyond the waiting requests: each waits for its own batch's answer.
type Batcher[R Request] struct {
	queue  chan R
	max    int
	handle func(batch []R)

	mu     sync.RWMutex // guards closed against Submit racing Close
	closed bool
	wg     sync.WaitGroup
}

// New starts writers that hand batches of at most max requests to handle.
func New[R Request](max, writers int, handle func(batch []R)) *Batcher[R] {
	b := &Batcher[R]{queue: make(chan R, max), max: max, handle: handle}
	b.wg.Add(writers)
	for range writers {
		go b.write()
	}
	return b
}

// Submit queues req for the next batch, with the span of ctx as the
// request's (see Link). It fails with ErrClosed when the batcher is closed,
// or ctx's error when ctx ends before req could be queued. Once queued, req
// is handled unless its caller withdraws it with Await before a writer takes
// it.
func (b *Batcher[R]) Submit(ctx context.Context, req R) error {
	req.queued().link = trace.LinkFromContext(ctx)
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	select {
	case b.queue <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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
		if !first.queued().take() {
			continue // withdrawn by its caller: never handled
		}
		batch = append(batch[:0], first)
	gather:
		for len(batch) < b.max {
			select {
			case req, ok := <-b.queue:
				if !ok {
					break gather
				}
				if req.queued().take() {
					batch = append(batch, req)
				}
			default:
				break gather
			}
		}
		b.handle(batch)
		clear(batch)
	}
}

// Request is what a Batcher carries: a pointer to a type that embeds Queued.
type Request interface {
	queued() *Queued
}

// Queued is embedded in every request type of a Batcher. It settles, once,
// which comes first: a writer taking the request into a batch, or its caller
// withdrawing it (see Await).
type Queued struct {
	state atomic.Uint32 // 0 queued, 1 taken by a writer, 2 withdrawn
	link  trace.Link    // the span of the request's caller
}

func (q *Queued) queued() *Queued { return q }

// Link is the span of the request's caller, when it submitted the request.
func (q *Queued) Link() trace.Link { return q.link }

func (q *Queued) take() bool { return q.state.CompareAndSwap(0, 1) }

// Withdraw marks the request as never to be handled and reports whether it
// was in time: false when a writer has already taken it into a batch.
func (q *Queued) Withdraw() bool { return q.state.CompareAndSwap(0, 2) }

// Await waits for the answer of a submitted request on done. When ctx ends
// first and no writer has taken the request yet, the request is withdrawn —
// it will never be handled, so nothing of it reaches the database or Redis —
// and Await returns false at once. Once taken, the request is part of a batch
// whose outcome its caller must learn, so Await waits for the answer, which
// the batch's own timeout bounds. A withdrawn request may still sit in the
// queue: its caller must not reuse it.
func Await[R Request, A any](ctx context.Context, req R, done <-chan A) (answer A, ok bool) {
	select {
	case a := <-done:
		return a, true
	case <-ctx.Done():
		if req.queued().Withdraw() {
			return answer, false
		}
		return <-done, true
	}
}
