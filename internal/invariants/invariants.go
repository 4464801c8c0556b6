// Package invariants checks a sale's guarantees in PostgreSQL, the source of
// truth: no oversell, no item sold twice, no user over the limit, every item
// accepted into a cart accounted for in that cart's purchase, and every
// record of a sale agreeing with the others. End-to-end tests and the load
// generator call it after driving a sale.
package invariants

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrSaleNotFound is returned by Check when the sale does not exist.
var ErrSaleNotFound = errors.New("sale not found")

// Report holds what Check counted and the guarantees it found broken.
type Report struct {
	SaleID        int64 `json:"sale_id"`
	TotalItems    int   `json:"total_items"`     // sales.total_items
	ItemsSold     int   `json:"items_sold"`      // sales.items_sold, the counter
	UserItemLimit int   `json:"user_item_limit"` // sales.user_item_limit
	SoldItems     int   `json:"sold_items"`      // items marked sold
	Purchases     int   `json:"purchases"`       // purchase rows
	// PurchasedItems counts distinct items among purchase rows; below
	// Purchases means an item was sold twice.
	PurchasedItems int `json:"purchased_items"`
	Buyers         int `json:"buyers"` // distinct users with a purchase

	UsersOverLimit      int `json:"users_over_limit"`     // users with more purchases than the limit
	MismatchedPurchases int `json:"mismatched_purchases"` // purchases whose item is unsold, sold to another user or of another sale
	SoldWithoutPurchase int `json:"sold_without_purchase"`
	UserCountDrift      int `json:"user_count_drift"` // users whose user_sale_counts row disagrees with their purchases
	// UnaccountedCartItems counts accepted checkouts into a purchased cart
	// whose item is not in that cart's stored purchase result (neither sold
	// nor failed): an item the buyer was told is in the cart, and the
	// purchase of the cart never mentions.
	UnaccountedCartItems int `json:"unaccounted_cart_items"`

	// Violations describes each broken guarantee in a sentence; empty when
	// the sale is consistent.
	Violations []string `json:"violations"`
}

// OK reports whether every guarantee holds.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// Check reads sale saleID and verifies its guarantees. All queries run in one
// read-only REPEATABLE READ transaction, so they see one snapshot even while
// purchases are committing. A broken guarantee is a Violation in the report,
// not an error; errors are failures to read (ErrSaleNotFound when the sale
// does not exist).
func Check(ctx context.Context, db *sql.DB, saleID int64) (r Report, err error) {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return r, fmt.Errorf("invariants: begin: %w", err)
	}
	defer func() { err = errors.Join(err, tx.Rollback()) }()

	r.SaleID = saleID
	err = tx.QueryRowContext(ctx, `SELECT total_items, items_sold, user_item_limit FROM sales WHERE id = $1`, saleID).
		Scan(&r.TotalItems, &r.ItemsSold, &r.UserItemLimit)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("invariants: sale %d: %w", saleID, ErrSaleNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("invariants: sale %d: %w", saleID, err)
	}

	for _, q := range []struct {
		name, sql string
		dst       []any
	}{
		{"sold items", `SELECT count(*) FROM items WHERE sale_id = $1 AND sold`, []any{&r.SoldItems}},
		{"purchases", `SELECT count(*), count(DISTINCT item_id), count(DISTINCT user_id) FROM purchases WHERE sale_id = $1`,
			[]any{&r.Purchases, &r.PurchasedItems, &r.Buyers}},
		{"users over the limit", `SELECT count(*) FROM (
			SELECT user_id FROM purchases WHERE sale_id = $1 GROUP BY user_id
			HAVING count(*) > (SELECT user_item_limit FROM sales WHERE id = $1)) o`, []any{&r.UsersOverLimit}},
		{"mismatched purchases", `SELECT count(*) FROM purchases p JOIN items i ON i.id = p.item_id
			WHERE p.sale_id = $1 AND (NOT i.sold OR i.sold_to_user_id IS DISTINCT FROM p.user_id OR i.sale_id <> p.sale_id)`,
			[]any{&r.MismatchedPurchases}},
		{"sold without purchase", `SELECT count(*) FROM items i WHERE i.sale_id = $1 AND i.sold
			AND NOT EXISTS (SELECT 1 FROM purchases p WHERE p.item_id = i.id)`, []any{&r.SoldWithoutPurchase}},
		// A full join, so that a buyer without a count row is drift too.
		{"user count drift", `SELECT count(*) FROM
			(SELECT user_id, count(*) AS n FROM purchases WHERE sale_id = $1 GROUP BY user_id) p
			FULL JOIN (SELECT user_id, items_bought FROM user_sale_counts WHERE sale_id = $1) u USING (user_id)
			WHERE coalesce(p.n, 0) <> coalesce(u.items_bought, 0)`, []any{&r.UserCountDrift}},
		{"unaccounted cart items", `SELECT count(*) FROM checkout_attempts a
			JOIN cart_purchases c ON c.checkout_code = a.checkout_code
			WHERE a.sale_id = $1 AND a.outcome = 'accepted' AND c.result IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c.result->'items') e
				WHERE (e->>'id')::bigint = a.item_id)`, []any{&r.UnaccountedCartItems}},
	} {
		if err := tx.QueryRowContext(ctx, q.sql, saleID).Scan(q.dst...); err != nil {
			return r, fmt.Errorf("invariants: sale %d: %s: %w", saleID, q.name, err)
		}
	}
	r.Violations = r.violations()
	return r, nil
}

// violations lists the broken guarantees of the counted report.
func (r Report) violations() []string {
	v := []string{} // not nil: JSON shows an empty list
	add := func(format string, args ...any) { v = append(v, fmt.Sprintf(format, args...)) }
	if r.SoldItems > r.TotalItems || r.ItemsSold > r.TotalItems || r.Purchases > r.TotalItems {
		add("oversold: %d items sold, sales.items_sold=%d, %d purchases, of %d items", r.SoldItems, r.ItemsSold, r.Purchases, r.TotalItems)
	}
	if r.PurchasedItems != r.Purchases {
		add("%d items sold more than once: %d purchases of %d distinct items", r.Purchases-r.PurchasedItems, r.Purchases, r.PurchasedItems)
	}
	if r.ItemsSold != r.SoldItems || r.Purchases != r.SoldItems {
		add("counts disagree: sales.items_sold=%d, sold items=%d, purchases=%d", r.ItemsSold, r.SoldItems, r.Purchases)
	}
	if r.UsersOverLimit > 0 {
		add("%d users bought more than the limit of %d", r.UsersOverLimit, r.UserItemLimit)
	}
	if r.MismatchedPurchases > 0 {
		add("%d purchases disagree with their item (unsold, sold to another user, or of another sale)", r.MismatchedPurchases)
	}
	if r.SoldWithoutPurchase > 0 {
		add("%d items are sold without a purchase", r.SoldWithoutPurchase)
	}
	if r.UserCountDrift > 0 {
		add("%d users' user_sale_counts disagree with their purchases", r.UserCountDrift)
	}
	if r.UnaccountedCartItems > 0 {
		add("%d checkouts accepted into a purchased cart are not in its purchase result", r.UnaccountedCartItems)
	}
	return v
}
