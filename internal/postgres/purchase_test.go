package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/flashsale/flashsale/internal/flashsale"
)

func TestPurchaseSellsAndReplays(t *testing.T) {
	s := mustStores(t, "")
	sale := s.mustSale(t, 10, 3)
	ctx := context.Background()
	cart := s.mustCheckout(t, sale, "alice", 1, flashsale.NewCode(sale.ID))
	s.mustCheckout(t, sale, "alice", 2, cart.Code)
	// Bob buys item 2 first: alice's purchase fails it.
	bob := s.mustCheckout(t, sale, "bob", 2, flashsale.NewCode(sale.ID))
	if p, err := s.purchases.Purchase(ctx, sale.ID, bob.Code); err != nil || p.Result.TotalPurchased != 1 {
		t.Fatalf("bob's purchase: %+v, %v", p, err)
	}
	p, err := s.purchases.Purchase(ctx, sale.ID, cart.Code)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]bool{flashsale.ItemID(sale.ID, 1): true, flashsale.ItemID(sale.ID, 2): false}
	if got := soldFlags(p.Result); fmt.Sprint(got) != fmt.Sprint(want) || p.Replay || p.UserBought != 1 || p.UserID != "alice" {
		t.Fatalf("alice's purchase: %+v, want items %v", p, want)
	}
	for range 2 {
		r, err := s.purchases.Purchase(ctx, sale.ID, cart.Code)
		if err != nil || !r.Replay || fmt.Sprint(r.Result) != fmt.Sprint(p.Result) || r.UserBought != 1 {
			t.Fatalf("replay: %+v, %v; want %+v", r, err, p.Result)
		}
	}
	for query, want := range map[string]int{
		`SELECT count(*) FROM purchases`: 2,
		`SELECT items_sold FROM sales`:   2,
		`SELECT count(*) FROM carts WHERE state = 'purchased' AND items_purchased = 1 AND items_failed = 1`: 1,
		`SELECT items_bought FROM user_sale_counts WHERE user_id = 'alice'`:                                 1,
	} {
		if got := s.count(t, query); got != want {
			t.Errorf("%s = %d, want %d", query, got, want)
		}
	}
}

func TestPurchaseRefusals(t *testing.T) {
	s := mustStores(t, "")
	ctx := context.Background()
	sale := s.mustSale(t, 10, 3)
	cart := s.mustCheckout(t, sale, "alice", 1, flashsale.NewCode(sale.ID))
	other := s.mustSale(t, 10, 3) // a second sale, a second later
	for name, tt := range map[string]struct {
		sale int64
		code string
		want string
	}{
		"unknown code":               {sale.ID, flashsale.NewCode(sale.ID), flashsale.ECodeNotFound},
		"code asked of another sale": {other.ID, cart.Code, flashsale.ECodeNotFound},
	} {
		if _, err := s.purchases.Purchase(ctx, tt.sale, tt.code); flashsale.ErrorCode(err) != tt.want {
			t.Errorf("%s: %v, want %s", name, err, tt.want)
		}
	}
	if _, err := s.sql.Exec(`UPDATE sales SET started_at = now() - interval '2 hours', ended_at = now() - interval '1 hour' WHERE id = $1`, sale.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.purchases.Purchase(ctx, sale.ID, cart.Code); flashsale.ErrorCode(err) != flashsale.ESaleEnded {
		t.Errorf("purchase after the sale: %v, want %s", err, flashsale.ESaleEnded)
	}
	if got := s.count(t, `SELECT count(*) FROM carts WHERE state = 'open'`); got != 1 {
		t.Errorf("refused purchases closed carts: %d open, want 1", got)
	}
}

// TestPurchaseBatches: many carts and repeated codes purchased at once, in
// concurrent batches; every user stays within the limit and each code's
// answers agree.
func TestPurchaseBatches(t *testing.T) {
	s := mustStores(t, "")
	ctx := context.Background()
	const users = 30
	sale := s.mustSale(t, 20, 2)
	codes := make([]string, users)
	for u := range users {
		code := flashsale.NewCode(sale.ID)
		for i := range 3 { // three wanted items, limit 2: at most 2 of them bought
			if _, err := s.checkout(t, sale, fmt.Sprintf("u%d", u), (u+i)%20+1, code); err != nil && flashsale.ErrorCode(err) != flashsale.EUserLimit {
				t.Fatal(err)
			}
		}
		codes[u] = code
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := make([][]flashsale.PurchaseResult, users)
	for u := range users {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p, err := s.purchases.Purchase(ctx, sale.ID, codes[u])
				if err != nil {
					t.Errorf("purchase: %v", err)
					return
				}
				mu.Lock()
				results[u] = append(results[u], p.Result)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	sold := 0
	for u, rs := range results {
		for _, r := range rs[1:] {
			if fmt.Sprint(r) != fmt.Sprint(rs[0]) {
				t.Errorf("user %d: answers differ: %+v and %+v", u, rs[0], r)
			}
		}
		sold += rs[0].TotalPurchased
	}
	if sold != 20 || s.count(t, `SELECT count(*) FROM purchases`) != 20 || s.count(t, `SELECT items_sold FROM sales`) != 20 {
		t.Errorf("%d items reported sold, want all 20 recorded once", sold)
	}
	if got := s.count(t, `SELECT count(*) FROM user_sale_counts WHERE items_bought > 2`); got != 0 {
		t.Errorf("%d users over the limit", got)
	}
}

// TestPurchaseBatchFallsBackOneByOne: a batch the database rejects for one
// cart's sake is sold cart by cart, so the others succeed.
func TestPurchaseBatchFallsBackOneByOne(t *testing.T) {
	s := mustStores(t, "")
	sale := s.mustSale(t, 100, 10)
	s.refuseMallory(t, "purchases")
	codes := make([]string, 40)
	for i := range codes {
		user := fmt.Sprintf("u%d", i)
		if i%10 == 0 {
			user = "mallory"
		}
		codes[i] = s.mustCheckout(t, sale, user, i+1, flashsale.NewCode(sale.ID)).Code
	}
	var wg sync.WaitGroup
	errs := make([]error, len(codes))
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.purchases.Purchase(context.Background(), sale.ID, codes[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%10 == 0 && err == nil {
			t.Errorf("mallory's purchase %d went through", i)
		}
	}
	if got := s.count(t, `SELECT count(*) FROM purchases`); got != 36 {
		t.Errorf("%d purchases, want 36", got)
	}
}

// TestSaleStateFromCartRows: the cache is rebuilt from the cart rows.
func TestSaleStateFromCartRows(t *testing.T) {
	s := mustStores(t, "")
	ctx := context.Background()
	sale := s.mustSale(t, 10, 10)
	first := s.mustCheckout(t, sale, "alice", 1, flashsale.NewCode(sale.ID))
	if _, err := s.purchases.Purchase(ctx, sale.ID, first.Code); err != nil {
		t.Fatal(err)
	}
	second := s.mustCheckout(t, sale, "alice", 2, first.Code)
	bob := s.mustCheckout(t, sale, "bob", 3, flashsale.NewCode(sale.ID))
	st, err := s.purchases.SaleState(ctx, sale.ID)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(st.SoldSeqs) != "[1]" || st.Bought["alice"] != 1 {
		t.Errorf("sold %v, bought %v", st.SoldSeqs, st.Bought)
	}
	if st.Open["alice"] != second.Code || st.Open["bob"] != bob.Code || len(st.Open) != 2 {
		t.Errorf("open carts %v", st.Open)
	}
	if len(st.Codes) != 3 || st.Codes[first.Code] != "alice" || st.Codes[second.Code] != "alice" || st.Codes[bob.Code] != "bob" {
		t.Errorf("codes %v", st.Codes)
	}
}
