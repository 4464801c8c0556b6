package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/flashsale/flashsale/internal/flashsale"
)

var _ flashsale.PurchaseStore = (*PurchaseStore)(nil)

// PurchaseStore implements flashsale.PurchaseStore.
type PurchaseStore struct {
	db *DB
}

// NewPurchaseStore returns a PurchaseStore over db.
func NewPurchaseStore(db *DB) *PurchaseStore { return &PurchaseStore{db: db} }

var (
	qCartItems = newQuery("select", "checkout_attempts", `
SELECT DISTINCT sale_id, user_id, item_id FROM checkout_attempts
WHERE checkout_code = $1 AND checkout_code IS NOT NULL ORDER BY item_id`)
	qClaimCart = newQuery("insert", "cart_purchases", `
INSERT INTO cart_purchases (checkout_code, sale_id, user_id) VALUES ($1, $2, $3)
ON CONFLICT (checkout_code) DO NOTHING`)
	qCartResult = newQuery("select", "cart_purchases", `
SELECT c.result, u.items_bought FROM cart_purchases c
LEFT JOIN user_sale_counts u ON u.sale_id = c.sale_id AND u.user_id = c.user_id
WHERE c.checkout_code = $1`)
	qSaleWindow = newQuery("select", "sales", `
SELECT now() >= started_at, now() < ended_at, user_item_limit FROM sales WHERE id = $1`)
	qLockUser = newQuery("insert", "user_sale_counts", `
INSERT INTO user_sale_counts (sale_id, user_id, item_limit) VALUES ($1, $2, $3)
ON CONFLICT (sale_id, user_id) DO UPDATE SET items_bought = user_sale_counts.items_bought
RETURNING items_bought, item_limit`)
	qLockItems = newQuery("select", "items", `
SELECT id, name, sold FROM items WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE`)
	qSellItems = newQuery("update", "items", `
WITH sold AS (
    UPDATE items SET sold = true, sold_to_user_id = $3, sold_at = now()
    WHERE id = ANY($4::bigint[]) AND NOT sold
    RETURNING id
)
INSERT INTO purchases (sale_id, user_id, item_id, checkout_code)
SELECT $1, $3, id, $2 FROM sold`)
	qCountUser = newQuery("update", "user_sale_counts", `
UPDATE user_sale_counts SET items_bought = items_bought + $3
WHERE sale_id = $1 AND user_id = $2 RETURNING items_bought`)
	qSaveResult = newQuery("update", "cart_purchases", `
UPDATE cart_purchases SET items_purchased = $2, items_failed = $3, result = $4 WHERE checkout_code = $1`)
	qCountSale = newQuery("update", "sales", `
UPDATE sales SET items_sold = items_sold + $2 WHERE id = $1`)
)

// Purchase sells the cart's unsold items within the user's limit in one
// READ COMMITTED transaction. Its locks are taken in one order by every
// purchase — the cart's claim row, the user's count row, the items by id, the
// sale row last — so purchases never deadlock, and the sale row, the one hot
// row, is held only for the final update and the commit. The constraints
// (items sold once, user counts within the limit, items_sold within the total)
// reject anything this logic might get wrong.
func (s *PurchaseStore) Purchase(ctx context.Context, saleID int64, code string) (*flashsale.Purchase, error) {
	var p *flashsale.Purchase
	err := s.db.transact(ctx, nil, func(tx *sql.Tx) error {
		var err error
		p, err = s.purchase(ctx, tx, saleID, code)
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (s *PurchaseStore) purchase(ctx context.Context, tx *sql.Tx, saleID int64, code string) (*flashsale.Purchase, error) {
	userID, itemIDs, err := s.cartItems(ctx, tx, saleID, code)
	if err != nil {
		return nil, err
	}
	p := &flashsale.Purchase{SaleID: saleID, UserID: userID}

	res, err := s.db.exec(ctx, tx, qClaimCart, code, saleID, userID)
	if err != nil {
		return nil, fmt.Errorf("claim cart: %w", translate(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, fmt.Errorf("claim cart: %w", translate(err))
	} else if n == 0 {
		// Purchased before (or by a concurrent transaction that committed
		// while this one waited on the claim row): answer as then.
		return s.replay(ctx, tx, p, code)
	}

	var started, running bool
	var limit int
	if err := s.db.queryRow(ctx, tx, qSaleWindow, saleID).Scan(&started, &running, &limit); err != nil {
		return nil, fmt.Errorf("sale window: %w", translate(err))
	}
	if !started {
		return nil, flashsale.Errorf(flashsale.ESaleNotStarted, "the sale has not started")
	}
	if !running {
		return nil, flashsale.Errorf(flashsale.ESaleEnded, "the sale is over")
	}

	var bought int
	if err := s.db.queryRow(ctx, tx, qLockUser, saleID, userID, limit).Scan(&bought, &limit); err != nil {
		return nil, fmt.Errorf("lock user count: %w", translate(err))
	}

	rows, err := s.db.query(ctx, tx, qLockItems, itemIDs)
	if err != nil {
		return nil, fmt.Errorf("lock items: %w", translate(err))
	}
	var sell []int64
	p.Result.Items = make([]flashsale.PurchasedItem, 0, len(itemIDs))
	for rows.Next() {
		var it flashsale.PurchasedItem
		var sold bool
		if err := rows.Scan(&it.ID, &it.Name, &sold); err != nil {
			rows.Close()
			return nil, fmt.Errorf("lock items: %w", translate(err))
		}
		if !sold && bought+len(sell) < limit {
			sell = append(sell, it.ID)
			it.Sold = true
		}
		p.Result.Items = append(p.Result.Items, it)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lock items: %w", translate(err))
	}

	n := len(sell)
	p.UserBought = bought
	if n > 0 {
		res, err := s.db.exec(ctx, tx, qSellItems, saleID, code, userID, sell)
		if err != nil {
			return nil, fmt.Errorf("sell items: %w", translate(err))
		}
		if got, err := res.RowsAffected(); err != nil || got != int64(n) {
			// The items are locked and were unsold: anything else is a bug,
			// and the transaction must not commit.
			return nil, fmt.Errorf("sell items: sold %d of %d: %w", got, n, translate(err))
		}
		if err := s.db.queryRow(ctx, tx, qCountUser, saleID, userID, n).Scan(&p.UserBought); err != nil {
			return nil, fmt.Errorf("count user items: %w", translate(err))
		}
	}
	p.Result.TotalPurchased = n
	p.Result.FailedCount = len(p.Result.Items) - n
	p.Result.Success = n > 0
	result, err := json.Marshal(p.Result)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	if _, err := s.db.exec(ctx, tx, qSaveResult, code, n, p.Result.FailedCount, result); err != nil {
		return nil, fmt.Errorf("save result: %w", translate(err))
	}
	if n > 0 {
		if _, err := s.db.exec(ctx, tx, qCountSale, saleID, n); err != nil {
			return nil, fmt.Errorf("count sale items: %w", translate(err))
		}
	}
	return p, nil
}

// cartItems returns the user and the items of the cart named by code.
func (s *PurchaseStore) cartItems(ctx context.Context, tx *sql.Tx, saleID int64, code string) (string, []int64, error) {
	rows, err := s.db.query(ctx, tx, qCartItems, code)
	if err != nil {
		return "", nil, fmt.Errorf("cart items: %w", translate(err))
	}
	defer rows.Close()
	var userID string
	var ids []int64
	for rows.Next() {
		var sid sql.NullInt64
		var uid string
		var id int64
		if err := rows.Scan(&sid, &uid, &id); err != nil {
			return "", nil, fmt.Errorf("cart items: %w", translate(err))
		}
		if sid.Int64 != saleID || (userID != "" && uid != userID) {
			// Codes embed their sale and belong to one user; a mismatch
			// means the code is not one this service issued.
			return "", nil, flashsale.Errorf(flashsale.ECodeNotFound, "no cart with this code")
		}
		userID = uid
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return "", nil, fmt.Errorf("cart items: %w", translate(err))
	}
	if len(ids) == 0 {
		return "", nil, flashsale.Errorf(flashsale.ECodeNotFound, "no cart with this code")
	}
	return userID, ids, nil
}

func (s *PurchaseStore) replay(ctx context.Context, tx *sql.Tx, p *flashsale.Purchase, code string) (*flashsale.Purchase, error) {
	var raw []byte
	var bought sql.NullInt64
	if err := s.db.queryRow(ctx, tx, qCartResult, code).Scan(&raw, &bought); err != nil {
		return nil, fmt.Errorf("purchase result: %w", translate(err))
	}
	if err := json.Unmarshal(raw, &p.Result); err != nil {
		return nil, fmt.Errorf("decode purchase result: %w", err)
	}
	p.Replay = true
	p.UserBought = int(bought.Int64)
	return p, nil
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
