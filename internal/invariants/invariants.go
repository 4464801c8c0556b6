// Package invariants proves a sale's guarantees from PostgreSQL, the source
// of truth: no oversell, no item sold twice, no user over the limit, every
// counter agreeing with the rows, and every item acknowledged into a cart
// accounted for by that cart. End-to-end tests and the load generator call
// Check after driving a sale; the service runs it as the settlement proof
// (Settler).
package invariants

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// ErrSaleNotFound is returned by Check when the sale does not exist.
var ErrSaleNotFound = errors.New("sale not found")

// The checks, by the name the settlement proof exports them under
// (sale_settlement_violations{check}). Each counts what breaks its guarantee;
// 0 means it holds.
const (
	// CheckOversold counts items sold beyond the sale's total (by the
	// items, sales.items_sold or the purchase rows, whichever is highest).
	CheckOversold = "oversold"
	// CheckItemSoldTwice counts purchase rows beyond the distinct items they
	// name.
	CheckItemSoldTwice = "item_sold_twice"
	// CheckUserOverLimit counts users with more purchases than the limit.
	CheckUserOverLimit = "user_over_limit"
	// CheckSaleItemsSold counts the difference between sales.items_sold and
	// the items marked sold.
	CheckSaleItemsSold = "sale_items_sold"
	// CheckPurchaseItem counts purchases whose item is unsold, sold to
	// another user, or of another sale.
	CheckPurchaseItem = "purchase_item"
	// CheckSoldWithoutPurchase counts items marked sold without a purchase.
	CheckSoldWithoutPurchase = "sold_without_purchase"
	// CheckUserSaleCounts counts users whose user_sale_counts row (or its
	// absence) disagrees with their purchases.
	CheckUserSaleCounts = "user_sale_counts"
	// CheckCartItemLost counts accepted checkouts whose item is not in their
	// cart: an item the buyer was told is in cart C that C's purchase would
	// never mention.
	CheckCartItemLost = "cart_item_lost"
	// CheckCartResult counts carts whose result disagrees with their rows:
	// items_purchased other than their purchase rows, or, once purchased,
	// items_purchased + items_failed other than their items.
	CheckCartResult = "cart_result"
	// CheckPurchaseOutsideCart counts purchases of an item that is not in
	// their cart, or of another user or sale than their cart's.
	CheckPurchaseOutsideCart = "purchase_outside_cart"
	// CheckCartSale counts what ties a cart of the sale to something else:
	// carts holding an item that is not one of the sale's, and accepted
	// checkouts of another user or sale than their cart's.
	CheckCartSale = "cart_sale"
)

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

	Carts             int `json:"carts"`              // carts of the sale
	PurchasedCarts    int `json:"purchased_carts"`    // of which purchased
	CartItems         int `json:"cart_items"`         // items in the sale's carts
	AcceptedCheckouts int `json:"accepted_checkouts"` // accepted attempts of the sale's carts

	UsersOverLimit       int `json:"users_over_limit"`     // users with more purchases than the limit
	MismatchedPurchases  int `json:"mismatched_purchases"` // purchases whose item is unsold, sold to another user or of another sale
	SoldWithoutPurchase  int `json:"sold_without_purchase"`
	UserCountDrift       int `json:"user_count_drift"`       // users whose user_sale_counts row disagrees with their purchases
	LostCartItems        int `json:"lost_cart_items"`        // accepted checkouts whose item is not in their cart
	CartResultDrift      int `json:"cart_result_drift"`      // carts whose result disagrees with their purchase rows or items
	PurchasesOutsideCart int `json:"purchases_outside_cart"` // purchases not of their cart's items, user or sale
	ForeignCartItems     int `json:"foreign_cart_items"`     // carts holding an item that is not one of the sale's
	ForeignCheckouts     int `json:"foreign_checkouts"`      // accepted checkouts of another user or sale than their cart's

	// Checks maps every check name (CheckOversold …) to what breaks it: 0
	// when its guarantee holds.
	Checks map[string]int `json:"checks"`
	// Violations describes each broken guarantee in a sentence; empty when
	// the sale is consistent.
	Violations []string `json:"violations"`
}

// OK reports whether every guarantee holds.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// Check reads sale saleID and verifies its guarantees. All queries run in one
// read-only REPEATABLE READ transaction, so they see one snapshot even while
// purchases are committing. Each is set-based over the sale's rows, through
// the indexes on (sale_id) of items, purchases and carts and on the code of
// purchases and checkout attempts, so its cost grows with the sale, not with
// the history. A broken guarantee is a Violation in the report, not an
// error; errors are failures to read (ErrSaleNotFound when the sale does not
// exist).
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

	var purchasesInCarts int
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
		// The sale's sold items only (the items_sold index): a purchase
		// whose item is not among them is unsold or of another sale.
		{"mismatched purchases", `SELECT count(*) FROM purchases p
			LEFT JOIN items i ON i.id = p.item_id AND i.sale_id = $1 AND i.sold
			WHERE p.sale_id = $1 AND (i.id IS NULL OR i.sold_to_user_id IS DISTINCT FROM p.user_id)`,
			[]any{&r.MismatchedPurchases}},
		// Against the sale's purchases only: a sold item whose purchase
		// names another sale is that purchase's mismatch.
		{"sold without purchase", `SELECT count(*) FROM items i WHERE i.sale_id = $1 AND i.sold
			AND NOT EXISTS (SELECT 1 FROM purchases p WHERE p.item_id = i.id AND p.sale_id = $1)`, []any{&r.SoldWithoutPurchase}},
		// A full join, so that a buyer without a count row is drift too.
		{"user count drift", `SELECT count(*) FROM
			(SELECT user_id, count(*) AS n FROM purchases WHERE sale_id = $1 GROUP BY user_id) p
			FULL JOIN (SELECT user_id, items_bought FROM user_sale_counts WHERE sale_id = $1) u USING (user_id)
			WHERE coalesce(p.n, 0) <> coalesce(u.items_bought, 0)`, []any{&r.UserCountDrift}},
		// One pass over the sale's carts, each cart's accepted checkouts and
		// purchase rows looked up by its code (lateral, so the lookups stay
		// index probes instead of scans of every sale's rows). Open carts
		// have items_purchased = 0 (a CHECK), so a purchase row of an open
		// cart is drift. The items of the sale are its item ids 1 …
		// total_items past $2 (flashsale.ItemID(sale, 0)). The last column counts the purchase rows of the
		// sale found in its carts: the others are outside every cart of it.
		{"carts", `SELECT count(*), count(*) FILTER (WHERE c.state = 'purchased'),
				coalesce(sum(cardinality(c.item_ids)), 0),
				count(*) FILTER (WHERE c.items_purchased <> p.n
					OR (c.state = 'purchased' AND c.items_purchased + c.items_failed <> cardinality(c.item_ids))),
				count(*) FILTER (WHERE EXISTS (SELECT 1 FROM unnest(c.item_ids) AS i(id)
					WHERE i.id - $2 NOT BETWEEN 1 AND s.total_items)),
				coalesce(sum(a.n), 0), coalesce(sum(a.lost), 0), coalesce(sum(a.foreign), 0),
				coalesce(sum(p.outside), 0), coalesce(sum(p.of_sale), 0)
			FROM carts c JOIN sales s ON s.id = c.sale_id
			CROSS JOIN LATERAL (SELECT count(*) AS n,
					count(*) FILTER (WHERE p.item_id <> ALL (c.item_ids) OR p.user_id <> c.user_id OR p.sale_id <> c.sale_id) AS outside,
					count(*) FILTER (WHERE p.sale_id = c.sale_id) AS of_sale
				FROM purchases p WHERE p.checkout_code = c.code) p
			CROSS JOIN LATERAL (SELECT count(*) AS n,
					count(*) FILTER (WHERE a.item_id <> ALL (c.item_ids)) AS lost,
					count(*) FILTER (WHERE a.user_id <> c.user_id OR a.sale_id IS DISTINCT FROM c.sale_id) AS foreign
				FROM checkout_attempts a WHERE a.checkout_code = c.code) a
			WHERE c.sale_id = $1`,
			[]any{&r.Carts, &r.PurchasedCarts, &r.CartItems, &r.CartResultDrift, &r.ForeignCartItems,
				&r.AcceptedCheckouts, &r.LostCartItems, &r.ForeignCheckouts, &r.PurchasesOutsideCart, &purchasesInCarts}},
	} {
		args := []any{saleID}
		if q.name == "carts" {
			args = append(args, flashsale.ItemID(saleID, 0))
		}
		if err := tx.QueryRowContext(ctx, q.sql, args...).Scan(q.dst...); err != nil {
			return r, fmt.Errorf("invariants: sale %d: %s: %w", saleID, q.name, err)
		}
	}
	r.PurchasesOutsideCart += r.Purchases - purchasesInCarts
	r.Checks = make(map[string]int, len(checks))
	r.Violations = []string{} // not nil: JSON shows an empty list
	for _, c := range checks {
		n := c.count(r)
		r.Checks[c.name] = n
		if n > 0 {
			r.Violations = append(r.Violations, c.describe(r, n))
		}
	}
	return r, nil
}

// checks are the guarantees Check verifies, in the order they are reported:
// each counts its breaches in a counted report and describes them.
var checks = []struct {
	name     string
	count    func(r Report) int
	describe func(r Report, n int) string
}{
	{CheckOversold, func(r Report) int {
		return max(max(r.SoldItems, r.ItemsSold, r.Purchases)-r.TotalItems, 0)
	}, func(r Report, _ int) string {
		return fmt.Sprintf("oversold: %d items sold, sales.items_sold=%d, %d purchases, of %d items", r.SoldItems, r.ItemsSold, r.Purchases, r.TotalItems)
	}},
	{CheckItemSoldTwice, func(r Report) int { return r.Purchases - r.PurchasedItems }, func(r Report, n int) string {
		return fmt.Sprintf("%d items sold more than once: %d purchases of %d distinct items", n, r.Purchases, r.PurchasedItems)
	}},
	{CheckSaleItemsSold, func(r Report) int { return abs(r.ItemsSold - r.SoldItems) }, func(r Report, _ int) string {
		return fmt.Sprintf("counts disagree: sales.items_sold=%d, sold items=%d, purchases=%d", r.ItemsSold, r.SoldItems, r.Purchases)
	}},
	{CheckUserOverLimit, func(r Report) int { return r.UsersOverLimit }, func(r Report, n int) string {
		return fmt.Sprintf("%d users bought more than the limit of %d", n, r.UserItemLimit)
	}},
	{CheckPurchaseItem, func(r Report) int { return r.MismatchedPurchases }, func(_ Report, n int) string {
		return fmt.Sprintf("%d purchases disagree with their item (unsold, sold to another user, or of another sale)", n)
	}},
	{CheckSoldWithoutPurchase, func(r Report) int { return r.SoldWithoutPurchase }, func(_ Report, n int) string {
		return fmt.Sprintf("%d items are sold without a purchase", n)
	}},
	{CheckUserSaleCounts, func(r Report) int { return r.UserCountDrift }, func(_ Report, n int) string {
		return fmt.Sprintf("%d users' user_sale_counts disagree with their purchases", n)
	}},
	{CheckCartItemLost, func(r Report) int { return r.LostCartItems }, func(_ Report, n int) string {
		return fmt.Sprintf("%d accepted checkouts are not in their cart's items: acknowledged items lost", n)
	}},
	{CheckCartResult, func(r Report) int { return r.CartResultDrift }, func(_ Report, n int) string {
		return fmt.Sprintf("%d carts' results disagree with their purchase rows or their items", n)
	}},
	{CheckPurchaseOutsideCart, func(r Report) int { return r.PurchasesOutsideCart }, func(_ Report, n int) string {
		return fmt.Sprintf("%d purchases are not of their cart (an item not in it, another user or another sale)", n)
	}},
	{CheckCartSale, func(r Report) int { return r.ForeignCartItems + r.ForeignCheckouts }, func(r Report, _ int) string {
		return fmt.Sprintf("carts belong elsewhere: %d carts hold an item not of the sale, %d accepted checkouts are of another user or sale than their cart",
			r.ForeignCartItems, r.ForeignCheckouts)
	}},
}

// CheckNames returns the name of every check, in the order Check reports
// them.
func CheckNames() []string {
	names := make([]string, len(checks))
	for i, c := range checks {
		names[i] = c.name
	}
	return names
}

func abs(n int) int { return max(n, -n) }
