package invariants_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/internal/invariants"
	"github.com/flashsale/flashsale/internal/testenv"
)

const saleID = 1_800_000_000

// mustSale opens a fresh database holding one sale of total items with the
// given user limit, in which alice bought items 1 and 2 and bob item 3, the
// way the service records a purchase.
func mustSale(t *testing.T, total, limit int) *sql.DB {
	t.Helper()
	db := testenv.MustOpenSQL(t, testenv.MustDatabase(t))
	mustExec(t, db, `INSERT INTO sales (id, started_at, ended_at, total_items, user_item_limit)
		VALUES ($1, now(), now() + interval '1 hour', $2, $3)`, saleID, total, limit)
	mustExec(t, db, `INSERT INTO items (id, sale_id, name, image_url)
		SELECT $1::bigint * 1000000 + g, $1, 'item ' || g, 'https://img.example/' || g FROM generate_series(1, $2::int) g`, saleID, total)
	mustSell(t, db, "alice", "code-alice-1", 1, 2)
	mustSell(t, db, "bob", "code-bob-1", 3)
	return db
}

// mustSell records a correct purchase of the items numbered seqs by user.
func mustSell(t *testing.T, db *sql.DB, user, code string, seqs ...int64) {
	t.Helper()
	ids := make([]int64, len(seqs))
	for i, s := range seqs {
		ids[i] = saleID*1_000_000 + s
	}
	mustExec(t, db, `INSERT INTO cart_purchases (checkout_code, sale_id, user_id, items_purchased) VALUES ($1, $2, $3, $4)`,
		code, saleID, user, len(ids))
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
		SoldItems: 3, Purchases: 3, PurchasedItems: 3, Buyers: 2, Violations: []string{},
	}
	if r.SaleID != want.SaleID || r.TotalItems != want.TotalItems || r.ItemsSold != want.ItemsSold ||
		r.UserItemLimit != want.UserItemLimit || r.SoldItems != want.SoldItems || r.Purchases != want.Purchases ||
		r.PurchasedItems != want.PurchasedItems || r.Buyers != want.Buyers {
		t.Errorf("report = %+v, want %+v", r, want)
	}
}

// TestCheckReportsBrokenSale breaks a consistent sale in one way per case,
// dropping the constraint that would prevent it where there is one, and
// expects the breach to be reported.
func TestCheckReportsBrokenSale(t *testing.T) {
	item := func(seq int64) int64 { return saleID*1_000_000 + seq }
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, db *sql.DB)
		want   string // a substring of one violation
	}{
		{"sales counter drifts from the items", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE sales SET items_sold = items_sold - 1 WHERE id = $1`, saleID)
		}, "counts disagree: sales.items_sold=2, sold items=3, purchases=3"},
		{"an item is purchased twice", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `ALTER TABLE purchases DROP CONSTRAINT purchases_item_once`)
			mustExec(t, db, `INSERT INTO purchases (sale_id, user_id, item_id, checkout_code) VALUES ($1, 'alice', $2, 'code-alice-1')`,
				saleID, item(1))
		}, "1 items sold more than once: 4 purchases of 3 distinct items"},
		{"a user buys over the limit", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `ALTER TABLE user_sale_counts DROP CONSTRAINT user_sale_counts_limit`)
			mustSell(t, db, "alice", "code-alice-2", 4)
		}, "1 users bought more than the limit of 2"},
		{"a purchase names another buyer than its item", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE items SET sold_to_user_id = 'mallory' WHERE id = $1`, item(1))
		}, "1 purchases disagree with their item"},
		{"an item is sold without a purchase", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE items SET sold = true, sold_to_user_id = 'mallory', sold_at = now() WHERE id = $1`, item(5))
		}, "1 items are sold without a purchase"},
		{"more sold than the sale holds", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `ALTER TABLE sales DROP CONSTRAINT sales_items_sold`)
			mustExec(t, db, `UPDATE sales SET total_items = 2 WHERE id = $1`, saleID)
		}, "oversold: 3 items sold"},
		{"a buyer has no count row", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `DELETE FROM user_sale_counts WHERE user_id = 'bob'`)
		}, "1 users' user_sale_counts disagree with their purchases"},
		{"a count row is over its purchases", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE user_sale_counts SET items_bought = 2 WHERE user_id = 'bob'`)
		}, "1 users' user_sale_counts disagree with their purchases"},
		{"an item accepted into a purchased cart is not in its result", func(t *testing.T, db *sql.DB) {
			// bob's cart held items 3 (sold) and 4 (failed); item 5 was
			// accepted into it too, and its purchase never mentions it.
			mustExec(t, db, `INSERT INTO checkout_attempts (sale_id, user_id, item_id, checkout_code, outcome)
				SELECT $1, 'bob', unnest($2::bigint[]), 'code-bob-1', 'accepted'`, saleID, []int64{item(3), item(4), item(5)})
			mustExec(t, db, `UPDATE cart_purchases SET items_failed = 1, result = $2::jsonb WHERE checkout_code = $1`, "code-bob-1",
				fmt.Sprintf(`{"success":true,"items":[{"id":%d,"name":"item 3","sold":true},{"id":%d,"name":"item 4","sold":false}],"total_purchased":1,"failed_count":1}`, item(3), item(4)))
		}, "1 checkouts accepted into a purchased cart are not in its purchase result"},
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
