package loadgen

import (
	"fmt"
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
				sold += lr.ledger.purchased(code, answers[i], lr.itemSold)
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

// purchaseLedger keeps what purchases answered, to count the items this run
// sold and to check what a client can see of the guarantees: a replay
// answers as the first purchase did, no item is reported sold to two carts,
// and no more items are reported sold than the sale holds.
type purchaseLedger struct {
	mu          sync.Mutex
	total       int               // the sale's items
	answers     map[string]string // code -> its first 200 answer, printed
	soldTo      map[int64]string  // item -> the code whose purchase sold it
	sold        int
	doubleFires int
	violations  []string
}

func newPurchaseLedger(total int) *purchaseLedger {
	return &purchaseLedger{total: total, answers: map[string]string{}, soldTo: map[int64]string{}}
}

// maxViolations keeps a broken service from filling the report.
const maxViolations = 20

func (l *purchaseLedger) violate(format string, args ...any) {
	if len(l.violations) < maxViolations {
		l.violations = append(l.violations, fmt.Sprintf(format, args...))
	}
}

func (l *purchaseLedger) doubleFired() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.doubleFires++
}

// purchased notes a 200 answer to a purchase of code and returns the items
// it sold: 0 when it replays an earlier answer. sold is told each item sold.
func (l *purchaseLedger) purchased(code string, a PurchaseAnswer, sold func(item int64)) int {
	printed := fmt.Sprintf("%+v", a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.answers[code]; ok {
		if prev != printed {
			l.violate("purchase of code %s answered differently on replay: %s, then %s", code, prev, printed)
		}
		return 0
	}
	l.answers[code] = printed
	n, listed := 0, 0
	for _, it := range a.Items {
		if !it.Sold {
			continue
		}
		listed++
		if other, ok := l.soldTo[it.ID]; ok {
			l.violate("item %d reported sold to two carts: %s and %s", it.ID, other, code)
			continue
		}
		l.soldTo[it.ID] = code
		n++
		sold(it.ID)
	}
	if listed != a.TotalPurchased {
		l.violate("purchase of code %s reports total_purchased=%d but lists %d items sold", code, a.TotalPurchased, listed)
	}
	if l.sold += n; l.sold > l.total && n > 0 {
		l.violate("purchases reported %d items sold of a sale of %d", l.sold, l.total)
	}
	return n
}

// state returns the items purchases reported sold, the double fires and the
// violations seen.
func (l *purchaseLedger) state() (sold, doubleFires int, violations []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sold, l.doubleFires, append([]string{}, l.violations...)
}
