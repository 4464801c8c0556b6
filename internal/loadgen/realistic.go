package loadgen

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// persona is a kind of shopper of the realistic load mix: the share of users it
// makes up and, at each visit, the chance it checks an item out and the
// chance it purchases its cart.
type persona struct {
	name                      string
	share, checkout, purchase float64
}

// personas is the mix: 10 % aggressive buyers, 60 % normal users,
// 30 % browsers.
var personas = []persona{
	{name: "aggressive", share: 0.10, checkout: 0.90, purchase: 0.80},
	{name: "normal", share: 0.60, checkout: 0.60, purchase: 0.40},
	{name: "browser", share: 0.30, checkout: 0.30, purchase: 0.10},
}

// personaOf returns the persona of user n of users: the shares are exact up
// to rounding, not left to chance, so that small runs have the mix too.
func personaOf(n, users int) persona {
	pos, acc := (float64(n)+0.5)/float64(users), 0.0
	for _, p := range personas {
		if acc += p.share; pos < acc {
			return p
		}
	}
	return personas[len(personas)-1]
}

// browsePage is the page size of a browsing user.
const browsePage = 50

// runRealistic runs -users shoppers of that mix at once until
// -duration elapses or the sale sells out. At each visit a shopper browses a
// page of items, maybe checks out a random unsold item into its cart, maybe
// purchases the cart, and thinks for up to -think. A shopper that reaches
// the limit leaves and a new one of the same persona takes its place.
func runRealistic(lr *loadRun) {
	var wg sync.WaitGroup
	for u := range lr.cfg.Users {
		wg.Go(func() { lr.shopper(u, personaOf(u, lr.cfg.Users)) })
	}
	wg.Wait()
}

func (lr *loadRun) shopper(n int, p persona) {
	rng := lr.rng(int64(n))
	kind := "r" + strconv.Itoa(n) + "-"
	visitor := int64(0)
	var code string
	for !lr.stopped() {
		lr.browse(rng)
		if !lr.stopped() && rng.Float64() < p.checkout {
			item, ok := lr.pool.Pick(rng)
			if !ok {
				lr.endLoad(errNoItems)
				return
			}
			a, res := lr.c.Checkout(lr.ctx, lr.userID(kind, visitor), item)
			switch {
			case res.OK():
				code = a.Code
			case res.Code == "user_limit_reached":
				visitor, code = visitor+1, ""
			default:
				lr.checkedOut(item, res)
			}
		}
		if code != "" && !lr.stopped() && rng.Float64() < p.purchase {
			lr.buy(cart{conn: lr.c, code: code}, 0, rng)
			code = ""
		}
		if lr.cfg.Think > 0 {
			lr.pause(time.Duration(rng.Int64N(int64(lr.cfg.Think))))
		}
	}
}

// browse reads a random page of the sale's items; the sold items it shows
// leave the pool.
func (lr *loadRun) browse(rng *rand.Rand) {
	offset := rng.IntN(max(lr.sale.TotalItems-browsePage+1, 1))
	page, res := lr.c.Items(lr.ctx, lr.sale.ID, offset, browsePage)
	if !res.OK() {
		lr.pause(res.Backoff())
		return
	}
	for _, it := range page {
		if it.Sold {
			lr.itemSold(it.ID)
		}
	}
}
