package httpapi

import (
	"fmt"
	"maps"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// refusalCounts is a RefusalLog that counts by "reason/user".
type refusalCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *refusalCounts) RecordRefusal(reason, userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[reason+"/"+userID]++
}

func (c *refusalCounts) want(t *testing.T, what string, want map[string]int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !maps.Equal(c.n, want) && (len(c.n) != 0 || len(want) != 0) {
		t.Errorf("%s: refusals counted %v, want %v", what, c.n, want)
	}
}

// TestRateLimitedCheckoutsAreCounted checks that a checkout over the user's
// budget is counted for its user, one over the address's budget without it,
// and that neither a malformed checkout nor a rate-limited purchase is.
func TestRateLimitedCheckoutsAreCounted(t *testing.T) {
	refusals := &refusalCounts{}
	h := newHarness(t, Options{Refusals: refusals, RateLimits: RateLimits{
		Limiter: mustLimiter(t), User: Limit{Rate: 1, Burst: 1, Period: time.Minute}, Addr: Limit{Rate: 1, Burst: 4, Period: time.Minute},
	}})
	h.svc.purchase = &flashsale.Purchase{SaleID: h.sale.ID, Result: flashsale.PurchaseResult{Success: true, TotalPurchased: 1}}
	handler := h.srv.Handler()
	item := func(n int) string { return itoa(flashsale.ItemID(h.sale.ID, n)) }
	code := flashsale.NewCode(h.sale.ID)

	// The user's budget is the service's: its refusals are counted here.
	for i, want := range []int{http.StatusOK, http.StatusTooManyRequests, http.StatusTooManyRequests} {
		if i == 1 {
			h.svc.mu.Lock()
			h.svc.limitedUser = "alice"
			h.svc.mu.Unlock()
		}
		if w := serveFrom(handler, "192.0.2.1:1000", "POST", "/checkout?user_id=alice&id="+item(i+1)); w.Code != want {
			t.Fatalf("checkout %d of alice: %d %s, want %d", i+1, w.Code, w.Body, want)
		}
	}
	refusals.want(t, "user budget", map[string]int{RefusedUserRate + "/alice": 2})

	// Malformed: answered 400 before the limits, not an attempt.
	wantError(t, serveFrom(handler, "192.0.2.1:1000", "POST", "/checkout?user_id=alice&id=x"), http.StatusBadRequest, flashsale.EInvalidItemID)
	// A purchase's refusal is not a checkout's.
	if w := serveFrom(handler, "192.0.2.1:1000", "POST", "/purchase?code="+code); w.Code != http.StatusOK {
		t.Fatalf("purchase: %d %s", w.Code, w.Body)
	}
	wantError(t, serveFrom(handler, "192.0.2.1:1000", "POST", "/purchase?code="+code), http.StatusTooManyRequests, flashsale.ERateLimited)
	// The address's budget (4) is spent: bob is refused for the address.
	wantError(t, serveFrom(handler, "192.0.2.1:1000", "POST", "/checkout?user_id=bob&id="+item(1)), http.StatusTooManyRequests, flashsale.ERateLimited)
	refusals.want(t, "address budget", map[string]int{RefusedUserRate + "/alice": 2, RefusedAddrRate + "/": 1})
}

// TestShedCheckoutsAreCounted checks that a checkout shed by admission is
// counted, and that shedding another route is not a refused checkout.
func TestShedCheckoutsAreCounted(t *testing.T) {
	refusals := &refusalCounts{}
	h := newHarness(t, Options{Refusals: refusals, MaxInFlight: 1, QueueWait: time.Millisecond})
	h.svc.block, h.svc.entered = make(chan struct{}), make(chan struct{}, 1)
	checkout := func(user string) string {
		return fmt.Sprintf("/checkout?user_id=%s&id=%d", user, flashsale.ItemID(h.sale.ID, 1))
	}
	var wg sync.WaitGroup
	wg.Go(func() { h.do(http.MethodPost, checkout("holder"), nil) })
	<-h.svc.entered // the holder has the only slot

	for _, user := range []string{"a", "b", "c"} {
		wantError(t, h.do(http.MethodPost, checkout(user), nil), http.StatusServiceUnavailable, flashsale.EOverloaded)
	}
	wantError(t, h.do(http.MethodGet, "/sales/active", nil), http.StatusServiceUnavailable, flashsale.EOverloaded)
	wantError(t, h.do(http.MethodPost, "/purchase?code="+flashsale.NewCode(h.sale.ID), nil), http.StatusServiceUnavailable, flashsale.EOverloaded)
	close(h.svc.block)
	wg.Wait()
	refusals.want(t, "shed", map[string]int{RefusedOverloaded + "/": 3})
}
