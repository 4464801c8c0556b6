package faults

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// The cart guarantee: an item acknowledged into a cart is in that cart's
// purchase result (sold or failed), or the checkout was answered with a new
// code; a code the service issued can be purchased, or its purchase
// replayed, for as long as its sale runs — whatever Redis holds.

// Scenario 7: no fault, but buyers who race their own purchases. Two
// instances; one purchase in five has the buyer check out one more item
// through the other instance while the purchase is in flight, one in ten is
// fired twice at once (as every scenario's crowd does). Every racing
// checkout answered with the code being purchased is in that purchase's
// result; no acknowledged item is missing from its cart's purchase; every
// user's history is linearizable.
func TestRacingCheckouts(t *testing.T) {
	sz := sizes()
	dbURL := testenv.MustDatabase(t)
	redisURL, prefix := testenv.MustRedis(t)
	d := deploy(t, 2, deployEnv(dbURL, redisURL, prefix, map[string]string{"DB_MAX_OPEN_CONNS": "20"}))
	cr := startCrowd(t, d.c, d.led, d.saleID, sz.Items, sz.Users, crowdDeadline)
	cr.wait()

	d.led.mu.Lock()
	f := d.led.raceFigures()
	d.led.mu.Unlock()
	if f.Tried == 0 {
		t.Error("no buyer raced its own purchase")
	}
	if f.Lost > 0 {
		t.Errorf("%d of %d racing checkouts answered 200 with the code being purchased are not in that purchase's result", f.Lost, f.IntoCart)
	}
	checkAnswers(t, d.c.rec, hangBound)
	checkSale(t, mustSQL(t, dbURL), d.saleID, d.led, false)
	checkHistory(t, d.c.hist)
}

// Scenario 8: Redis goes back in time mid-crowd, as in a failover to a
// replica that lagged a few seconds: a snapshot is taken (BGSAVE), the crowd
// runs two more seconds, and Redis is killed and started again from the
// snapshot. Every code the service
// issued stays purchasable (no 404 code_not_found), a purchased code's
// replay answers its result, every invariant holds, every user's history
// is linearizable, and the sale sells out.
func TestRedisRestoredFromSnapshot(t *testing.T) {
	sz := sizes()
	dbURL := testenv.MustDatabase(t) // skips, unless required, before anything starts
	rs := testenv.StartRedis(t)
	const prefix = "fs"
	d := deploy(t, 2, deployEnv(dbURL, rs.URL(), prefix, map[string]string{"DB_MAX_OPEN_CONNS": "20"}))
	ctx := context.Background()
	cr := startCrowd(t, d.c, d.led, d.saleID, sz.Items, sz.Users, crowdDeadline)
	stopCanary := d.startCanary(t, sz.Items)
	if !cr.waitSold(sz.Items / 10) {
		t.Fatal("the crowd ended before a tenth of the sale was sold")
	}

	snap, err := rs.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snapAt := time.Now()
	t.Logf("Redis snapshot at %s", snapAt.UTC().Format(time.RFC3339Nano))
	select {
	case <-cr.done:
	case <-time.After(2 * time.Second):
	}
	downAt := time.Now()
	rs.Kill()
	if err := rs.StartFrom(ctx, snap); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	t.Logf("Redis restarted from the snapshot of %s earlier at %s", upAt.Sub(snapAt).Round(time.Millisecond), upAt.UTC().Format(time.RFC3339Nano))
	cr.wait()
	stopCanaryAfter(stopCanary, upAt)
	purchaseEvery(t, d.c, d.led)
	sweep(t, d.c, d.led, mustSQL(t, dbURL), d.saleID)

	(&summary{Scenario: "Redis restarted from a snapshot taken 2s earlier", From: downAt, To: upAt, rec: d.c.rec}).report(t)
	after, all := issuedNotFound(d.c.hist, upAt)
	t.Logf("purchases of codes the service issued answered 404 code_not_found: %d, %d of them sent after the restore", all, after)
	if all > 0 {
		t.Errorf("%d purchases of codes the service issued were answered 404 code_not_found (%d after the restore)", all, after)
	}
	checkAnswers(t, d.c.rec, hangBound)
	checkSale(t, mustSQL(t, dbURL), d.saleID, d.led, true)
	checkHistory(t, d.c.hist)
}

// purchaseEvery purchases every code a checkout was answered with, retrying
// retryable answers: a code the service issued can be purchased, and a
// purchased code's purchase replays its result (the ledger compares it).
func purchaseEvery(t *testing.T, c *client, led *ledger) {
	t.Helper()
	codes := led.Carts()
	slices.Sort(codes)
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered := 0
	for w := range 8 {
		wg.Go(func() {
			for code := range work {
				for try := 0; try < 20; try++ {
					out, a := c.purchase(w%len(c.targets), code)
					if a.ok() {
						led.Purchased(code, out)
						mu.Lock()
						answered++
						mu.Unlock()
					}
					if !a.retryable() {
						break
					}
					time.Sleep(retryWait(a.response()))
				}
			}
		})
	}
	for _, code := range codes {
		work <- code
	}
	close(work)
	wg.Wait()
	t.Logf("every issued code purchased once more: %d codes, %d answered 200", len(codes), answered)
	if answered < len(codes) {
		t.Errorf("%d of %d codes the service issued could not be purchased or replayed", len(codes)-answered, len(codes))
	}
}

// issuedNotFound counts the purchases answered 404 code_not_found of codes
// a checkout was answered with: in all, and of those sent after since.
func issuedNotFound(h *history, since time.Time) (after, all int) {
	ops := h.all()
	issued := map[string]bool{}
	for _, op := range ops {
		if !op.Purchase && op.Answer.ok() {
			issued[op.Checkout.Code] = true
		}
	}
	for _, op := range ops {
		if op.Purchase && issued[op.Code] && op.Answer.Code == "code_not_found" {
			all++
			if !op.Answer.Start.Before(since) {
				after++
			}
		}
	}
	return after, all
}
