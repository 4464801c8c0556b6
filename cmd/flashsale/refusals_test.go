package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// answers tallies what a crowd's checkouts were answered.
type answers struct {
	mu        sync.Mutex
	sent      int
	limited   map[string]int // 429 rate_limited, by user
	shed      int            // 503 overloaded
	attempted int            // every other answer: an attempt row each
}

func (a *answers) checkout(t *testing.T, base, user string, item int64) (status int, code string) {
	_, status, code = checkout(t, base, user, item)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sent++
	switch {
	case status == http.StatusTooManyRequests && code == "rate_limited":
		a.limited[user]++
	case status == http.StatusServiceUnavailable && code == "overloaded":
		a.shed++
	case status == http.StatusOK || (status >= 400 && status < 500):
		a.attempted++
	default:
		t.Errorf("checkout of %s: %d %s", user, status, code)
	}
	return status, code
}

// TestRefusedCheckoutsArePersisted runs a crowd against an instance with a
// small user budget and a single admission slot, so that checkouts are
// refused before their decision both ways, then stops it gracefully: the
// counts in checkout_refusals are exactly the 429s each user was answered
// and the 503 overloaded answers, and with the attempt rows they account
// for every checkout sent.
func TestRefusedCheckoutsArePersisted(t *testing.T) {
	e := MustEnv(t, env{
		"SALE_ITEMS":            "200",
		"RATE_LIMIT_USER":       "1/h",
		"RATE_LIMIT_USER_BURST": "3",
		"MAX_INFLIGHT":          "1",
		"QUEUE_WAIT":            "1ms",
	})
	inst := MustStart(t, e)
	sale := MustCreateSale(t, inst.URL, 200, time.Hour)
	item := func(n int) int64 { return sale.ID*1_000_000 + int64(n%200) + 1 }
	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	a := &answers{limited: map[string]int{}}

	// One user at a time: the budget of 3 refuses each user's last two.
	for u := range 4 {
		for k := range 5 {
			a.checkout(t, inst.URL, fmt.Sprintf("serial%d", u), item(u*5+k))
		}
	}
	// A crowd: many are shed by the single slot, some refused by budget.
	var wg sync.WaitGroup
	for u := range 30 {
		wg.Go(func() {
			for k := range 8 {
				a.checkout(t, inst.URL, fmt.Sprintf("crowd%d", u), item(50+u*8+k))
			}
		})
	}
	wg.Wait()

	// The slot held for sure: a checkout waits on a cart row this test
	// locks, and checkouts meanwhile are shed.
	if st, code := a.checkout(t, inst.URL, "holder", item(190)); st != http.StatusOK {
		t.Fatalf("holder's first checkout: %d %s", st, code)
	}
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`SELECT 1 FROM carts WHERE user_id = 'holder' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { a.checkout(t, inst.URL, "holder", item(191)) })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var waiting int
		if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder's checkout never waited on the locked cart")
		}
	}
	for u := range 5 {
		a.checkout(t, inst.URL, fmt.Sprintf("shed%d", u), item(100+u))
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	inst.Stop(t)

	limitedUsers := 0
	for _, n := range a.limited {
		limitedUsers += n
	}
	t.Logf("%d checkouts: %d attempts, %d shed, %d refused by budget (%d users)", a.sent, a.attempted, a.shed, limitedUsers, len(a.limited))
	if a.shed == 0 || len(a.limited) == 0 {
		t.Fatalf("the crowd met no refusal of some kind: %d shed, %d users refused by budget", a.shed, len(a.limited))
	}
	rows, err := db.Query(`SELECT reason, user_id, sum(refused) FROM checkout_refusals GROUP BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stored := map[string]map[string]int{}
	total := 0
	for rows.Next() {
		var reason, user string
		var n int
		if err := rows.Scan(&reason, &user, &n); err != nil {
			t.Fatal(err)
		}
		if stored[reason] == nil {
			stored[reason] = map[string]int{}
		}
		stored[reason][user] = n
		total += n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got := stored["overloaded"][""]; got != a.shed || len(stored["overloaded"]) != 1 && a.shed > 0 {
		t.Errorf("checkout_refusals holds %v overloaded, clients were answered %d", stored["overloaded"], a.shed)
	}
	for user, n := range a.limited {
		if got := stored["rate_limited_user"][user]; got != n {
			t.Errorf("checkout_refusals holds %d rate-limited checkouts of %s, the user was answered %d", got, user, n)
		}
	}
	if total != a.shed+limitedUsers {
		t.Errorf("checkout_refusals counts %d refusals %v, clients were answered %d", total, stored, a.shed+limitedUsers)
	}
	var attempts int
	if err := db.QueryRow(`SELECT count(*) FROM checkout_attempts`).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != a.attempted {
		t.Errorf("%d attempt rows, clients were answered %d checkouts past the door", attempts, a.attempted)
	}
	if attempts+total != a.sent {
		t.Errorf("PostgreSQL accounts for %d of the %d checkouts sent", attempts+total, a.sent)
	}
	checkInvariants(t, db, sale.ID)
}
