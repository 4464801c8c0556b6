package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

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

// WithDefaults fills the options left zero: batches of 64 purchases, 2
// writers, 5 seconds per batch, the global tracer provider, no log.
func (o PurchaseStoreOptions) WithDefaults() PurchaseStoreOptions {
	o.MaxBatch = cmp.Or(o.MaxBatch, 64)
	o.Writers = cmp.Or(o.Writers, 2)
	o.Timeout = cmp.Or(o.Timeout, 5*time.Second)
	o.TracerProvider = cmp.Or(o.TracerProvider, otel.GetTracerProvider())
	o.Logger = cmp.Or(o.Logger, discard)
	return o
}

// PurchaseStore implements flashsale.PurchaseStore with group commit: the
// purchases of concurrent requests are sold in one transaction per batch, with
// one set-based statement per step, and each request waits for its batch's
// commit. Every purchase of a sale must update the sale's items_sold row, and
// that row's lock is held through the commit's WAL flush; one update per
// batch instead of one per purchase is what lets purchases scale.
//
// Every batch takes its row locks in one global order — the carts by (sale,
// user, code), as checkouts lock them too, the users' count rows by (sale,
// user), the items by id, the sale rows last — so concurrent batches, of
// purchases or checkouts, of this instance or another, never deadlock. The constraints (items sold once, user counts within the limit,
// items_sold within the total) reject anything this logic might get wrong.
type PurchaseStore struct {
	db      *DB
	batches *batch.Group[*purchaseReq, purchaseAnswer]
}

type purchaseReq struct {
	batch.Answer[purchaseAnswer]
	saleID int64
	code   string
}

type purchaseAnswer struct {
	p   *flashsale.Purchase
	err error
}

// NewPurchaseStore returns a PurchaseStore over db and starts its writers.
// Close stops them.
func NewPurchaseStore(db *DB, opts PurchaseStoreOptions) *PurchaseStore {
	opts = opts.WithDefaults()
	s := &PurchaseStore{db: db}
	s.batches = batch.NewGroup(groupOptions("purchases", opts.MaxBatch, opts.Writers, opts.Timeout, opts.TracerProvider, opts.Logger),
		s.sell, func(err error) purchaseAnswer { return purchaseAnswer{err: err} })
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
	a, err := s.batches.Do(ctx, &purchaseReq{saleID: saleID, code: code})
	if err != nil {
		return nil, flashsale.Unavailable("purchases", err)
	}
	return a.p, a.err
}

// sell runs one batch's transaction, retried whole on serialization
// failures.
func (s *PurchaseStore) sell(ctx context.Context, reqs []*purchaseReq) ([]purchaseAnswer, error) {
	var answers []purchaseAnswer
	err := s.db.transact(ctx, nil, func(tx *txn) error {
		b := newPurchaseBatch(s.db, tx, reqs)
		var err error
		answers, err = b.run(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("purchase: %w", translate(err))
	}
	return answers, nil
}

var (
	qBatchLockCarts = newQuery("select", "carts", `
SELECT code, sale_id, user_id, item_ids, state = 'purchased' FROM carts
WHERE code = ANY($1::text[]) ORDER BY sale_id, user_id COLLATE "C", code COLLATE "C" FOR UPDATE`)
	qBatchSaleWindows = newQuery("select", "sales", `
SELECT id, now() >= started_at, now() < ended_at, user_item_limit FROM sales WHERE id = ANY($1::bigint[])`)
	qBatchResults = newQuery("select", "carts", `
SELECT c.code, i.id, i.name, p.item_id IS NOT NULL, coalesce(u.items_bought, 0)
FROM carts c
CROSS JOIN LATERAL unnest(c.item_ids) WITH ORDINALITY AS t(item_id, n)
JOIN items i ON i.id = t.item_id
LEFT JOIN purchases p ON p.item_id = t.item_id AND p.checkout_code = c.code
LEFT JOIN user_sale_counts u ON u.sale_id = c.sale_id AND u.user_id = c.user_id
WHERE c.code = ANY($1::text[])
ORDER BY c.code, t.n`)
	qBatchLockUsers = newQuery("insert", "user_sale_counts", `
INSERT INTO user_sale_counts (sale_id, user_id, item_limit)
SELECT s, u, l FROM unnest($1::bigint[], $2::text[], $3::integer[]) AS t(s, u, l) ORDER BY s, u COLLATE "C"
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
	qBatchCloseCarts = newQuery("update", "carts", `
UPDATE carts c SET state = 'purchased', purchased_at = now(), items_purchased = t.p, items_failed = t.f
FROM unnest($1::text[], $2::integer[], $3::integer[]) AS t(code, p, f)
WHERE c.code = t.code`)
	qBatchCountSales = newQuery("update", "sales", `
UPDATE sales s SET items_sold = s.items_sold + t.n
FROM (SELECT * FROM unnest($1::bigint[], $2::integer[]) AS t(id, n) ORDER BY id) t
WHERE s.id = t.id`)
)

// purchaseBatch is one batch's transaction: a fixed sequence of set-based
// statements, whatever the batch's size.
type purchaseBatch struct {
	db    *DB
	tx    *txn
	reqs  []*purchaseReq
	carts map[string]*batchCart // by code
	// answers[i] answers reqs[i]; nil until decided.
	answers []*purchaseAnswer
}

// batchCart is one code's cart, locked, with the index of the batch's first
// request for it (later ones replay its answer).
type batchCart struct {
	flashsale.Cart
	first int
}

type saleWindow struct {
	started, running bool
	limit            int
}

func newPurchaseBatch(db *DB, tx *txn, reqs []*purchaseReq) *purchaseBatch {
	return &purchaseBatch{db: db, tx: tx, reqs: reqs, carts: make(map[string]*batchCart, len(reqs)), answers: make([]*purchaseAnswer, len(reqs))}
}

func (b *purchaseBatch) fail(i int, err error) { b.answers[i] = &purchaseAnswer{err: err} }

// run sells the batch and returns one answer per request.
func (b *purchaseBatch) run(ctx context.Context) ([]purchaseAnswer, error) {
	if err := b.lockCarts(ctx); err != nil {
		return nil, err
	}
	windows, err := b.readWindows(ctx)
	if err != nil {
		return nil, err
	}
	open, err := b.replay(ctx, windows)
	if err != nil {
		return nil, err
	}
	if len(open) > 0 {
		if err := b.sell(ctx, open, windows); err != nil {
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

// lockCarts locks the carts of the batch's codes. A code no cart has, or one
// whose cart is of another sale than the code says, is not a code this
// service issued: ECodeNotFound.
func (b *purchaseBatch) lockCarts(ctx context.Context) error {
	codes := make([]string, 0, len(b.reqs))
	first := make(map[string]int, len(b.reqs))
	for i, req := range b.reqs {
		if _, ok := first[req.code]; !ok {
			first[req.code] = i
			codes = append(codes, req.code)
		}
	}
	rows, err := b.db.query(ctx, b.tx, qBatchLockCarts, codes)
	if err != nil {
		return fmt.Errorf("lock carts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		c := &batchCart{}
		var items int64Array
		if err := rows.Scan(&c.Code, &c.SaleID, &c.UserID, &items, &c.Purchased); err != nil {
			return fmt.Errorf("lock carts: %w", err)
		}
		c.ItemIDs, c.first = items, first[c.Code]
		if c.SaleID == b.reqs[c.first].saleID {
			b.carts[c.Code] = c
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("lock carts: %w", err)
	}
	for _, code := range codes {
		if _, ok := b.carts[code]; !ok {
			i := first[code]
			b.carts[code] = &batchCart{first: i}
			b.fail(i, flashsale.Errorf(flashsale.ECodeNotFound, "no cart with this code"))
		}
	}
	return nil
}

// readWindows reads whether each sale of the batch is running, and its limit.
func (b *purchaseBatch) readWindows(ctx context.Context) (map[int64]saleWindow, error) {
	var ids []int64
	for _, c := range b.carts {
		if b.answers[c.first] == nil && !slices.Contains(ids, c.SaleID) {
			ids = append(ids, c.SaleID)
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

// replay answers the purchased carts with their result, and the open carts
// of sales not running with why; it returns the codes of the open carts to
// sell, in batch order (earlier requests buy first).
func (b *purchaseBatch) replay(ctx context.Context, windows map[int64]saleWindow) ([]string, error) {
	var open, purchased []string
	for _, req := range b.reqs {
		c := b.carts[req.code]
		if b.answers[c.first] != nil || b.reqs[c.first] != req {
			continue
		}
		switch w := windows[c.SaleID]; {
		case c.Purchased:
			purchased = append(purchased, c.Code)
		case !w.started:
			b.fail(c.first, flashsale.Errorf(flashsale.ESaleNotStarted, "the sale has not started"))
		case !w.running:
			b.fail(c.first, flashsale.Errorf(flashsale.ESaleEnded, "the sale is over"))
		default:
			open = append(open, c.Code)
		}
	}
	if len(purchased) == 0 {
		return open, nil
	}
	results, err := b.results(ctx, purchased)
	if err != nil {
		return nil, err
	}
	for _, code := range purchased {
		c := b.carts[code]
		p := results[code]
		if p == nil { // a purchased cart without items
			p = &flashsale.Purchase{Result: flashsale.NewPurchaseResult(nil)}
		}
		p.SaleID, p.UserID, p.Replay = c.SaleID, c.UserID, true
		b.answers[c.first] = &purchaseAnswer{p: p}
	}
	return open, nil
}

// results reads the results of purchased carts from their rows: each item
// of the cart, sold when the cart's purchase bought it.
func (b *purchaseBatch) results(ctx context.Context, codes []string) (map[string]*flashsale.Purchase, error) {
	rows, err := b.db.query(ctx, b.tx, qBatchResults, codes)
	if err != nil {
		return nil, fmt.Errorf("purchase results: %w", err)
	}
	defer rows.Close()
	items := map[string][]flashsale.PurchasedItem{}
	bought := map[string]int{}
	for rows.Next() {
		var code string
		var it flashsale.PurchasedItem
		var n int
		if err := rows.Scan(&code, &it.ID, &it.Name, &it.Sold, &n); err != nil {
			return nil, fmt.Errorf("purchase results: %w", err)
		}
		items[code] = append(items[code], it)
		bought[code] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("purchase results: %w", err)
	}
	out := make(map[string]*flashsale.Purchase, len(items))
	for code, its := range items {
		out[code] = &flashsale.Purchase{Result: flashsale.NewPurchaseResult(its), UserBought: bought[code]}
	}
	return out, nil
}

// sell locks the users' counts and the items (each in key order), decides
// the open carts' purchase with the domain's rule, and writes the decision:
// the items sold, the users' and sales' counts, the carts closed.
func (b *purchaseBatch) sell(ctx context.Context, open []string, windows map[int64]saleWindow) error {
	carts := make([]*flashsale.Cart, len(open))
	for i, code := range open {
		carts[i] = &b.carts[code].Cart
	}
	users, err := b.lockUsers(ctx, carts, windows)
	if err != nil {
		return err
	}
	items, err := b.lockItems(ctx, carts)
	if err != nil {
		return err
	}
	before := make(map[flashsale.UserKey]int, len(users))
	for k, u := range users {
		before[k] = u.Bought
	}
	results := flashsale.SellCarts(carts, users, items)

	var sellIDs []int64
	var sellUsers, sellCodes []string
	closeCodes := make([]string, len(carts))
	closeBought, closeFailed := make([]int32, len(carts)), make([]int32, len(carts))
	perSale := map[int64]int32{}
	for i, c := range carts {
		res := results[i]
		for _, it := range res.Items {
			if it.Sold {
				sellIDs, sellUsers, sellCodes = append(sellIDs, it.ID), append(sellUsers, c.UserID), append(sellCodes, c.Code)
			}
		}
		perSale[c.SaleID] += int32(res.TotalPurchased)
		closeCodes[i], closeBought[i], closeFailed[i] = c.Code, int32(res.TotalPurchased), int32(res.FailedCount)
		// The user's count after the whole batch: the cache keeps the maximum.
		u := users[flashsale.UserKey{SaleID: c.SaleID, UserID: c.UserID}]
		b.answers[b.carts[c.Code].first] = &purchaseAnswer{p: &flashsale.Purchase{Result: res, SaleID: c.SaleID, UserID: c.UserID, UserBought: u.Bought}}
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
			if n := u.Bought - before[k]; n > 0 {
				cs, cu, cn = append(cs, k.SaleID), append(cu, k.UserID), append(cn, int32(n))
			}
		}
		if _, err := b.db.exec(ctx, b.tx, qBatchCountUsers, cs, cu, cn); err != nil {
			return fmt.Errorf("count user items: %w", err)
		}
	}
	if _, err := b.db.exec(ctx, b.tx, qBatchCloseCarts, closeCodes, closeBought, closeFailed); err != nil {
		return fmt.Errorf("close carts: %w", err)
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
func (b *purchaseBatch) lockUsers(ctx context.Context, carts []*flashsale.Cart, windows map[int64]saleWindow) (map[flashsale.UserKey]*flashsale.UserCount, error) {
	users := make(map[flashsale.UserKey]*flashsale.UserCount, len(carts))
	var ss []int64
	var us []string
	var ls []int32
	for _, c := range carts {
		k := flashsale.UserKey{SaleID: c.SaleID, UserID: c.UserID}
		if _, ok := users[k]; !ok {
			users[k] = &flashsale.UserCount{}
			ss, us, ls = append(ss, k.SaleID), append(us, k.UserID), append(ls, int32(windows[k.SaleID].limit))
		}
	}
	rows, err := b.db.query(ctx, b.tx, qBatchLockUsers, ss, us, ls)
	if err != nil {
		return nil, fmt.Errorf("lock user counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k flashsale.UserKey
		var u flashsale.UserCount
		if err := rows.Scan(&k.SaleID, &k.UserID, &u.Bought, &u.Limit); err != nil {
			return nil, fmt.Errorf("lock user counts: %w", err)
		}
		*users[k] = u
	}
	return users, rows.Err()
}

// lockItems locks the carts' items.
func (b *purchaseBatch) lockItems(ctx context.Context, carts []*flashsale.Cart) (map[int64]*flashsale.StockItem, error) {
	var ids []int64
	for _, c := range carts {
		ids = append(ids, c.ItemIDs...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	items := make(map[int64]*flashsale.StockItem, len(ids))
	if len(ids) == 0 {
		return items, nil
	}
	rows, err := b.db.query(ctx, b.tx, qBatchLockItems, ids)
	if err != nil {
		return nil, fmt.Errorf("lock items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		it := &flashsale.StockItem{}
		if err := rows.Scan(&id, &it.Name, &it.Sold); err != nil {
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
	qSaleCarts = newQuery("select", "carts", `
SELECT code, user_id, state = 'open' FROM carts WHERE sale_id = $1`)
)

// SaleState reads what the cache needs to serve a sale, from the sale's rows:
// sold items, items bought per user, every cart's code and user, and each
// user's open cart.
func (s *PurchaseStore) SaleState(ctx context.Context, saleID int64) (*flashsale.SaleState, error) {
	st := &flashsale.SaleState{Bought: map[string]int{}, Open: map[string]string{}, Codes: map[string]string{}}
	// One snapshot for the three reads.
	snapshot := &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	err := s.db.transact(ctx, snapshot, func(tx *txn) error {
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

func (s *PurchaseStore) readSold(ctx context.Context, tx *txn, saleID int64, st *flashsale.SaleState) error {
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

func (s *PurchaseStore) readBought(ctx context.Context, tx *txn, saleID int64, st *flashsale.SaleState) error {
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

func (s *PurchaseStore) readCarts(ctx context.Context, tx *txn, saleID int64, st *flashsale.SaleState) error {
	rows, err := s.db.query(ctx, tx, qSaleCarts, saleID)
	if err != nil {
		return translate(err)
	}
	defer rows.Close()
	for rows.Next() {
		var code, user string
		var open bool
		if err := rows.Scan(&code, &user, &open); err != nil {
			return translate(err)
		}
		st.Codes[code] = user
		if open {
			st.Open[user] = code
		}
	}
	return translate(rows.Err())
}
