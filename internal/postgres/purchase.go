package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/flashsale/flashsale/internal/batch"
	"github.com/flashsale/flashsale/internal/flashsale"
)

var _ flashsale.PurchaseStore = (*PurchaseStore)(nil)

// PurchaseStoreOptions tune the group commit of purchases.
type PurchaseStoreOptions struct {
	// MaxBatch bounds the purchases of one transaction.
	MaxBatch int
	// Writers is how many batches may be in flight at once.
	Writers int
	// Timeout bounds one batch's transaction.
	Timeout        time.Duration
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
}

// PurchaseStore implements flashsale.PurchaseStore with group commit: the
// purchases of concurrent requests are sold in one transaction per batch, with
// one set-based statement per step, and each request waits for its batch's
// commit. Every purchase of a sale must update the sale's items_sold row, and
// that row's lock is held through the commit's WAL flush; one update per
// batch instead of one per purchase is what lets purchases scale.
//
// Every batch takes its row locks in one global order — the carts' claim
// rows by code, the users' count rows by (sale, user), the items by id, the
// sale rows last — so concurrent batches, of this instance or another, never
// deadlock. The constraints (items sold once, user counts within the limit,
// items_sold within the total) reject anything this logic might get wrong.
type PurchaseStore struct {
	db      *DB
	opts    PurchaseStoreOptions
	tracer  trace.Tracer
	batches *batch.Batcher[*purchaseReq]
}

type purchaseReq struct {
	batch.Queued
	saleID int64
	code   string
	link   trace.Link
	done   chan purchaseAnswer
}

type purchaseAnswer struct {
	p   *flashsale.Purchase
	err error
}

// NewPurchaseStore returns a PurchaseStore over db and starts its writers.
// Close stops them.
func NewPurchaseStore(db *DB, opts PurchaseStoreOptions) *PurchaseStore {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 64
	}
	if opts.Writers <= 0 {
		opts.Writers = 2
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = tracenoop.NewTracerProvider()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &PurchaseStore{db: db, opts: opts, tracer: opts.TracerProvider.Tracer(instrumentationName)}
	s.batches = batch.New("purchases", opts.MaxBatch, opts.Writers, s.write)
	return s
}

// Close stops accepting purchases, sells the queued ones and stops the
// writers.
func (s *PurchaseStore) Close() error {
	s.batches.Close()
	return nil
}

// Purchase queues the purchase for the next batch and returns its answer
// once the batch has committed. When ctx ends while the purchase still waits
// for a writer, it is withdrawn unsold and Purchase answers EUnavailable.
func (s *PurchaseStore) Purchase(ctx context.Context, saleID int64, code string) (*flashsale.Purchase, error) {
	req := &purchaseReq{saleID: saleID, code: code, link: trace.LinkFromContext(ctx), done: make(chan purchaseAnswer, 1)}
	if err := s.batches.Submit(ctx, req); err != nil {
		return nil, err
	}
	a, ok := batch.Await(ctx, req, req.done)
	if !ok {
		return nil, flashsale.Unavailable("purchases", ctx.Err())
	}
	return a.p, a.err
}

// write sells one batch and answers its requests. When the database rejects
// the batch for a reason other than an outage — a bug this code should not
// have — each purchase is retried alone, so one cannot fail the others.
func (s *PurchaseStore) write(reqs []*purchaseReq) {
	answers, err := s.sell(reqs)
	if err != nil && flashsale.ErrorCode(err) != flashsale.EUnavailable && len(reqs) > 1 {
		s.opts.Logger.Error("purchase batch rejected, selling carts one by one", "err", err, "purchases", len(reqs))
		for _, req := range reqs {
			a, err := s.sell([]*purchaseReq{req})
			if err != nil {
				req.done <- purchaseAnswer{err: err}
				continue
			}
			req.done <- a[0]
		}
		return
	}
	for i, req := range reqs {
		if err != nil {
			req.done <- purchaseAnswer{err: err}
			continue
		}
		req.done <- answers[i]
	}
}

// sell runs one batch's transaction, retried whole on serialization
// failures, in a span under the first request, linked to every request.
func (s *PurchaseStore) sell(reqs []*purchaseReq) ([]purchaseAnswer, error) {
	links := make([]trace.Link, 0, len(reqs))
	for _, req := range reqs {
		if req.link.SpanContext.IsValid() {
			links = append(links, req.link)
		}
	}
	ctx, span := batch.Start(s.tracer, "purchases.commit", reqs[0].link.SpanContext, links,
		trace.WithAttributes(attribute.Int("purchases.batch_size", len(reqs))))
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	var answers []purchaseAnswer
	err := s.db.transact(ctx, nil, func(tx *sql.Tx) error {
		b := newPurchaseBatch(s.db, tx, reqs)
		var err error
		answers, err = b.run(ctx)
		return err
	})
	if err != nil {
		err = translate(err)
		span.RecordError(err)
		span.SetStatus(codes.Error, "purchase batch")
		return nil, fmt.Errorf("purchase: %w", err)
	}
	return answers, nil
}

var (
	qBatchCartItems = newQuery("select", "checkout_attempts", `
SELECT DISTINCT checkout_code, sale_id, user_id, item_id FROM checkout_attempts
WHERE checkout_code = ANY($1::text[]) ORDER BY checkout_code, item_id`)
	qBatchSaleWindows = newQuery("select", "sales", `
SELECT id, now() >= started_at, now() < ended_at, user_item_limit FROM sales WHERE id = ANY($1::bigint[])`)
	qBatchClaim = newQuery("insert", "cart_purchases", `
INSERT INTO cart_purchases (checkout_code, sale_id, user_id)
SELECT c, s, u FROM unnest($1::text[], $2::bigint[], $3::text[]) AS t(c, s, u) ORDER BY c
ON CONFLICT (checkout_code) DO NOTHING
RETURNING checkout_code`)
	qBatchResults = newQuery("select", "cart_purchases", `
SELECT c.checkout_code, c.result, u.items_bought FROM cart_purchases c
LEFT JOIN user_sale_counts u ON u.sale_id = c.sale_id AND u.user_id = c.user_id
WHERE c.checkout_code = ANY($1::text[])`)
	qBatchLockUsers = newQuery("insert", "user_sale_counts", `
INSERT INTO user_sale_counts (sale_id, user_id, item_limit)
SELECT s, u, l FROM unnest($1::bigint[], $2::text[], $3::integer[]) AS t(s, u, l) ORDER BY s, u
ON CONFLICT (sale_id, user_id) DO UPDATE SET items_bought = user_sale_counts.items_bought
RETURNING sale_id, user_id, items_bought, item_limit`)
	qBatchLockItems = newQuery("select", "items", `
SELECT id, name, sold FROM items WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE`)
	qBatchSell = newQuery("update", "items", `
WITH sale AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(id, u, c)
), sold AS (
    UPDATE items i SET sold = true, sold_to_user_id = sale.u, sold_at = now()
    FROM sale WHERE i.id = sale.id AND NOT i.sold
    RETURNING i.id, i.sale_id
)
INSERT INTO purchases (sale_id, user_id, item_id, checkout_code)
SELECT sold.sale_id, sale.u, sold.id, sale.c FROM sold JOIN sale ON sale.id = sold.id`)
	qBatchCountUsers = newQuery("update", "user_sale_counts", `
UPDATE user_sale_counts c SET items_bought = c.items_bought + t.n
FROM unnest($1::bigint[], $2::text[], $3::integer[]) AS t(s, u, n)
WHERE c.sale_id = t.s AND c.user_id = t.u`)
	qBatchSaveResults = newQuery("update", "cart_purchases", `
UPDATE cart_purchases c SET items_purchased = t.p, items_failed = t.f, result = t.r::jsonb
FROM unnest($1::text[], $2::integer[], $3::integer[], $4::text[]) AS t(code, p, f, r)
WHERE c.checkout_code = t.code`)
	qBatchCountSales = newQuery("update", "sales", `
UPDATE sales s SET items_sold = s.items_sold + t.n
FROM (SELECT * FROM unnest($1::bigint[], $2::integer[]) AS t(id, n) ORDER BY id) t
WHERE s.id = t.id`)
)

// purchaseBatch is one batch's transaction: a fixed sequence of set-based
// statements, whatever the batch's size.
type purchaseBatch struct {
	db    *DB
	tx    *sql.Tx
	reqs  []*purchaseReq
	carts map[string]*cart // by code
	// answers[i] answers reqs[i]; nil until decided.
	answers []*purchaseAnswer
}

// cart is one code's cart as the attempt log holds it.
type cart struct {
	saleID  int64
	userID  string
	itemIDs []int64
	first   int // index of the first request for this code; later ones replay it
}

type saleWindow struct {
	started, running bool
	limit            int
}

type userKey struct {
	saleID int64
	userID string
}

type userCount struct{ bought, limit, added int }

func newPurchaseBatch(db *DB, tx *sql.Tx, reqs []*purchaseReq) *purchaseBatch {
	return &purchaseBatch{db: db, tx: tx, reqs: reqs, carts: make(map[string]*cart, len(reqs)), answers: make([]*purchaseAnswer, len(reqs))}
}

func (b *purchaseBatch) fail(i int, err error) { b.answers[i] = &purchaseAnswer{err: err} }

// run sells the batch and returns one answer per request.
func (b *purchaseBatch) run(ctx context.Context) ([]purchaseAnswer, error) {
	if err := b.readCarts(ctx); err != nil {
		return nil, err
	}
	windows, err := b.readWindows(ctx)
	if err != nil {
		return nil, err
	}
	claimed, err := b.claim(ctx, windows)
	if err != nil {
		return nil, err
	}
	if err := b.replay(ctx, claimed, windows); err != nil {
		return nil, err
	}
	if len(claimed) > 0 {
		if err := b.sellClaimed(ctx, claimed, windows); err != nil {
			return nil, err
		}
	}
	out := make([]purchaseAnswer, len(b.reqs))
	for i, req := range b.reqs {
		if a := b.answers[i]; a != nil {
			out[i] = *a
			continue
		}
		// A repeated code in the batch answers as its first request.
		first := b.answers[b.carts[req.code].first]
		if first.err != nil {
			out[i] = *first
			continue
		}
		p := *first.p
		p.Replay = true
		out[i] = purchaseAnswer{p: &p}
	}
	return out, nil
}

// readCarts reads the carts of the batch's codes. A code with no accepted
// attempt, of another sale, or of several users is not a code this service
// issued: ECodeNotFound.
func (b *purchaseBatch) readCarts(ctx context.Context) error {
	codes := make([]string, 0, len(b.reqs))
	for i, req := range b.reqs {
		if _, ok := b.carts[req.code]; ok {
			continue
		}
		b.carts[req.code] = &cart{first: i}
		codes = append(codes, req.code)
	}
	rows, err := b.db.query(ctx, b.tx, qBatchCartItems, codes)
	if err != nil {
		return fmt.Errorf("cart items: %w", err)
	}
	defer rows.Close()
	bad := map[string]bool{}
	for rows.Next() {
		var code, userID string
		var saleID sql.NullInt64
		var itemID int64
		if err := rows.Scan(&code, &saleID, &userID, &itemID); err != nil {
			return fmt.Errorf("cart items: %w", err)
		}
		c := b.carts[code]
		if saleID.Int64 != b.reqs[c.first].saleID || (c.userID != "" && c.userID != userID) {
			bad[code] = true
		}
		c.saleID, c.userID = saleID.Int64, userID
		c.itemIDs = append(c.itemIDs, itemID)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cart items: %w", err)
	}
	for code, c := range b.carts {
		if bad[code] || len(c.itemIDs) == 0 {
			b.fail(c.first, flashsale.Errorf(flashsale.ECodeNotFound, "no cart with this code"))
		}
	}
	return nil
}

// readWindows reads whether each sale of the batch is running, and its limit.
func (b *purchaseBatch) readWindows(ctx context.Context) (map[int64]saleWindow, error) {
	var ids []int64
	for _, c := range b.carts {
		if b.answers[c.first] == nil && !slices.Contains(ids, c.saleID) {
			ids = append(ids, c.saleID)
		}
	}
	windows := make(map[int64]saleWindow, len(ids))
	if len(ids) == 0 {
		return windows, nil
	}
	rows, err := b.db.query(ctx, b.tx, qBatchSaleWindows, ids)
	if err != nil {
		return nil, fmt.Errorf("sale windows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var w saleWindow
		if err := rows.Scan(&id, &w.started, &w.running, &w.limit); err != nil {
			return nil, fmt.Errorf("sale windows: %w", err)
		}
		windows[id] = w
	}
	return windows, rows.Err()
}

// claim inserts the claim rows of the carts of running sales, in code order;
// it returns the codes claimed now. The others were purchased before (or by a
// concurrent batch that committed while this one waited on the claim row).
func (b *purchaseBatch) claim(ctx context.Context, windows map[int64]saleWindow) (map[string]bool, error) {
	var codes, users []string
	var sales []int64
	for code, c := range b.carts {
		if w := windows[c.saleID]; b.answers[c.first] == nil && w.started && w.running {
			codes, sales, users = append(codes, code), append(sales, c.saleID), append(users, c.userID)
		}
	}
	claimed := make(map[string]bool, len(codes))
	if len(codes) == 0 {
		return claimed, nil
	}
	rows, err := b.db.query(ctx, b.tx, qBatchClaim, codes, sales, users)
	if err != nil {
		return nil, fmt.Errorf("claim carts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var code string
		if err := rows.Scan(&code); err != nil {
			return nil, fmt.Errorf("claim carts: %w", err)
		}
		claimed[code] = true
	}
	return claimed, rows.Err()
}

// replay answers the carts not claimed now: with the result of their earlier
// purchase, or, never purchased, with why their sale is not running.
func (b *purchaseBatch) replay(ctx context.Context, claimed map[string]bool, windows map[int64]saleWindow) error {
	var codes []string
	for code, c := range b.carts {
		if b.answers[c.first] == nil && !claimed[code] {
			codes = append(codes, code)
		}
	}
	if len(codes) == 0 {
		return nil
	}
	rows, err := b.db.query(ctx, b.tx, qBatchResults, codes)
	if err != nil {
		return fmt.Errorf("purchase results: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var code string
		var raw []byte
		var bought sql.NullInt64
		if err := rows.Scan(&code, &raw, &bought); err != nil {
			return fmt.Errorf("purchase results: %w", err)
		}
		c := b.carts[code]
		p := &flashsale.Purchase{SaleID: c.saleID, UserID: c.userID, Replay: true, UserBought: int(bought.Int64)}
		if err := json.Unmarshal(raw, &p.Result); err != nil {
			return fmt.Errorf("decode purchase result: %w", err)
		}
		b.answers[c.first] = &purchaseAnswer{p: p}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("purchase results: %w", err)
	}
	for _, code := range codes {
		c := b.carts[code]
		if b.answers[c.first] != nil {
			continue
		}
		if w, ok := windows[c.saleID]; ok && !w.started {
			b.fail(c.first, flashsale.Errorf(flashsale.ESaleNotStarted, "the sale has not started"))
		} else {
			b.fail(c.first, flashsale.Errorf(flashsale.ESaleEnded, "the sale is over"))
		}
	}
	return nil
}

// sellClaimed locks the users' counts and the items (each in key order), sells
// each claimed cart's unsold items within its user's limit in batch order,
// and records the sales, the counts and each cart's result.
func (b *purchaseBatch) sellClaimed(ctx context.Context, claimed map[string]bool, windows map[int64]saleWindow) error {
	// Claimed carts in batch order: earlier requests buy first.
	order := make([]string, 0, len(claimed))
	for _, req := range b.reqs {
		if c := b.carts[req.code]; claimed[req.code] && b.answers[c.first] == nil && !slices.Contains(order, req.code) {
			order = append(order, req.code)
		}
	}
	users, err := b.lockUsers(ctx, order, windows)
	if err != nil {
		return err
	}
	items, err := b.lockItems(ctx, order)
	if err != nil {
		return err
	}

	var sellIDs []int64
	var sellUsers, sellCodes, resCodes, resJSON []string
	var resBought, resFailed []int32
	perSale := map[int64]int32{}
	for _, code := range order {
		c := b.carts[code]
		u := users[userKey{c.saleID, c.userID}]
		p := &flashsale.Purchase{SaleID: c.saleID, UserID: c.userID}
		p.Result.Items = make([]flashsale.PurchasedItem, 0, len(c.itemIDs))
		n := 0
		for _, id := range c.itemIDs {
			it := items[id]
			if it == nil { // no such item: the foreign keys make it unreachable
				it = &lockedItem{sold: true}
			}
			pi := flashsale.PurchasedItem{ID: id, Name: it.name}
			if !it.sold && u.bought+u.added < u.limit {
				it.sold, pi.Sold = true, true
				u.added++
				n++
				sellIDs, sellUsers, sellCodes = append(sellIDs, id), append(sellUsers, c.userID), append(sellCodes, code)
			}
			p.Result.Items = append(p.Result.Items, pi)
		}
		p.Result.TotalPurchased = n
		p.Result.FailedCount = len(p.Result.Items) - n
		p.Result.Success = n > 0
		p.UserBought = u.bought + u.added
		perSale[c.saleID] += int32(n)
		raw, err := json.Marshal(p.Result)
		if err != nil {
			return fmt.Errorf("encode result: %w", err)
		}
		resCodes, resJSON = append(resCodes, code), append(resJSON, string(raw))
		resBought, resFailed = append(resBought, int32(n)), append(resFailed, int32(p.Result.FailedCount))
		b.answers[c.first] = &purchaseAnswer{p: p}
	}

	if len(sellIDs) > 0 {
		res, err := b.db.exec(ctx, b.tx, qBatchSell, sellIDs, sellUsers, sellCodes)
		if err != nil {
			return fmt.Errorf("sell items: %w", err)
		}
		if got, err := res.RowsAffected(); err != nil || got != int64(len(sellIDs)) {
			// The items are locked and were unsold: anything else is a bug,
			// and the transaction must not commit.
			return fmt.Errorf("sell items: sold %d of %d: %w", got, len(sellIDs), err)
		}
		var cs []int64
		var cu []string
		var cn []int32
		for k, u := range users {
			if u.added > 0 {
				cs, cu, cn = append(cs, k.saleID), append(cu, k.userID), append(cn, int32(u.added))
			}
		}
		if _, err := b.db.exec(ctx, b.tx, qBatchCountUsers, cs, cu, cn); err != nil {
			return fmt.Errorf("count user items: %w", err)
		}
	}
	if _, err := b.db.exec(ctx, b.tx, qBatchSaveResults, resCodes, resBought, resFailed, resJSON); err != nil {
		return fmt.Errorf("save results: %w", err)
	}
	var ss []int64
	var sn []int32
	for id, n := range perSale {
		if n > 0 {
			ss, sn = append(ss, id), append(sn, n)
		}
	}
	if len(ss) > 0 {
		if _, err := b.db.exec(ctx, b.tx, qBatchCountSales, ss, sn); err != nil {
			return fmt.Errorf("count sale items: %w", err)
		}
	}
	return nil
}

// lockUsers locks (creating when new) the count rows of the carts' users.
func (b *purchaseBatch) lockUsers(ctx context.Context, order []string, windows map[int64]saleWindow) (map[userKey]*userCount, error) {
	users := make(map[userKey]*userCount, len(order))
	var ss []int64
	var us []string
	var ls []int32
	for _, code := range order {
		c := b.carts[code]
		k := userKey{c.saleID, c.userID}
		if _, ok := users[k]; !ok {
			users[k] = &userCount{}
			ss, us, ls = append(ss, k.saleID), append(us, k.userID), append(ls, int32(windows[k.saleID].limit))
		}
	}
	rows, err := b.db.query(ctx, b.tx, qBatchLockUsers, ss, us, ls)
	if err != nil {
		return nil, fmt.Errorf("lock user counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k userKey
		var bought, limit int
		if err := rows.Scan(&k.saleID, &k.userID, &bought, &limit); err != nil {
			return nil, fmt.Errorf("lock user counts: %w", err)
		}
		users[k].bought, users[k].limit = bought, limit
	}
	return users, rows.Err()
}

type lockedItem struct {
	name string
	sold bool
}

// lockItems locks the carts' items.
func (b *purchaseBatch) lockItems(ctx context.Context, order []string) (map[int64]*lockedItem, error) {
	var ids []int64
	for _, code := range order {
		ids = append(ids, b.carts[code].itemIDs...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	rows, err := b.db.query(ctx, b.tx, qBatchLockItems, ids)
	if err != nil {
		return nil, fmt.Errorf("lock items: %w", err)
	}
	defer rows.Close()
	items := make(map[int64]*lockedItem, len(ids))
	for rows.Next() {
		var id int64
		it := &lockedItem{}
		if err := rows.Scan(&id, &it.name, &it.sold); err != nil {
			return nil, fmt.Errorf("lock items: %w", err)
		}
		items[id] = it
	}
	return items, rows.Err()
}

var (
	qSoldItems = newQuery("select", "items", `
SELECT id FROM items WHERE sale_id = $1 AND sold`)
	qUserCounts = newQuery("select", "user_sale_counts", `
SELECT user_id, items_bought FROM user_sale_counts WHERE sale_id = $1`)
	qSaleCarts = newQuery("select", "checkout_attempts", `
SELECT a.checkout_code, a.user_id, a.item_id, a.id, c.checkout_code IS NOT NULL
FROM checkout_attempts a LEFT JOIN cart_purchases c ON c.checkout_code = a.checkout_code
WHERE a.sale_id = $1 AND a.checkout_code IS NOT NULL
ORDER BY a.id`)
)

// SaleState reads what the cache needs to serve a sale: sold items, items
// bought per user, every code with its user, and each user's open cart (the
// most recent unpurchased one).
func (s *PurchaseStore) SaleState(ctx context.Context, saleID int64) (*flashsale.SaleState, error) {
	st := &flashsale.SaleState{Bought: map[string]int{}, Codes: map[string]string{}}
	// One snapshot for the three reads.
	snapshot := &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	err := s.db.transact(ctx, snapshot, func(tx *sql.Tx) error {
		if err := s.readSold(ctx, tx, saleID, st); err != nil {
			return err
		}
		if err := s.readBought(ctx, tx, saleID, st); err != nil {
			return err
		}
		return s.readCarts(ctx, tx, saleID, st)
	})
	if err != nil {
		return nil, fmt.Errorf("state of sale %d: %w", saleID, err)
	}
	return st, nil
}

func (s *PurchaseStore) readSold(ctx context.Context, tx *sql.Tx, saleID int64, st *flashsale.SaleState) error {
	rows, err := s.db.query(ctx, tx, qSoldItems, saleID)
	if err != nil {
		return translate(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return translate(err)
		}
		_, seq := flashsale.SplitItemID(id)
		st.SoldSeqs = append(st.SoldSeqs, seq)
	}
	return translate(rows.Err())
}

func (s *PurchaseStore) readBought(ctx context.Context, tx *sql.Tx, saleID int64, st *flashsale.SaleState) error {
	rows, err := s.db.query(ctx, tx, qUserCounts, saleID)
	if err != nil {
		return translate(err)
	}
	defer rows.Close()
	for rows.Next() {
		var user string
		var n int
		if err := rows.Scan(&user, &n); err != nil {
			return translate(err)
		}
		st.Bought[user] = n
	}
	return translate(rows.Err())
}

func (s *PurchaseStore) readCarts(ctx context.Context, tx *sql.Tx, saleID int64, st *flashsale.SaleState) error {
	rows, err := s.db.query(ctx, tx, qSaleCarts, saleID)
	if err != nil {
		return translate(err)
	}
	defer rows.Close()
	open := map[string]*flashsale.Cart{} // user -> latest unpurchased cart
	for rows.Next() {
		var code, user string
		var itemID, attemptID int64
		var purchased bool
		if err := rows.Scan(&code, &user, &itemID, &attemptID, &purchased); err != nil {
			return translate(err)
		}
		st.Codes[code] = user
		if purchased {
			continue
		}
		_, seq := flashsale.SplitItemID(itemID)
		c := open[user]
		if c == nil || c.Code != code {
			// Rows come in attempt order, so the last cart seen is the
			// user's most recent one.
			c = &flashsale.Cart{Code: code, UserID: user}
			open[user] = c
		}
		c.Seqs = append(c.Seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return translate(err)
	}
	for _, c := range open {
		st.OpenCarts = append(st.OpenCarts, *c)
	}
	return nil
}
