package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/flashsale/flashsale/internal/batch"
	"github.com/flashsale/flashsale/internal/flashsale"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

var _ flashsale.AttemptLog = (*AttemptLog)(nil)

// AttemptLogOptions tune the group commit of checkout attempts.
type AttemptLogOptions struct {
	// MaxBatch bounds the rows of one insert.
	MaxBatch int
	// Writers is how many batches may be in flight at once: while some
	// commit, the next ones gather the requests that arrive meanwhile.
	Writers int
	// Timeout bounds one batch's insert and commit.
	Timeout        time.Duration
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
}

// AttemptLog writes checkout attempts with group commit: the attempts of
// concurrent requests go to PostgreSQL in one multi-row insert per batch, and
// each request waits for its batch's commit. Nothing is buffered beyond the
// waiting requests themselves, so nothing acknowledged can be lost.
type AttemptLog struct {
	db      *DB
	opts    AttemptLogOptions
	tracer  trace.Tracer
	batches *batch.Batcher[*attemptReq]
	cols    sync.Pool // *attemptColumns
}

type attemptReq struct {
	batch.Queued
	a    flashsale.Attempt
	link trace.Link
	done chan error
}

var attemptReqPool = sync.Pool{New: func() any { return &attemptReq{done: make(chan error, 1)} }}

// NewAttemptLog starts the log's writers. Close stops them.
func NewAttemptLog(db *DB, opts AttemptLogOptions) *AttemptLog {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 500
	}
	if opts.Writers <= 0 {
		opts.Writers = 4
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := &AttemptLog{
		db:     db,
		opts:   opts,
		tracer: opts.TracerProvider.Tracer(instrumentationName),
	}
	l.cols.New = func() any { return newAttemptColumns(opts.MaxBatch) }
	l.batches = batch.New("attempt log", opts.MaxBatch, opts.Writers, l.write)
	return l
}

// Record queues the attempt for the next batch and returns once that batch is
// committed, or with EUnavailable when it could not be. When ctx ends while
// the attempt still waits for a writer (a stalled database), the attempt is
// withdrawn unwritten and Record answers EUnavailable at once; once in a
// batch, the answer is the batch's.
func (l *AttemptLog) Record(ctx context.Context, a flashsale.Attempt) error {
	req := attemptReqPool.Get().(*attemptReq)
	req.Queued = batch.Queued{}
	req.a = a
	req.link = trace.LinkFromContext(ctx)
	if err := l.batches.Submit(ctx, req); err != nil {
		attemptReqPool.Put(req)
		return err
	}
	err, ok := batch.Await(ctx, req, req.done)
	if !ok {
		return flashsale.Unavailable("attempt log", ctx.Err()) // req may still be queued: not reused
	}
	req.a, req.link = flashsale.Attempt{}, trace.Link{}
	attemptReqPool.Put(req)
	return err
}

// Close stops accepting attempts, writes the queued ones and stops the writers.
func (l *AttemptLog) Close() error {
	l.batches.Close()
	return nil
}

// write commits one batch and answers its requests.
func (l *AttemptLog) write(reqs []*attemptReq) {
	cols := l.cols.Get().(*attemptColumns)
	defer l.cols.Put(cols)
	err := l.insert(reqs, cols)
	if err != nil && flashsale.ErrorCode(err) != flashsale.EUnavailable && len(reqs) > 1 {
		// A row the database rejects must not fail the others: each gets
		// its own answer. Validated input makes this unreachable in practice.
		l.opts.Logger.Error("checkout attempt batch rejected, writing rows one by one", "err", err, "rows", len(reqs))
		for _, req := range reqs {
			req.done <- l.insert([]*attemptReq{req}, cols)
		}
		return
	}
	for _, req := range reqs {
		req.done <- err
	}
}

// attemptColumns are reusable column arrays for one batch's unnest insert.
type attemptColumns struct {
	saleIDs  []int64
	userIDs  []string
	itemIDs  []int64
	codes    []string
	outcomes []string
}

func newAttemptColumns(n int) *attemptColumns {
	return &attemptColumns{
		saleIDs: make([]int64, 0, n), userIDs: make([]string, 0, n), itemIDs: make([]int64, 0, n),
		codes: make([]string, 0, n), outcomes: make([]string, 0, n),
	}
}

var qInsertAttempts = newQuery("insert", "checkout_attempts", `
INSERT INTO checkout_attempts (sale_id, user_id, item_id, checkout_code, outcome)
SELECT NULLIF(s, 0), u, i, NULLIF(c, ''), o
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[]) AS t(s, u, i, c, o)`)

// insert writes a batch in one statement (one implicit transaction), in a
// span under the first request and linked to every request it carries.
func (l *AttemptLog) insert(reqs []*attemptReq, cols *attemptColumns) error {
	links := make([]trace.Link, 0, len(reqs))
	for _, req := range reqs {
		if req.link.SpanContext.IsValid() {
			links = append(links, req.link)
		}
	}
	ctx, span := batch.Start(l.tracer, "checkout_attempts.flush", reqs[0].link.SpanContext, links,
		trace.WithAttributes(attribute.Int("checkout_attempts.batch_size", len(reqs))))
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()

	c := cols
	c.saleIDs, c.userIDs, c.itemIDs, c.codes, c.outcomes = c.saleIDs[:0], c.userIDs[:0], c.itemIDs[:0], c.codes[:0], c.outcomes[:0]
	for _, req := range reqs {
		c.saleIDs = append(c.saleIDs, req.a.SaleID)
		c.userIDs = append(c.userIDs, req.a.UserID)
		c.itemIDs = append(c.itemIDs, req.a.ItemID)
		c.codes = append(c.codes, req.a.Code)
		c.outcomes = append(c.outcomes, req.a.Outcome)
	}
	_, err := l.db.exec(ctx, l.db.sql, qInsertAttempts, c.saleIDs, c.userIDs, c.itemIDs, c.codes, c.outcomes)
	if err == nil {
		return nil
	}
	err = translate(err)
	span.RecordError(err)
	span.SetStatus(codes.Error, "insert checkout attempts")
	return fmt.Errorf("record checkout attempts: %w", err)
}
