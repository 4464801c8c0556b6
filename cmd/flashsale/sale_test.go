package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
)

func TestInstancesRacingCreateOneSale(t *testing.T) {
	e := MustEnv(t, env{"SALE_ITEMS": "2000", "SALE_DURATION": "1h"})
	AwayFromTheHour(20 * time.Second)
	var wg sync.WaitGroup
	insts := make([]*instance, 3)
	for i := range insts {
		wg.Go(func() { insts[i] = MustStart(t, e) })
	}
	wg.Wait()
	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	rows, err := db.QueryContext(context.Background(), `SELECT s.id, s.started_at, s.ended_at, s.total_items,
		(SELECT count(*) FROM items i WHERE i.sale_id = s.id) FROM sales s ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var starts []time.Time
	for rows.Next() {
		var id int64
		var start, end time.Time
		var total, items int
		if err := rows.Scan(&id, &start, &end, &total, &items); err != nil {
			t.Fatal(err)
		}
		if items != 2000 || total != 2000 {
			t.Errorf("sale %d has %d items, total_items %d", id, items, total)
		}
		if start.Unix() != id || end.Sub(start) != time.Hour || start.Minute() != 0 || start.Second() != 0 {
			t.Errorf("sale %d: %s to %s is not an hourly slot", id, start, end)
		}
		starts = append(starts, start)
	}
	// The current hour's sale and the next one, each once.
	if len(starts) != 2 || starts[1].Sub(starts[0]) != time.Hour {
		t.Fatalf("sales start at %v, want the current and the next hour", starts)
	}
	var active loadgen.Sale
	for _, inst := range insts {
		if st, code := call(t, http.MethodGet, inst.URL+"/sales/active", nil, &active); st != http.StatusOK {
			t.Fatalf("active sale: %d %s", st, code)
		}
		if !active.StartedAt.Equal(starts[0]) {
			t.Errorf("active sale starts %s, want %s", active.StartedAt, starts[0])
		}
	}
}

func TestSaleRotatesWithoutGap(t *testing.T) {
	e := MustEnv(t, env{"SALE_ITEMS": "5", "SALE_DURATION": "2s"})
	inst := MustStart(t, e)
	seen := map[int64]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var s loadgen.Sale
		if st, code := call(t, http.MethodGet, inst.URL+"/sales/active", nil, &s); st != http.StatusOK {
			t.Fatalf("no active sale at %s: %d %s", time.Now().Format(time.RFC3339Nano), st, code)
		}
		if s.EndedAt.Sub(s.StartedAt) != 2*time.Second || s.StartedAt.UnixMilli()%2000 != 0 {
			t.Fatalf("sale %+v is not a 2s slot", s)
		}
		seen[s.ID] = true
		time.Sleep(50 * time.Millisecond)
	}
	if len(seen) < 2 {
		t.Errorf("saw sales %v in 5s of 2s slots", seen)
	}
}

func TestPurchaseOnceUnderReplayAndConcurrency(t *testing.T) {
	e := MustEnv(t, nil)
	a, b := MustStart(t, e), MustStart(t, e)
	sale := MustCreateSale(t, a.URL, 50, 10*time.Minute)
	var code string
	for i := int64(1); i <= 3; i++ {
		r, st, ec := checkout(t, a.URL, "buyer", sale.ID*1_000_000+i)
		if st != http.StatusOK {
			t.Fatalf("checkout: %d %s", st, ec)
		}
		if code != "" && r.Code != code {
			t.Fatalf("second checkout opened a new cart")
		}
		code = r.Code
		if r.ItemsCount != int(i) {
			t.Errorf("items_count %d, want %d", r.ItemsCount, i)
		}
	}
	const n = 20
	results := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			base := []string{a.URL, b.URL}[i%2]
			r, st, ec := purchase(t, base, code)
			results[i] = fmt.Sprintf("%d %s %+v", st, ec, r)
		})
	}
	wg.Wait()
	// Every purchase answers the one result; one that waited longer than
	// the service waits (2 s) for a concurrent purchase of the code, on a
	// loaded machine, may answer 409 instead, which sells nothing.
	var first string
	for i, r := range results {
		switch {
		case strings.HasPrefix(r, "409 purchase_in_progress "):
		case first == "" && strings.HasPrefix(r, "200 "):
			first = r
		case r != first:
			t.Errorf("purchase %d answered %s, an earlier one %s", i, r, first)
		}
	}
	if first == "" {
		t.Errorf("no purchase answered 200: %v", results)
	}
	r, _, _ := purchase(t, b.URL, code)
	if r.TotalPurchased != 3 || r.FailedCount != 0 || !r.Success || len(r.Items) != 3 {
		t.Errorf("replay answered %+v", r)
	}
	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	if sold := checkInvariants(t, db, sale.ID); sold != 3 {
		t.Errorf("sold %d items, want 3", sold)
	}
	// A purchased cart is closed: the next checkout opens a new one.
	r2, st, _ := checkout(t, a.URL, "buyer", sale.ID*1_000_000+4)
	if st != http.StatusOK || r2.Code == code || r2.ItemsCount != 1 {
		t.Errorf("checkout after purchase: %d %+v", st, r2)
	}
}

func TestCheckoutRules(t *testing.T) {
	e := MustEnv(t, env{"USER_ITEM_LIMIT": "3"})
	inst := MustStart(t, e)
	sale := MustCreateSale(t, inst.URL, 20, 10*time.Minute)
	item := func(i int64) int64 { return sale.ID*1_000_000 + i }
	expect := func(user string, id int64, status int, code string) checkoutResp {
		t.Helper()
		r, st, ec := checkout(t, inst.URL, user, id)
		if st != status || ec != code {
			t.Errorf("checkout %d by %s: %d %s, want %d %s", id, user, st, ec, status, code)
		}
		return r
	}
	c := expect("u1", item(1), 200, "")
	expect("u1", item(1), 409, "already_in_cart")
	expect("u1", item(2), 200, "")
	expect("u1", item(3), 200, "")
	expect("u1", item(4), 422, "user_limit_reached")
	expect("u1", item(21), 404, "item_not_found")
	expect("u1", 999_000_001, 404, "item_not_found")
	if r, st, ec := purchase(t, inst.URL, c.Code); st != 200 || r.TotalPurchased != 3 {
		t.Fatalf("purchase: %d %s %+v", st, ec, r)
	}
	expect("u2", item(1), 409, "item_sold")
	expect("u1", item(5), 422, "user_limit_reached")
	// Another user's cart holding an item does not hold its stock.
	hold := expect("u3", item(6), 200, "")
	won := expect("u4", item(6), 200, "")
	if r, _, _ := purchase(t, inst.URL, won.Code); r.TotalPurchased != 1 {
		t.Errorf("u4 could not buy an item u3 only checked out: %+v", r)
	}
	if r, st, _ := purchase(t, inst.URL, hold.Code); st != 200 || r.Success || r.FailedCount != 1 || r.Items[0].Sold {
		t.Errorf("u3 bought an item sold to u4: %d %+v", st, r)
	}
	// Codes: unknown, forged for another sale, malformed.
	for name, code := range map[string]string{
		"unknown code of the sale":   flashsale.NewCode(sale.ID),
		"code of a sale that is not": flashsale.NewCode(sale.ID + 7),
		"code of u1 altered by one":  c.Code[:31] + map[bool]string{true: "B", false: "A"}[c.Code[31] == 'A'],
	} {
		if _, st, ec := purchase(t, inst.URL, code); st != 404 || ec != "code_not_found" {
			t.Errorf("%s: %d %s", name, st, ec)
		}
	}
	if _, st, ec := purchase(t, inst.URL, strings.Repeat("A", 32)); st != 400 || ec != "invalid_code" {
		t.Errorf("code naming no sale: %d %s", st, ec)
	}
	time.Sleep(time.Second) // admin sales are keyed by their start second
	// A sale long enough for one checkout on a busy machine, then over.
	ended := MustCreateSale(t, inst.URL, 5, 5*time.Second)
	r := expect("u5", ended.ID*1_000_000+1, 200, "")
	time.Sleep(time.Until(ended.EndedAt) + 100*time.Millisecond)
	expect("u5", ended.ID*1_000_000+2, 410, "sale_ended")
	if _, st, ec := purchase(t, inst.URL, r.Code); st != 410 || ec != "sale_ended" {
		t.Errorf("purchase after the sale: %d %s", st, ec)
	}
	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	checkInvariants(t, db, sale.ID)
	checkInvariants(t, db, ended.ID)
}
