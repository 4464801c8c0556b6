package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/flashsale/flashsale/internal/batch"
	"github.com/flashsale/flashsale/internal/flashsale"
)

var _ flashsale.CartStore = (*CartStore)(nil)

// CartStoreOptions tune the group commit of checkouts.
type CartStoreOptions struct {
	// MaxBatch bounds the checkouts of one transaction.
	MaxBatch int
	// Writers is how many batches may be in flight at once: while some
	// commit, the next ones gather the requests that arrive meanwhile.
	Writers int
	// Timeout bounds one batch's transaction.
	Timeout time.Duration
	// RefusalFlush is how often the checkouts refused before their decision
	// (see RecordRefusal) are written when no checkout batch carries them.
	RefusalFlush time.Duration
	// RefusalUsers bounds the users whose refusals are counted apart between
	// two writes; the refusals of further users are
	// counted under user id "".
	RefusalUsers   int
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
}

// WithDefaults fills the options left zero: batches of 500 checkouts, 2
// writers, 5 seconds per batch, refusals written every second for at most
// 10,000 users, the global tracer provider, no log.
func (o CartStoreOptions) WithDefaults() CartStoreOptions {
	o.MaxBatch = cmp.Or(o.MaxBatch, 500)
	o.Writers = cmp.Or(o.Writers, 2)
	o.Timeout = cmp.Or(o.Timeout, 5*time.Second)
	o.RefusalFlush = cmp.Or(o.RefusalFlush, time.Second)
	o.RefusalUsers = cmp.Or(o.RefusalUsers, 10_000)
	o.TracerProvider = cmp.Or(o.TracerProvider, otel.GetTracerProvider())
	o.Logger = cmp.Or(o.Logger, discard)
	return o
}

// CartStore implements flashsale.CartStore with group commit: the checkouts
// of concurrent requests are decided and recorded in one transaction per
// batch, with one set-based statement per step, and each request waits for
// its batch's commit. Nothing is buffered beyond the waiting requests
// themselves, so nothing acknowledged can be lost.
//
// The store also counts the checkouts refused before their decision (see
// RecordRefusal) and adds the counts to checkout_refusals in the next
// batch's transaction, or in one of their own every RefusalFlush.
//
// A batch locks the open carts of its users in (sale, user) order — the
// order purchases lock carts in too, so the two never deadlock — creating
// the carts users do not have yet, decides each checkout with the domain's
// rule, then adds the accepted items to their carts and writes every
// attempt. A purchase of a cart waits for the batch that adds to it, and a
// checkout that comes after the purchase finds the cart closed and opens a
// new one: an item acknowledged into a cart is in that cart's purchase.
type CartStore struct {
	db      *DB
	opts    CartStoreOptions
	batches *batch.Group[*checkoutReq, checkoutAnswer]

	refusals    *refusalTally
	closeOnce   sync.Once
	closeErr    error
	stopFlush   chan struct{}
	flushResult chan error
}

type checkoutReq struct {
	batch.Answer[checkoutAnswer]
	a flashsale.Attempt
}

type checkoutAnswer struct {
	add flashsale.CartAdd
	err error
}

// NewCartStore starts the store's writers. Close stops them.
func NewCartStore(db *DB, opts CartStoreOptions) *CartStore {
	opts = opts.WithDefaults()
	s := &CartStore{
		db: db, opts: opts, refusals: newRefusalTally(opts.RefusalUsers), stopFlush: make(chan struct{}), flushResult: make(chan error, 1),
	}
	s.batches = batch.NewGroup(groupOptions("checkouts", opts.MaxBatch, opts.Writers, opts.Timeout, opts.TracerProvider, opts.Logger),
		s.commit, func(err error) checkoutAnswer { return checkoutAnswer{err: err} })
	go func() { s.flushResult <- s.flushRefusalsEvery(opts.RefusalFlush, s.stopFlush) }()
	return s
}

// Checkout queues the attempt for the next batch and returns its answer once
// that batch is committed, or EUnavailable when it could not be. When ctx
// ends while the attempt still waits for a writer (a stalled database), it is
// withdrawn unwritten and Checkout answers EUnavailable at once; once in a
// batch, the answer is the batch's.
func (s *CartStore) Checkout(ctx context.Context, a flashsale.Attempt) (flashsale.CartAdd, error) {
	ans, err := s.batches.Do(ctx, &checkoutReq{a: a})
	if err != nil {
		return flashsale.CartAdd{}, flashsale.Unavailable("checkouts", err)
	}
	return ans.add, ans.err
}

// Close stops accepting checkouts, writes the queued ones and the pending
// refusal counts, and stops the writers. Call it once no request records
// refusals any more.
func (s *CartStore) Close() error {
	s.closeOnce.Do(func() {
		s.batches.Close()
		close(s.stopFlush)
		s.closeErr = <-s.flushResult
	})
	return s.closeErr
}

// commit runs one batch's transaction.
func (s *CartStore) commit(ctx context.Context, reqs []*checkoutReq) ([]checkoutAnswer, error) {
	// The refusals counted since the last write ride along.
	refusals, overflow := s.refusals.take()
	var answers []checkoutAnswer
	err := s.db.transact(ctx, nil, func(tx *txn) error {
		var err error
		if answers, err = s.decide(ctx, tx, reqs); err != nil {
			return err
		}
		if refusals != nil {
			return s.db.writeRefusals(ctx, tx, refusals)
		}
		return nil
	})
	s.wroteRefusals(refusals, overflow, err)
	if err != nil {
		return nil, fmt.Errorf("record checkouts: %w", translate(err))
	}
	return answers, nil
}

var (
	qLockCarts = newQuery("insert", "carts", `
INSERT INTO carts (code, sale_id, user_id)
SELECT CASE WHEN EXISTS (SELECT 1 FROM carts x WHERE x.code = t.c) THEN t.n ELSE t.c END, t.s, t.u
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS t(c, n, s, u)
ORDER BY t.s, t.u COLLATE "C"
ON CONFLICT (sale_id, user_id) WHERE state = 'open' DO UPDATE SET state = carts.state
RETURNING code, sale_id, user_id, item_ids,
    (SELECT items_bought FROM user_sale_counts b WHERE b.sale_id = carts.sale_id AND b.user_id = carts.user_id)`)
	qAddToCarts = newQuery("insert", "checkout_attempts", `
WITH added AS (
    SELECT code, array_agg(item ORDER BY n) AS items
    FROM unnest($6::text[], $7::bigint[]) WITH ORDINALITY AS a(code, item, n) GROUP BY code
), appended AS (
    UPDATE carts c SET item_ids = c.item_ids || added.items FROM added WHERE c.code = added.code
), attempts AS (
    INSERT INTO checkout_attempts (sale_id, user_id, item_id, checkout_code, outcome)
    SELECT NULLIF(s, 0), u, i, NULLIF(c, ''), o
    FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[]) AS t(s, u, i, c, o)
)
SELECT pg_current_xact_id()::text`)
)

// decide locks the open carts of the batch's users, decides each checkout in
// batch order and writes the decisions.
func (s *CartStore) decide(ctx context.Context, tx *txn, reqs []*checkoutReq) ([]checkoutAnswer, error) {
	carts, err := s.lockCarts(ctx, tx, reqs)
	if err != nil {
		return nil, err
	}
	answers := make([]checkoutAnswer, len(reqs))
	n := len(reqs)
	saleIDs, userIDs, itemIDs := make([]int64, 0, n), make([]string, 0, n), make([]int64, 0, n)
	codes, outcomes := make([]string, 0, n), make([]string, 0, n)
	var addCodes []string
	var addItems []int64
	for i, req := range reqs {
		a := req.a
		outcome, code := a.Outcome, ""
		if outcome == "" {
			k := flashsale.UserKey{SaleID: a.SaleID, UserID: a.UserID}
			c := carts[k]
			if err := c.Add(a.ItemID, flashsale.UserCount{Bought: c.bought, Limit: a.Limit}); err != nil {
				outcome = flashsale.ErrorCode(err)
				answers[i].err = err
			} else {
				outcome, code = flashsale.OutcomeAccepted, c.Code
				addCodes, addItems = append(addCodes, c.Code), append(addItems, a.ItemID)
				answers[i].add = flashsale.CartAdd{Code: c.Code, ItemsCount: len(c.ItemIDs)}
			}
		}
		saleIDs, userIDs, itemIDs = append(saleIDs, a.SaleID), append(userIDs, a.UserID), append(itemIDs, a.ItemID)
		codes, outcomes = append(codes, code), append(outcomes, outcome)
	}
	// The statement answers the transaction's id, for reading back a commit
	// whose outcome is unknown.
	if err := s.db.queryRow(ctx, tx, qAddToCarts, saleIDs, userIDs, itemIDs, codes, outcomes, addCodes, addItems).Scan(&tx.xid); err != nil {
		return nil, fmt.Errorf("add to carts: %w", err)
	}
	return answers, nil
}

// lockedCart is a user's open cart, locked by the batch, with what the user
// has bought in its sale.
type lockedCart struct {
	flashsale.Cart
	bought int
}

// lockCarts locks the open cart of every user of the batch's checkouts to
// decide, opening the carts users do not have with the code the cache gave
// out (or a fresh one, when that code names a cart already).
func (s *CartStore) lockCarts(ctx context.Context, tx *txn, reqs []*checkoutReq) (map[flashsale.UserKey]*lockedCart, error) {
	carts := map[flashsale.UserKey]*lockedCart{}
	var codes, fresh, users []string
	var sales []int64
	for _, req := range reqs {
		a := req.a
		k := flashsale.UserKey{SaleID: a.SaleID, UserID: a.UserID}
		if _, ok := carts[k]; ok || a.Outcome != "" {
			continue
		}
		carts[k] = nil
		codes, fresh, sales, users = append(codes, a.Code), append(fresh, a.NewCode), append(sales, a.SaleID), append(users, a.UserID)
	}
	if len(codes) == 0 {
		return carts, nil
	}
	rows, err := s.db.query(ctx, tx, qLockCarts, codes, fresh, sales, users)
	if err != nil {
		return nil, fmt.Errorf("lock carts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		c := &lockedCart{}
		var items int64Array
		var bought sql.NullInt64
		if err := rows.Scan(&c.Code, &c.SaleID, &c.UserID, &items, &bought); err != nil {
			return nil, fmt.Errorf("lock carts: %w", err)
		}
		c.ItemIDs, c.bought = slices.Clip([]int64(items)), int(bought.Int64)
		carts[flashsale.UserKey{SaleID: c.SaleID, UserID: c.UserID}] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lock carts: %w", err)
	}
	for k, c := range carts {
		if c == nil {
			return nil, fmt.Errorf("lock carts: no cart for user of sale %d", k.SaleID)
		}
	}
	return carts, nil
}
