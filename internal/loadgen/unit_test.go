package loadgen

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestPersonaMix checks that the personas' shares hold exactly.
func TestPersonaMix(t *testing.T) {
	got := map[string]int{}
	for n := range 200 {
		got[personaOf(n, 200).name]++
	}
	if want := map[string]int{"aggressive": 20, "normal": 120, "browser": 60}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("personas of 200 users: %v, want %v", got, want)
	}
}

func TestItemPool(t *testing.T) {
	p := NewItemPool([]int64{1, 2, 3})
	rng := rand.New(rand.NewPCG(1, 2))
	if n := p.Remove(2); n != 2 {
		t.Errorf("remove left %d", n)
	}
	if n := p.Remove(2); n != 2 {
		t.Errorf("removing twice left %d", n)
	}
	for range 50 {
		if id, ok := p.Pick(rng); !ok || id == 2 {
			t.Fatalf("pick = %d, %v", id, ok)
		}
	}
	p.Remove(1)
	p.Remove(3)
	if _, ok := p.Pick(rng); ok || p.Len() != 0 {
		t.Error("an empty pool gave an item")
	}
}

// TestLedger feeds the ledger what a broken service could answer.
func TestLedger(t *testing.T) {
	l := NewLedger(3)
	it := func(id int64, sold bool) PurchasedItem { return PurchasedItem{ID: id, Sold: sold} }
	a := PurchaseAnswer{Success: true, TotalPurchased: 2, FailedCount: 1, Items: []PurchasedItem{it(1, true), it(2, true), it(3, false)}}
	if sold, failed := l.Purchased("A", a); len(sold) != 2 || len(failed) != 1 {
		t.Errorf("first answer sold %v, failed %v", sold, failed)
	}
	if sold, _ := l.Purchased("A", a); len(sold) != 0 {
		t.Errorf("a replay sold %v", sold)
	}
	if _, _, v := l.state(); len(v) != 0 {
		t.Errorf("violations of a correct service: %q", v)
	}
	l.Purchased("A", PurchaseAnswer{Success: true, TotalPurchased: 1, Items: []PurchasedItem{it(1, true)}})
	sold, _ := l.Purchased("B", PurchaseAnswer{Success: true, TotalPurchased: 2, Items: []PurchasedItem{it(2, true), it(3, true)}})
	l.Purchased("C", PurchaseAnswer{Success: true, TotalPurchased: 2, Items: []PurchasedItem{it(4, true)}})
	got, _, v := l.state()
	want := []string{"answered differently on replay", "item 2 reported sold to two carts", "inconsistent purchase answer for code C", "purchases reported 4 items sold of a sale of 3"}
	if len(v) != len(want) || got != 4 || fmt.Sprint(sold) != "[3]" {
		t.Fatalf("sold %d (B: %v), violations %q", got, sold, v)
	}
	for i, w := range want {
		if !strings.Contains(v[i], w) {
			t.Errorf("violation %q, want %q", v[i], w)
		}
	}
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct{ top, n, want float64 }{{100, 5, 20}, {7, 5, 2}, {0.9, 5, 0.2}, {12345, 10, 2000}, {0, 5, 1}} {
		if got := niceStep(tc.top, int(tc.n)); got != tc.want {
			t.Errorf("niceStep(%v, %v) = %v, want %v", tc.top, tc.n, got, tc.want)
		}
	}
}

// TestBackoff: a worker waits what a 503 or 429 asks for in Retry-After
// (capped), a second for a 503 without it, a short pause after no answer,
// and retries nothing that cannot succeed.
func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		res  Response
		want time.Duration
	}{
		{Response{Status: 503, Code: "overloaded", RetryAfter: 2 * time.Second}, 2 * time.Second},
		{Response{Status: 429, Code: "rate_limited", RetryAfter: 3 * time.Second}, 3 * time.Second},
		{Response{Status: 429, Code: "rate_limited", RetryAfter: time.Hour}, maxRetryAfter},
		{Response{Status: 503, Code: "service_unavailable"}, time.Second},
		{Response{Status: 409, Code: "purchase_in_progress"}, 50 * time.Millisecond},
		{Response{Code: CodeTransport}, 50 * time.Millisecond},
		{Response{Status: 409, Code: "item_sold", RetryAfter: time.Second}, 0},
		{Response{Status: 500, Code: "internal_error"}, 0},
	} {
		if got := tc.res.Backoff(); got != tc.want {
			t.Errorf("%s (Retry-After %s): backoff %s, want %s", tc.res, tc.res.RetryAfter, got, tc.want)
		}
	}
}
