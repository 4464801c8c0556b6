package loadgen

import (
	"strconv"
	"sync"
)

// runSteady measures closed-loop checkout throughput: -concurrency workers
// each send a checkout of a random unsold item for a fresh user as soon as
// the previous one is answered, until -duration elapses. Nothing is
// purchased, so the sale stays as it is and every checkout is accepted.
func runSteady(lr *loadRun) {
	var wg sync.WaitGroup
	for w := range lr.cfg.Concurrency {
		wg.Go(func() {
			rng := lr.rng(int64(w))
			kind := "s" + strconv.Itoa(w) + "-"
			for i := int64(0); !lr.stopped(); i++ {
				item, ok := lr.pool.Pick(rng)
				if !ok {
					lr.endLoad(errNoItems)
					return
				}
				_, res := lr.c.Checkout(lr.ctx, lr.userID(kind, i), item)
				lr.checkedOut(item, res)
			}
		})
	}
	wg.Wait()
}

// checkedOut handles the answer to a checkout whose code is not used: sold
// items leave the pool, the end of the sale ends the load, and a failure the
// service may recover from is not retried at full speed.
func (lr *loadRun) checkedOut(item int64, res Response) {
	switch res.Code {
	case "item_sold":
		lr.itemSold(item)
	case "sale_ended":
		lr.endLoad(errSaleEnded)
	default:
		lr.pause(res.Backoff())
	}
}
