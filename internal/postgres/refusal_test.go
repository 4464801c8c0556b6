package postgres_test

import (
	"testing"
	"time"

	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/postgres"
)

// refusalStore replaces s.carts by a cart store with opts, whose periodic
// write of refusal counts waits an hour unless opts say otherwise.
func (s *stores) refusalStore(t *testing.T, opts postgres.CartStoreOptions) *postgres.CartStore {
	t.Helper()
	if opts.RefusalFlush == 0 {
		opts.RefusalFlush = time.Hour
	}
	opts.TracerProvider = tracenoop.NewTracerProvider()
	s.carts.Close()
	s.carts = postgres.NewCartStore(s.db, opts)
	return s.carts
}

// refusals reads checkout_refusals summed by "reason/user_id".
func (s *stores) refusals(t *testing.T) map[string]int {
	t.Helper()
	rows, err := s.sql.Query(`SELECT reason, user_id, sum(refused) FROM checkout_refusals GROUP BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var reason, user string
		var n int
		if err := rows.Scan(&reason, &user, &n); err != nil {
			t.Fatal(err)
		}
		got[reason+"/"+user] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func wantRefusals(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: checkout_refusals holds %v, want %v", what, got, want)
		return
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: checkout_refusals holds %v, want %v", what, got, want)
			return
		}
	}
}

// TestRefusalsRideWithCheckouts checks that refusal counts are written by the
// next checkout batch's transaction, and the rest at Close.
func TestRefusalsRideWithCheckouts(t *testing.T) {
	s := mustStores(t, "")
	carts := s.refusalStore(t, postgres.CartStoreOptions{})
	sale := s.mustSale(t, 10, 3)
	for range 3 {
		carts.RecordRefusal("overloaded", "")
	}
	carts.RecordRefusal("rate_limited_user", "alice")
	carts.RecordRefusal("rate_limited_user", "alice")
	carts.RecordRefusal("rate_limited_user", "bob")
	wantRefusals(t, "before any checkout", s.refusals(t), map[string]int{})

	s.mustCheckout(t, sale, "carol", 1, flashsale.NewCode(sale.ID))
	wantRefusals(t, "after a checkout", s.refusals(t), map[string]int{
		"overloaded/": 3, "rate_limited_user/alice": 2, "rate_limited_user/bob": 1,
	})

	carts.RecordRefusal("rate_limited_user", "alice")
	carts.RecordRefusal("rate_limited_addr", "")
	if err := carts.Close(); err != nil {
		t.Fatal(err)
	}
	wantRefusals(t, "after Close", s.refusals(t), map[string]int{
		"overloaded/": 3, "rate_limited_user/alice": 3, "rate_limited_user/bob": 1, "rate_limited_addr/": 1,
	})
	if n := s.count(t, `SELECT count(*) FROM checkout_refusals WHERE minute <> date_trunc('minute', minute) OR minute > now() OR minute < now() - interval '1 hour'`); n != 0 {
		t.Errorf("%d rows outside the minutes of the test", n)
	}
}

// TestRefusalsWrittenWithoutCheckouts checks the periodic write: counts
// reach PostgreSQL with no checkout to carry them.
func TestRefusalsWrittenWithoutCheckouts(t *testing.T) {
	s := mustStores(t, "")
	carts := s.refusalStore(t, postgres.CartStoreOptions{RefusalFlush: 10 * time.Millisecond})
	carts.RecordRefusal("overloaded", "")
	carts.RecordRefusal("rate_limited_user", "dave")
	want := map[string]int{"overloaded/": 1, "rate_limited_user/dave": 1}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := s.refusals(t)
		if len(got) == len(want) {
			wantRefusals(t, "periodic write", got, want)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkout_refusals still holds %v, want %v", got, want)
		}
	}
}

// TestRefusalUsersBounded checks the bound on users counted apart: beyond
// it, refusals are counted under user id "" and none is lost.
func TestRefusalUsersBounded(t *testing.T) {
	s := mustStores(t, "")
	carts := s.refusalStore(t, postgres.CartStoreOptions{RefusalUsers: 3})
	for _, u := range []string{"u1", "u2", "u3", "u4", "u5", "u1", "u2", "u3", "u4", "u5"} {
		carts.RecordRefusal("rate_limited_user", u)
	}
	carts.RecordRefusal("overloaded", "")
	if err := carts.Close(); err != nil {
		t.Fatal(err)
	}
	wantRefusals(t, "bounded", s.refusals(t), map[string]int{
		"rate_limited_user/u1": 2, "rate_limited_user/u2": 2, "rate_limited_user/u3": 2,
		"rate_limited_user/": 4, "overloaded/": 1,
	})
}

// TestRefusalsSurviveAFailedCommit cuts the connection while the COMMIT of a
// batch carrying refusal counts is in flight: counts that did not commit are
// written by the next transaction, counts that did are not written twice.
func TestRefusalsSurviveAFailedCommit(t *testing.T) {
	for _, tt := range []struct {
		name    string
		forward bool
	}{
		{"commit reached the server", true},
		{"commit never sent", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			direct, s, cutter := mustCutStores(t, tt.forward)
			sale := direct.mustSale(t, 10, 10)
			carts := s.refusalStore(t, postgres.CartStoreOptions{Writers: 1})
			s.mustCheckout(t, sale, "warmup", 1, flashsale.NewCode(sale.ID)) // connections open
			for range 5 {
				carts.RecordRefusal("overloaded", "")
			}
			cutter.armed.Store(true)
			_, err := s.checkout(t, sale, "alice", 2, flashsale.NewCode(sale.ID))
			if cutter.cuts.Load() != 1 {
				t.Fatalf("the proxy cut %d commits, want 1", cutter.cuts.Load())
			}
			if tt.forward != (err == nil) {
				t.Fatalf("checkout across the cut commit: %v", err)
			}
			carts.RecordRefusal("overloaded", "")
			s.mustCheckout(t, sale, "bob", 3, flashsale.NewCode(sale.ID))
			wantRefusals(t, "after the next checkout", direct.refusals(t), map[string]int{"overloaded/": 6})
		})
	}
}
