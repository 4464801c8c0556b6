package main

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
)

type crowd struct {
	instances int
	users     int
	items     int
	loseRedis bool // delete the service's Redis data mid-crowd
}

// runCrowd sends loadgen's flash crowd at a fresh sale on real servers,
// checking every answer's wire format and code, sweeps what is left, and
// checks every guarantee and what the buyers were told in PostgreSQL.
func runCrowd(t *testing.T, c crowd) {
	e := MustEnv(t, env{"USER_ITEM_LIMIT": "10"})
	urls := make([]string, c.instances)
	for i := range urls {
		urls[i] = MustStart(t, e).URL
	}
	sale := MustCreateSale(t, urls[0], c.items, 10*time.Minute)
	l := loadgen.NewLedger(c.items)

	var flushed atomic.Bool
	var checkouts atomic.Int64
	rdb := testenv.MustRedisClient(t, e["REDIS_URL"])
	hc := &http.Client{Timeout: client.Timeout, Transport: wireChecked{t}}
	api := loadgen.NewClient(hc, urls...).Observed(func(ep loadgen.Endpoint, _, _ time.Time, res loadgen.Response) {
		switch ep {
		case loadgen.EndpointCheckout:
			switch res.Code {
			case "", "item_sold", "already_in_cart", "user_limit_reached":
			default:
				t.Errorf("checkout: %s", res)
			}
			if c.loseRedis && checkouts.Add(1) == int64(c.users) {
				n, err := testenv.DeletePrefix(context.Background(), rdb, e["REDIS_KEY_PREFIX"])
				if err != nil {
					t.Errorf("lose redis data: %v", err)
				}
				flushed.Store(true)
				t.Logf("deleted %d Redis keys of the service mid-crowd", n)
			}
		case loadgen.EndpointPurchase:
			if !res.OK() && res.Code != "purchase_in_progress" {
				t.Errorf("purchase: %s", res)
			}
		}
	})
	ids := make([]int64, c.items)
	for i := range ids {
		ids[i] = sale.ID*1_000_000 + int64(i+1)
	}
	loadgen.Crowd{
		Client: api, Pool: loadgen.NewItemPool(ids), Ledger: l, Users: c.users,
		WantMax: 14, DoubleFire: 0.2, Abandon: 1.0 / 7, Seed: 7, // some want more than the limit, some abandon their carts
	}.Run(context.Background())
	if c.loseRedis && !flushed.Load() {
		t.Fatal("the crowd ended before Redis data was lost")
	}

	// Abandoned carts hold no stock: fresh buyers take every item left.
	sweep(t, api, l, sale, c.items)

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
func sweep(t *testing.T, api *loadgen.Client, l *loadgen.Ledger, sale loadgen.Sale, total int) {
	t.Helper()
	ctx := context.Background()
	items, res := api.Items(ctx, sale.ID, 0, 1000)
	if !res.OK() {
		t.Fatalf("list items: %s", res)
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
			a, res := api.Checkout(ctx, user, id)
			l.CheckedOut(id, a, res)
			if res.OK() {
				code = a.Code
			} else {
				t.Errorf("sweeper checkout of unsold item %d: %s", id, res)
			}
		}
		if code != "" {
			if p, res := api.Purchase(ctx, code); res.OK() {
				l.Purchased(code, p)
			}
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
