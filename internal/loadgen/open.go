package loadgen

import (
	"math"
	"sync"
	"time"
)

// lateAfter is how far behind its intended time a request may go out and
// still count as sent on time: timer slack on a busy machine is a few
// milliseconds.
const lateAfter = 10 * time.Millisecond

// OpenLoopReport is what the open profile's schedule achieved.
type OpenLoopReport struct {
	Rate        float64 `json:"rate"`         // checkouts per second asked for
	MaxInflight int     `json:"max_inflight"` // requests in flight at most
	Scheduled   int64   `json:"scheduled"`    // requests due before the load ended
	Sent        int64   `json:"sent"`
	// Late counts requests sent more than late_after_ms after their
	// intended time: every slot was busy, or the generator itself fell
	// behind. Their latency still counts from the intended time.
	Late         int64   `json:"late"`
	Unsent       int64   `json:"unsent"` // due but never sent: no slot freed before the end
	LateAfterMs  float64 `json:"late_after_ms"`
	MaxSendLagMs float64 `json:"max_send_lag_ms"` // the latest any request went out
}

// runOpen sends checkouts of random unsold items for fresh users at a fixed
// rate, whatever the answers' latency: request i is due at start + i/rate.
// Latency is measured from that intended time, so a slow service cannot
// hide its queue by slowing the generator down (no coordinated omission).
// At most -max-inflight requests are in flight; a request due while all are
// busy waits for a slot and is counted late.
func runOpen(lr *loadRun) {
	o := &OpenLoopReport{Rate: lr.cfg.Rate, MaxInflight: lr.cfg.MaxInflight, LateAfterMs: ms(lateAfter)}
	interval := float64(time.Second) / lr.cfg.Rate
	slots := make(chan struct{}, lr.cfg.MaxInflight)
	start := time.Now()
	end := start.Add(lr.cfg.Duration)
	var wg sync.WaitGroup
	var maxLag time.Duration
	i := int64(0)
schedule:
	for ; ; i++ {
		intended := start.Add(time.Duration(float64(i) * interval))
		if !intended.Before(end) || !lr.pause(time.Until(intended)) {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-lr.stop.Done():
			break schedule
		}
		lag := time.Since(intended)
		if lag > lateAfter {
			o.Late++
		}
		maxLag = max(maxLag, lag)
		o.Sent++
		n := i // i outlives the iteration: it counts the requests due
		wg.Go(func() {
			defer func() { <-slots }()
			item, ok := lr.pool.Pick(lr.rng(n))
			if !ok {
				lr.endLoad(errNoItems)
				return
			}
			_, res := lr.c.checkoutAt(lr.ctx, lr.userID("o", n), item, intended)
			if res.Code == "item_sold" {
				lr.itemSold(item)
			}
		})
	}
	// The requests due are those whose time came before the load ended,
	// whether or not the loop got to them.
	ran := min(time.Since(start), end.Sub(start))
	o.Scheduled = max(i, int64(math.Ceil(float64(ran)/interval)))
	o.Unsent = o.Scheduled - o.Sent
	o.MaxSendLagMs = ms(maxLag)
	wg.Wait()
	lr.open = o
}

// ms converts a duration to fractional milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
