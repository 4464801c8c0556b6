package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

func TestCheckoutOpensAndFillsOneCart(t *testing.T) {
	s := mustStores(t, "")
	sale := s.mustSale(t, 10, 3)
	code := flashsale.NewCode(sale.ID)
	if add := s.mustCheckout(t, sale, "alice", 1, code); add.Code != code || add.ItemsCount != 1 {
		t.Fatalf("first checkout: %+v, want the cache's code %s with 1 item", add, code)
	}
	// The cache may name another code (it lost the cart): the open cart wins.
	if add := s.mustCheckout(t, sale, "alice", 2, flashsale.NewCode(sale.ID)); add.Code != code || add.ItemsCount != 2 {
		t.Fatalf("second checkout: %+v, want cart %s with 2 items", add, code)
	}
	if _, err := s.checkout(t, sale, "alice", 2, code); flashsale.ErrorCode(err) != flashsale.EAlreadyInCart {
		t.Fatalf("same item again: %v, want %s", err, flashsale.EAlreadyInCart)
	}
	s.mustCheckout(t, sale, "alice", 3, code)
	if _, err := s.checkout(t, sale, "alice", 4, code); flashsale.ErrorCode(err) != flashsale.EUserLimit {
		t.Fatalf("fourth item with a limit of 3: %v, want %s", err, flashsale.EUserLimit)
	}
	for query, want := range map[string]int{
		`SELECT count(*) FROM carts`: 1,
		`SELECT count(*) FROM checkout_attempts WHERE outcome = 'accepted' AND checkout_code IS NOT NULL`:    3,
		`SELECT count(*) FROM checkout_attempts WHERE outcome = 'already_in_cart' AND checkout_code IS NULL`: 1,
		`SELECT count(*) FROM checkout_attempts WHERE outcome = 'user_limit_reached'`:                        1,
	} {
		if got := s.count(t, query); got != want {
			t.Errorf("%s = %d, want %d", query, got, want)
		}
	}
	if got := s.count(t, `SELECT count(*) FROM carts WHERE state = 'open' AND item_ids = ARRAY[$1::bigint, $2, $3]`,
		flashsale.ItemID(sale.ID, 1), flashsale.ItemID(sale.ID, 2), flashsale.ItemID(sale.ID, 3)); got != 1 {
		t.Errorf("the cart does not hold items 1, 2, 3 in order")
	}
}

func TestCheckoutRecordsRefusals(t *testing.T) {
	s := mustStores(t, "")
	sale := s.mustSale(t, 10, 3)
	for _, a := range []flashsale.Attempt{
		{SaleID: sale.ID, UserID: "bob", ItemID: flashsale.ItemID(sale.ID, 1), Outcome: flashsale.EItemSold},
		{UserID: "bob", ItemID: 42, Outcome: flashsale.EItemNotFound},
	} {
		if add, err := s.carts.Checkout(context.Background(), a); err != nil || add != (flashsale.CartAdd{}) {
			t.Fatalf("refused attempt %+v: %+v, %v", a, add, err)
		}
	}
	if got := s.count(t, `SELECT count(*) FROM checkout_attempts WHERE checkout_code IS NULL AND outcome IN ('item_sold', 'item_not_found')`); got != 2 {
		t.Errorf("%d refused attempts recorded, want 2", got)
	}
	if got := s.count(t, `SELECT count(*) FROM carts`); got != 0 {
		t.Errorf("%d carts opened by refused checkouts", got)
	}
}

// TestCheckoutAfterPurchaseOpensNewCart: a cache that still names a
// purchased cart does not put items in it: the store opens a new cart with
// a fresh code.
func TestCheckoutAfterPurchaseOpensNewCart(t *testing.T) {
	s := mustStores(t, "")
	sale := s.mustSale(t, 10, 10)
	first := s.mustCheckout(t, sale, "carol", 1, flashsale.NewCode(sale.ID))
	if _, err := s.purchases.Purchase(context.Background(), sale.ID, first.Code); err != nil {
		t.Fatal(err)
	}
	add := s.mustCheckout(t, sale, "carol", 2, first.Code)
	if add.Code == first.Code || add.ItemsCount != 1 {
		t.Fatalf("checkout naming the purchased cart: %+v, want a new cart", add)
	}
	p, err := s.purchases.Purchase(context.Background(), sale.ID, first.Code)
	if err != nil || !p.Replay || len(p.Result.Items) != 1 {
		t.Fatalf("replay of the first cart: %+v, %v", p, err)
	}
}

// TestCheckoutRacesPurchase hammers one user's cart with checkouts while it
// is being purchased: every item acknowledged with the purchased cart's code
// is in that cart's result, and every other acknowledged item is in a cart
// opened after it.
func TestCheckoutRacesPurchase(t *testing.T) {
	raceCheckoutsAndPurchases(t, mustStores(t, ""))
}

// TestIdentifiersCollateC migrates a database created with a libc locale,
// as the official image's and most managed servers' are: user ids and codes
// still compare byte by byte (migration 00004), and checkouts racing
// purchases, whose statements lock carts in (sale, user) order, lose nothing.
func TestIdentifiersCollateC(t *testing.T) {
	s := mustStores(t, testenv.MustLocaleDatabase(t, "C.UTF-8"))
	ctx := context.Background()
	if err := s.db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.count(t, `SELECT count(*) FROM pg_database WHERE datname = current_database() AND datcollate = 'C.UTF-8'`); got != 1 {
		t.Fatal("the database's collation is not C.UTF-8")
	}
	rows, err := s.sql.QueryContext(ctx, `
SELECT c.relname || '.' || a.attname, coalesce(co.collname, '')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
LEFT JOIN pg_collation co ON co.oid = a.attcollation
WHERE a.atttypid = 'text'::regtype AND a.attnum > 0 AND NOT a.attisdropped
  AND (a.attname LIKE '%user_id' OR a.attname LIKE '%code')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var column, collation string
		if err := rows.Scan(&column, &collation); err != nil {
			t.Fatal(err)
		}
		n++
		if collation != "C" {
			t.Errorf("%s collates with %q, want C", column, collation)
		}
	}
	if err := rows.Err(); err != nil || n < 8 {
		t.Fatalf("%d identifier columns checked (%v)", n, err)
	}
	raceCheckoutsAndPurchases(t, s)
}

// raceCheckoutsAndPurchases has users check out more items while their
// first cart is being purchased: every acknowledged item is in its cart's
// purchase or in a new open cart.
func raceCheckoutsAndPurchases(t *testing.T, s *stores) {
	const users, items = 20, 6
	sale := s.mustSale(t, users*items, items)
	ctx := context.Background()
	var wg sync.WaitGroup
	type ack struct {
		user string
		item int64
		code string
	}
	var mu sync.Mutex
	var acks []ack
	purchased := map[string]flashsale.PurchaseResult{}
	for u := range users {
		user := fmt.Sprintf("u%d", u)
		first := s.mustCheckout(t, sale, user, u*items+1, flashsale.NewCode(sale.ID))
		mu.Lock()
		acks = append(acks, ack{user, flashsale.ItemID(sale.ID, u*items+1), first.Code})
		mu.Unlock()
		wg.Add(1)
		go func() { // the purchase, racing the checkouts below
			defer wg.Done()
			p, err := s.purchases.Purchase(ctx, sale.ID, first.Code)
			if err != nil {
				t.Errorf("purchase: %v", err)
				return
			}
			mu.Lock()
			purchased[first.Code] = p.Result
			mu.Unlock()
		}()
		for i := 2; i <= items; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				add, err := s.checkout(t, sale, user, u*items+i, first.Code)
				if err != nil {
					t.Errorf("checkout: %v", err)
					return
				}
				mu.Lock()
				acks = append(acks, ack{user, flashsale.ItemID(sale.ID, u*items+i), add.Code})
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	lost := 0
	for _, a := range acks {
		res, ok := purchased[a.code]
		if !ok {
			// A new cart: it must hold the item, and be open.
			if s.count(t, `SELECT count(*) FROM carts WHERE code = $1 AND state = 'open' AND $2 = ANY(item_ids)`, a.code, a.item) != 1 {
				lost++
			}
			continue
		}
		if _, in := soldFlags(res)[a.item]; !in {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged items are neither in their cart's purchase nor in an open cart", lost, len(acks))
	}
	if got := s.count(t, `SELECT count(*) FROM (SELECT user_id FROM carts WHERE state = 'open' GROUP BY sale_id, user_id HAVING count(*) > 1) d`); got != 0 {
		t.Errorf("%d users with several open carts", got)
	}
}

// TestCheckoutBatchFallsBackOneByOne: a batch the database rejects for one
// checkout's sake is written checkout by checkout, so the others succeed.
func TestCheckoutBatchFallsBackOneByOne(t *testing.T) {
	s := mustStores(t, "")
	sale := s.mustSale(t, 100, 10)
	s.refuseMallory(t, "checkout_attempts")
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("u%d", i)
			if i%10 == 0 {
				user = "mallory"
			}
			_, errs[i] = s.checkout(t, sale, user, i+1, flashsale.NewCode(sale.ID))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%10 == 0) != (err != nil) {
			t.Errorf("checkout %d: %v", i, err)
		}
	}
	if got := s.count(t, `SELECT count(*) FROM checkout_attempts`); got != 36 {
		t.Errorf("%d attempts recorded, want 36", got)
	}
	if got := s.count(t, `SELECT count(*) FROM carts WHERE user_id = 'mallory'`); got != 0 {
		t.Errorf("the refused checkouts left %d carts", got)
	}
}

// TestCheckoutOfUserAtLimit: a user whose purchases reached the limit (the
// cache may not know it yet) is refused by the store, and no item lands in
// the cart the checkout opened.
func TestCheckoutOfUserAtLimit(t *testing.T) {
	s := mustStores(t, "")
	sale := s.mustSale(t, 10, 1)
	first := s.mustCheckout(t, sale, "dave", 1, flashsale.NewCode(sale.ID))
	if _, err := s.purchases.Purchase(context.Background(), sale.ID, first.Code); err != nil {
		t.Fatal(err)
	}
	if _, err := s.checkout(t, sale, "dave", 2, first.Code); flashsale.ErrorCode(err) != flashsale.EUserLimit {
		t.Fatalf("checkout past the limit: %v, want %s", err, flashsale.EUserLimit)
	}
	if got := s.count(t, `SELECT count(*) FROM carts WHERE user_id = 'dave' AND state = 'open' AND cardinality(item_ids) > 0`); got != 0 {
		t.Errorf("%d open carts of dave hold items", got)
	}
	if got := s.count(t, `SELECT count(*) FROM checkout_attempts WHERE user_id = 'dave' AND outcome = 'user_limit_reached'`); got != 1 {
		t.Errorf("%d refused attempts recorded, want 1", got)
	}
}

// TestConcurrentFirstCheckoutsOfOneUser: the checkouts of a user, sent
// together by clients that work through the users one after the other, land
// in concurrent batches that each open the user's cart with the code the
// cache gave out for it. One opens it; the others find it and add to it: no
// checkout fails, and each user has one cart with every item.
func TestConcurrentFirstCheckoutsOfOneUser(t *testing.T) {
	s := mustStores(t, "")
	const users, perUser, clients = 1000, 5, 32
	sale := s.mustSale(t, users*perUser, perUser)
	codes := make([]string, users)
	for u := range codes {
		codes[u] = flashsale.NewCode(sale.ID)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, users*perUser)
	for range clients {
		wg.Go(func() {
			for n := int(next.Add(1)) - 1; n < users*perUser; n = int(next.Add(1)) - 1 {
				u := n / perUser
				add, err := s.checkout(t, sale, fmt.Sprint("user-", u), n+1, codes[u])
				if err == nil && add.Code != codes[u] {
					err = fmt.Errorf("user %d: cart %s, want the cache's %s", u, add.Code, codes[u])
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := s.count(t, `SELECT count(*) FROM carts WHERE cardinality(item_ids) = $1`, perUser); got != users {
		t.Errorf("%d carts hold %d items, want %d", got, perUser, users)
	}
}
