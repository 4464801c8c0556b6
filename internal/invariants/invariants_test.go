package invariants_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/internal/invariants"
	"github.com/flashsale/flashsale/internal/testenv"
)

const saleID = 1_800_000_000

// mustSale opens a fresh database holding one sale of total items with the
// given user limit, in which alice bought items 1 and 2 and bob item 3; dave's
// purchase of item 3 failed (bob had it), and carol's cart of items 4 and 5 is
// open: every row the way the service records it.
func mustSale(t *testing.T, total, limit int) *sql.DB {
	t.Helper()
	db := testenv.MustOpenSQL(t, testenv.MustDatabase(t))
	mustExec(t, db, `INSERT INTO sales (id, started_at, ended_at, total_items, user_item_limit)
		VALUES ($1, now(), now() + interval '1 hour', $2, $3)`, saleID, total, limit)
	mustExec(t, db, `INSERT INTO items (id, sale_id, name, image_url)
		SELECT $1::bigint * 1000000 + g, $1, 'item ' || g, 'https://img.example/' || g FROM generate_series(1, $2::int) g`, saleID, total)
	mustSell(t, db, "alice", "code-alice-1", 1, 2)
	mustSell(t, db, "bob", "code-bob-1", 3)
	mustCart(t, db, "dave", "code-dave", 3)
	mustExec(t, db, `UPDATE carts SET state = 'purchased', purchased_at = now(), items_failed = 1 WHERE code = 'code-dave'`)
	mustCart(t, db, "carol", "code-carol", 4, 5)
	return db
}

func item(seq int64) int64 { return saleID*1_000_000 + seq }

// mustCart records user's open cart code holding the items numbered seqs,
// each by an accepted checkout.
func mustCart(t *testing.T, db *sql.DB, user, code string, seqs ...int64) []int64 {
	t.Helper()
	ids := make([]int64, len(seqs))
	for i, s := range seqs {
		ids[i] = item(s)
	}
	mustExec(t, db, `INSERT INTO carts (code, sale_id, user_id, item_ids) VALUES ($1, $2, $3, $4)`, code, saleID, user, ids)
	mustExec(t, db, `INSERT INTO checkout_attempts (sale_id, user_id, item_id, checkout_code, outcome)
		SELECT $1, $2, unnest($3::bigint[]), $4, 'accepted'`, saleID, user, ids, code)
	return ids
}

// mustSell records a cart of the items numbered seqs and its purchase by
// user, every item sold.
func mustSell(t *testing.T, db *sql.DB, user, code string, seqs ...int64) {
	t.Helper()
	ids := mustCart(t, db, user, code, seqs...)
	mustExec(t, db, `UPDATE carts SET state = 'purchased', purchased_at = now(), items_purchased = $2 WHERE code = $1`, code, len(ids))
	mustExec(t, db, `UPDATE items SET sold = true, sold_to_user_id = $1, sold_at = now() WHERE id = ANY($2)`, user, ids)
	mustExec(t, db, `INSERT INTO purchases (sale_id, user_id, item_id, checkout_code) SELECT $1, $2, unnest($3::bigint[]), $4`,
		saleID, user, ids, code)
	mustExec(t, db, `INSERT INTO user_sale_counts (sale_id, user_id, items_bought, item_limit)
		SELECT $1, $2, $3, user_item_limit FROM sales WHERE id = $1
		ON CONFLICT (sale_id, user_id) DO UPDATE SET items_bought = user_sale_counts.items_bought + EXCLUDED.items_bought`,
		saleID, user, len(ids))
	mustExec(t, db, `UPDATE sales SET items_sold = items_sold + $2 WHERE id = $1`, saleID, len(ids))
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestCheckConsistentSale(t *testing.T) {
	db := mustSale(t, 5, 2)
	r, err := invariants.Check(context.Background(), db, saleID)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("violations in a consistent sale: %q", r.Violations)
	}
	want := invariants.Report{
		SaleID: saleID, TotalItems: 5, ItemsSold: 3, UserItemLimit: 2,
		SoldItems: 3, Purchases: 3, PurchasedItems: 3, Buyers: 2,
		Carts: 4, PurchasedCarts: 3, CartItems: 6, AcceptedCheckouts: 6,
	}
	if r.SaleID != want.SaleID || r.TotalItems != want.TotalItems || r.ItemsSold != want.ItemsSold ||
		r.UserItemLimit != want.UserItemLimit || r.SoldItems != want.SoldItems || r.Purchases != want.Purchases ||
		r.PurchasedItems != want.PurchasedItems || r.Buyers != want.Buyers || r.Carts != want.Carts ||
		r.PurchasedCarts != want.PurchasedCarts || r.CartItems != want.CartItems || r.AcceptedCheckouts != want.AcceptedCheckouts {
		t.Errorf("report = %+v, want %+v", r, want)
	}
	for _, name := range invariants.CheckNames() {
		if n, ok := r.Checks[name]; !ok || n != 0 {
			t.Errorf("check %s = %d (reported: %t), want 0", name, n, ok)
		}
	}
	if len(r.Checks) != len(invariants.CheckNames()) {
		t.Errorf("checks %v, want exactly %v", r.Checks, invariants.CheckNames())
	}
}

// TestCheckReportsBrokenSale breaks a consistent sale in one way per case,
// dropping the constraint that would prevent it where there is one, and
// expects the breach to be reported.
func TestCheckReportsBrokenSale(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, db *sql.DB)
		check  string // the check that must count it
		want   string // a substring of one violation
	}{
		{"sales counter drifts from the items", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE sales SET items_sold = items_sold - 1 WHERE id = $1`, saleID)
		}, invariants.CheckSaleItemsSold, "counts disagree: sales.items_sold=2, sold items=3, purchases=3"},
		{"an item is purchased twice", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `ALTER TABLE purchases DROP CONSTRAINT purchases_item_once`)
			mustExec(t, db, `INSERT INTO purchases (sale_id, user_id, item_id, checkout_code) VALUES ($1, 'alice', $2, 'code-alice-1')`,
				saleID, item(1))
		}, invariants.CheckItemSoldTwice, "1 items sold more than once: 4 purchases of 3 distinct items"},
		{"a user buys over the limit", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `ALTER TABLE user_sale_counts DROP CONSTRAINT user_sale_counts_limit`)
			mustSell(t, db, "alice", "code-alice-2", 4)
		}, invariants.CheckUserOverLimit, "1 users bought more than the limit of 2"},
		{"a purchase names another buyer than its item", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE items SET sold_to_user_id = 'mallory' WHERE id = $1`, item(1))
		}, invariants.CheckPurchaseItem, "1 purchases disagree with their item"},
		{"an item is sold without a purchase", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE items SET sold = true, sold_to_user_id = 'mallory', sold_at = now() WHERE id = $1`, item(5))
		}, invariants.CheckSoldWithoutPurchase, "1 items are sold without a purchase"},
		{"more sold than the sale holds", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `ALTER TABLE sales DROP CONSTRAINT sales_items_sold`)
			mustExec(t, db, `UPDATE sales SET total_items = 2 WHERE id = $1`, saleID)
		}, invariants.CheckOversold, "oversold: 3 items sold"},
		{"a buyer has no count row", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `DELETE FROM user_sale_counts WHERE user_id = 'bob'`)
		}, invariants.CheckUserSaleCounts, "1 users' user_sale_counts disagree with their purchases"},
		{"a count row is over its purchases", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE user_sale_counts SET items_bought = 2 WHERE user_id = 'bob'`)
		}, invariants.CheckUserSaleCounts, "1 users' user_sale_counts disagree with their purchases"},
		{"an accepted item is missing from its open cart", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE carts SET item_ids = array_remove(item_ids, $1) WHERE code = 'code-carol'`, item(4))
		}, invariants.CheckCartItemLost, "1 accepted checkouts are not in their cart's items"},
		{"a purchased cart counts a sold item as failed", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE carts SET items_purchased = 1, items_failed = 1 WHERE code = 'code-alice-1'`)
		}, invariants.CheckCartResult, "1 carts' results disagree"},
		{"a purchased cart's result does not cover its items", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `ALTER TABLE carts DROP CONSTRAINT carts_result`)
			mustExec(t, db, `UPDATE carts SET items_failed = 0 WHERE code = 'code-dave'`)
		}, invariants.CheckCartResult, "1 carts' results disagree"},
		{"an open cart has a purchase row", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE carts SET state = 'open', purchased_at = NULL, items_purchased = 0, items_failed = 0 WHERE code = 'code-bob-1'`)
		}, invariants.CheckCartResult, "1 carts' results disagree"},
		{"a purchase is recorded in another user's cart", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE purchases SET checkout_code = 'code-dave' WHERE item_id = $1`, item(3))
		}, invariants.CheckPurchaseOutsideCart, "1 purchases are not of their cart"},
		{"a cart's purchase sold an item that was never in it", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `ALTER TABLE carts DROP CONSTRAINT carts_result`)
			mustExec(t, db, `UPDATE carts SET item_ids = ARRAY[$1::bigint] WHERE code = 'code-alice-1'`, item(1))
			mustExec(t, db, `DELETE FROM checkout_attempts WHERE checkout_code = 'code-alice-1' AND item_id = $1`, item(2))
		}, invariants.CheckPurchaseOutsideCart, "1 purchases are not of their cart"},
		{"a purchase of the sale is in a cart of another sale", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `INSERT INTO sales (id, started_at, ended_at, total_items, user_item_limit)
				VALUES ($1, now() + interval '1 hour', now() + interval '2 hours', 5, 2)`, saleID+3600)
			mustExec(t, db, `INSERT INTO carts (code, sale_id, user_id, item_ids, state, purchased_at, items_purchased)
				VALUES ('code-bob-next', $1, 'bob', ARRAY[$2::bigint], 'purchased', now(), 1)`, saleID+3600, item(3))
			mustExec(t, db, `UPDATE purchases SET checkout_code = 'code-bob-next' WHERE item_id = $1`, item(3))
			mustExec(t, db, `UPDATE carts SET items_purchased = 0, items_failed = 1 WHERE code = 'code-bob-1'`)
		}, invariants.CheckPurchaseOutsideCart, "1 purchases are not of their cart"},
		{"a cart holds an item of another sale", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE carts SET item_ids = item_ids || $1::bigint WHERE code = 'code-carol'`, (saleID+3600)*1_000_000+4)
		}, invariants.CheckCartSale, "1 carts hold an item not of the sale"},
		{"a cart holds an item beyond the sale's", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE carts SET item_ids = item_ids || $1::bigint WHERE code = 'code-carol'`, item(6))
		}, invariants.CheckCartSale, "1 carts hold an item not of the sale"},
		{"an accepted checkout names another user than its cart", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE checkout_attempts SET user_id = 'mallory' WHERE checkout_code = 'code-carol' AND item_id = $1`, item(4))
		}, invariants.CheckCartSale, "1 accepted checkouts are of another user or sale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := mustSale(t, 5, 2)
			tc.mutate(t, db)
			r, err := invariants.Check(context.Background(), db, saleID)
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() {
				t.Fatalf("OK for a broken sale: %+v", r)
			}
			found := false
			for _, v := range r.Violations {
				found = found || strings.Contains(v, tc.want)
			}
			if !found {
				t.Errorf("violations %q, want one containing %q", r.Violations, tc.want)
			}
			if r.Checks[tc.check] == 0 {
				t.Errorf("checks %v: %s counts nothing", r.Checks, tc.check)
			}
		})
	}
}

func TestCheckUnknownSale(t *testing.T) {
	db := testenv.MustOpenSQL(t, testenv.MustDatabase(t))
	_, err := invariants.Check(context.Background(), db, 42)
	if !errors.Is(err, invariants.ErrSaleNotFound) {
		t.Fatalf("err = %v, want ErrSaleNotFound", err)
	}
}
