package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
)

// crowdCheckout checks out item for user at base through the harness, which
// checks every answer's wire format, notes the answer in l and flags an
// answer a crowd must not get.
func crowdCheckout(t testing.TB, l *loadgen.Ledger, base, user string, item int64) (code, errCode string) {
	var a loadgen.CheckoutAnswer
	st, ec := call(t, http.MethodPost, fmt.Sprintf("%s/checkout?user_id=%s&id=%d", base, user, item), nil, &a)
	l.CheckedOut(item, a, loadgen.Response{Status: st, Code: ec})
	switch ec {
	case "", "item_sold", "already_in_cart", "user_limit_reached":
	default:
		t.Errorf("checkout %d by %s: %d %s", item, user, st, ec)
	}
	return a.Code, ec
}

// crowdPurchase purchases code at base and notes a 200 answer in l.
func crowdPurchase(t testing.TB, l *loadgen.Ledger, base, code string) {
	var a loadgen.PurchaseAnswer
	st, ec := call(t, http.MethodPost, base+"/purchase?code="+code, nil, &a)
	if st != http.StatusOK {
		if ec != "purchase_in_progress" {
			t.Errorf("purchase: %d %s", st, ec)
		}
		return
	}
	l.Purchased(code, a)
}

type crowd struct {
	instances int
	users     int
	items     int
	loseRedis bool // delete the service's Redis data mid-crowd
}

// runCrowd sends a crowd of buyers at a fresh sale on real servers, sweeps
// what is left, and checks every guarantee in PostgreSQL.
func runCrowd(t *testing.T, c crowd) {
	e := MustEnv(t, env{"USER_ITEM_LIMIT": "10"})
	insts := make([]*instance, c.instances)
	for i := range insts {
		insts[i] = MustStart(t, e)
	}
	sale := MustCreateSale(t, insts[0].URL, c.items, 10*time.Minute)
	base := func(i int) string { return insts[i%len(insts)].URL }
	l := loadgen.NewLedger(c.items)

	var flushed atomic.Bool
	var sent atomic.Int64
	rdb := testenv.MustRedisClient(t, e["REDIS_URL"])
	var wg sync.WaitGroup
	for u := range c.users {
		wg.Go(func() {
			user := fmt.Sprintf("crowd-%d", u)
			rng := rand.New(rand.NewPCG(uint64(u), 7))
			want := 1 + rng.IntN(14) // some want more than the limit
			for range 2 {
				var code string
				for range want {
					item := sale.ID*1_000_000 + int64(1+rng.IntN(c.items))
					if cc, ec := crowdCheckout(t, l, base(u+rng.IntN(3)), user, item); ec == "" {
						code = cc
					}
					if c.loseRedis && sent.Add(1) == int64(c.users) && flushed.CompareAndSwap(false, true) {
						n, err := testenv.DeletePrefix(context.Background(), rdb, e["REDIS_KEY_PREFIX"])
						if err != nil {
							t.Errorf("lose redis data: %v", err)
						}
						t.Logf("deleted %d Redis keys of the service mid-crowd", n)
					}
				}
				if code == "" || u%7 == 3 { // some abandon their carts
					continue
				}
				if u%5 == 0 { // the same code fired twice at once
					var pw sync.WaitGroup
					for i := range 2 {
						pw.Go(func() { crowdPurchase(t, l, base(u+i), code) })
					}
					pw.Wait()
				} else {
					crowdPurchase(t, l, base(u), code)
				}
			}
		})
	}
	wg.Wait()
	if c.loseRedis && !flushed.Load() {
		t.Fatal("the crowd ended before Redis data was lost")
	}

	// Abandoned carts hold no stock: fresh buyers take every item left.
	sweep(t, l, insts[0].URL, sale, c.items)

	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	if sold := checkInvariants(t, db, sale.ID); sold != c.items {
		t.Errorf("sold %d of %d items although buyers wanted all", sold, c.items)
	}
	check, err := l.Check(context.Background(), db, sale.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range check.Problems {
		t.Error(p)
	}
	t.Log(check)
}

// sweep buys every unsold item with fresh users, ten items per user.
func sweep(t *testing.T, l *loadgen.Ledger, base string, sale loadgen.Sale, total int) {
	t.Helper()
	var items []itemResp
	if st, code := call(t, http.MethodGet, fmt.Sprintf("%s/sales/%d/items?limit=1000", base, sale.ID), nil, &items); st != http.StatusOK {
		t.Fatalf("list items: %d %s", st, code)
	}
	if len(items) != total {
		t.Fatalf("listed %d items, want %d", len(items), total)
	}
	var unsold []int64
	for _, it := range items {
		if !it.Sold {
			unsold = append(unsold, it.ID)
		}
	}
	for i := 0; i < len(unsold); i += 10 {
		user := fmt.Sprintf("sweeper-%d", i)
		var code string
		for _, id := range unsold[i:min(i+10, len(unsold))] {
			if cc, ec := crowdCheckout(t, l, base, user, id); ec == "" {
				code = cc
			} else {
				t.Errorf("sweeper checkout of unsold item %d: %s", id, ec)
			}
		}
		if code != "" {
			crowdPurchase(t, l, base, code)
		}
	}
	t.Logf("swept %d unsold items", len(unsold))
}

func TestCrowd(t *testing.T) {
	runCrowd(t, crowd{instances: 1, users: 500, items: 300})
}

func TestCrowdLosesRedisData(t *testing.T) {
	runCrowd(t, crowd{instances: 1, users: 500, items: 300, loseRedis: true})
}

func TestCrowdThreeInstances(t *testing.T) {
	runCrowd(t, crowd{instances: 3, users: 500, items: 300})
}
