package main

import (
	"context"
	"database/sql"
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

// ledger is what the crowd's clients were told.
type ledger struct {
	mu          sync.Mutex
	checkouts   int                      // well-formed checkout requests answered, but for 503s
	unavailable int                      // checkouts answered 503
	accepted    map[string]map[int64]int // code -> item -> times accepted
	purchases   map[string]purchaseResp  // code -> a 200 purchase answer
	replays     int
}

func newLedger() *ledger {
	return &ledger{accepted: map[string]map[int64]int{}, purchases: map[string]purchaseResp{}}
}

func (l *ledger) checkout(t testing.TB, base, user string, item int64) (checkoutResp, string) {
	r, st, code := checkout(t, base, user, item)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case 0:
	case http.StatusServiceUnavailable:
		l.unavailable++ // its attempt may or may not have been recorded
	default:
		l.checkouts++
	}
	if st == http.StatusOK {
		if l.accepted[r.Code] == nil {
			l.accepted[r.Code] = map[int64]int{}
		}
		l.accepted[r.Code][item]++
	}
	switch code {
	case "", "item_sold", "already_in_cart", "user_limit_reached":
	default:
		t.Errorf("checkout %d by %s: %d %s", item, user, st, code)
	}
	return r, code
}

func (l *ledger) purchase(t testing.TB, base, code string) {
	r, st, ec := purchase(t, base, code)
	if st != http.StatusOK {
		if ec != "purchase_in_progress" {
			t.Errorf("purchase: %d %s", st, ec)
		}
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.purchases[code]; ok {
		l.replays++
		if fmt.Sprint(prev) != fmt.Sprint(r) {
			t.Errorf("purchase of one code answered differently:\n%+v\n%+v", prev, r)
		}
		return
	}
	l.purchases[code] = r
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
	l := newLedger()

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
					r, ec := l.checkout(t, base(u+rng.IntN(3)), user, item)
					if ec == "" {
						code = r.Code
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
						pw.Go(func() { l.purchase(t, base(u+i), code) })
					}
					pw.Wait()
				} else {
					l.purchase(t, base(u), code)
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
	checkLedger(t, db, l, sale.ID)
	t.Logf("%d checkouts, %d carts accepted, %d purchases (+%d replays)", l.checkouts, len(l.accepted), len(l.purchases), l.replays)
}

// sweep buys every unsold item with fresh users, ten items per user.
func sweep(t *testing.T, l *ledger, base string, sale loadgen.Sale, total int) {
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
			if r, ec := l.checkout(t, base, user, id); ec == "" {
				code = r.Code
			} else {
				t.Errorf("sweeper checkout of unsold item %d: %s", id, ec)
			}
		}
		if code != "" {
			l.purchase(t, base, code)
		}
	}
	t.Logf("swept %d unsold items", len(unsold))
}

// checkLedger verifies that what clients were told is in PostgreSQL: every
// answered checkout has its attempt row, every accepted one its cart row, and
// every item a 200 purchase reported sold is a purchase of that cart.
func checkLedger(t *testing.T, db *sql.DB, l *ledger, saleID int64) {
	t.Helper()
	ctx := context.Background()
	var rows int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM checkout_attempts WHERE sale_id = $1`, saleID).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows < l.checkouts || rows > l.checkouts+l.unavailable {
		t.Errorf("%d checkout attempts persisted, %d answered (+%d answered 503)", rows, l.checkouts, l.unavailable)
	}
	for code, items := range l.accepted {
		for item, n := range items {
			var got int
			if err := db.QueryRowContext(ctx, `SELECT count(*) FROM checkout_attempts
				WHERE checkout_code = $1 AND item_id = $2 AND outcome = 'accepted'`, code, item).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != n {
				t.Errorf("item %d accepted %d times into a cart, %d rows", item, n, got)
			}
		}
	}
	acked := 0
	for code, r := range l.purchases {
		if r.TotalPurchased+r.FailedCount != len(r.Items) || r.Success != (r.TotalPurchased > 0) {
			t.Errorf("inconsistent purchase answer %+v", r)
		}
		for _, it := range r.Items {
			if !it.Sold {
				continue
			}
			acked++
			var got string
			if err := db.QueryRowContext(ctx, `SELECT checkout_code FROM purchases WHERE item_id = $1`, it.ID).Scan(&got); err != nil {
				t.Errorf("acknowledged sale of item %d not in purchases: %v", it.ID, err)
			} else if got != code {
				t.Errorf("item %d acknowledged to one cart, sold to another", it.ID)
			}
		}
	}
	var sold int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM purchases WHERE sale_id = $1`, saleID).Scan(&sold); err != nil {
		t.Fatal(err)
	}
	if acked != sold {
		t.Errorf("%d items acknowledged sold, %d purchases", acked, sold)
	}
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
