package loadgen

import (
	"cmp"
	"math/rand/v2"
	"sync"
	"time"
)

// purchaseAttempts bounds how often one code is purchased while the service
// answers with something retryable (503, purchase_in_progress, no answer).
const purchaseAttempts = 3

// buy purchases ct, fired twice at once with probability doubleFire, and
// returns the items it sold (0 for a replay) and whether a 200 came back.
// Retryable failures are retried a few times, once at a time. With the
// crowd's RaceShare, the buyer sometimes checks out one more item while the
// first try is in flight.
func (lr *loadRun) buy(ct cart, doubleFire float64, rng *rand.Rand) (sold int, answered bool) {
	fires := 1
	if doubleFire > 0 && rng.Float64() < doubleFire {
		fires = 2
		lr.ledger.doubleFired()
	}
	racing := lr.crowd.RaceShare > 0 && rng.Float64() < lr.crowd.RaceShare
	for range cmp.Or(lr.crowd.PurchaseAttempts, purchaseAttempts) {
		answers := make([]PurchaseAnswer, fires)
		results := make([]Response, fires)
		if fires == 1 && !racing {
			answers[0], results[0] = ct.conn.Purchase(lr.ctx, ct.code)
		} else {
			var wg sync.WaitGroup
			if racing {
				racing = false
				if item, ok := lr.pickNotIn(ct.items, rng); ok {
					wg.Go(func() { lr.raceCheckout(ct, item) })
				}
			}
			for i := range fires {
				wg.Go(func() { answers[i], results[i] = ct.conn.Purchase(lr.ctx, ct.code) })
			}
			wg.Wait()
		}
		retry, wait := false, time.Duration(0)
		for i, res := range results {
			if res.OK() {
				newly, failed := lr.ledger.Purchased(ct.code, answers[i])
				for _, id := range newly {
					lr.itemSold(id)
				}
				if lr.crowd.ForgetUnsold {
					for _, id := range failed {
						lr.itemSold(id)
					}
				}
				sold += len(newly)
				answered = true
			}
			if res.Retryable() {
				retry, wait = true, max(wait, lr.backoff(res))
			}
			if res.Code == "sale_ended" {
				lr.endLoad(errSaleEnded)
			}
		}
		if answered || !retry || lr.stopped() && !lr.crowd.RetryAfterStop {
			return sold, answered
		}
		if lr.crowd.RetryAfterStop {
			time.Sleep(wait)
		} else {
			lr.pause(wait)
		}
		fires = 1
	}
	return 0, false
}

// backoff is how long to wait after res: the crowd's Backoff, or res's.
func (lr *loadRun) backoff(res Response) time.Duration {
	if lr.crowd.Backoff != nil {
		return lr.crowd.Backoff(res)
	}
	return res.Backoff()
}
