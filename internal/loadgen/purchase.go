package loadgen

import (
	"math/rand/v2"
	"sync"
	"time"
)

// purchaseAttempts bounds how often one code is purchased while the service
// answers with something retryable (503, purchase_in_progress, no answer).
const purchaseAttempts = 3

// buy purchases code, fired twice at once with probability doubleFire, and
// returns the items it sold (0 for a replay). Retryable failures are retried
// a few times, once at a time.
func (lr *loadRun) buy(code string, doubleFire float64, rng *rand.Rand) int {
	fires := 1
	if doubleFire > 0 && rng.Float64() < doubleFire {
		fires = 2
		lr.ledger.doubleFired()
	}
	for range purchaseAttempts {
		answers := make([]PurchaseAnswer, fires)
		results := make([]Response, fires)
		if fires == 1 {
			answers[0], results[0] = lr.c.Purchase(lr.ctx, code)
		} else {
			var wg sync.WaitGroup
			for i := range fires {
				wg.Go(func() { answers[i], results[i] = lr.c.Purchase(lr.ctx, code) })
			}
			wg.Wait()
		}
		sold, answered, wait := 0, false, time.Duration(0)
		for i, res := range results {
			if res.OK() {
				newly, _ := lr.ledger.Purchased(code, answers[i])
				for _, id := range newly {
					lr.itemSold(id)
				}
				sold += len(newly)
				answered = true
			}
			wait = max(wait, res.Backoff())
			if res.Code == "sale_ended" {
				lr.endLoad(errSaleEnded)
			}
		}
		if answered || wait == 0 || lr.stopped() {
			return sold
		}
		lr.pause(wait)
		fires = 1
	}
	return 0
}
