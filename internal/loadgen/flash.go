package loadgen

import (
	"context"
	"math/rand/v2"
	"sync"
)

// maxFailures is how many unexpected answers in a row make a user give up:
// a service answering 400 to every checkout must not be spun on at full
// speed until the deadline.
const maxFailures = 10

// runFlash releases a crowd of -users buyers at the sale at once. Each wants
// 1 to -want-max items (more than the service's limit for some), checks out
// random unsold ones into its cart, purchases the cart (sometimes firing the
// purchase twice at once), and goes on until it has what it wants, reaches
// the limit, or nothing is left. The load ends when the sale sells out,
// every user is done, or -duration elapses.
func runFlash(lr *loadRun) {
	release := make(chan struct{})
	var wg sync.WaitGroup
	for u := range lr.cfg.Users {
		wg.Go(func() {
			<-release
			lr.flashUser(int64(u))
		})
	}
	close(release)
	wg.Wait()
}

func (lr *loadRun) flashUser(n int64) {
	user := lr.userID("f", n)
	rng := lr.rng(n)
	want := 1 + rng.IntN(lr.cfg.WantMax)
	for bought := 0; bought < want && !lr.stopped(); {
		code := lr.fillCart(user, want-bought, rng)
		if code == "" {
			return // at the limit, nothing left, or the load is over
		}
		if lr.abandon > 0 && rng.Float64() < lr.abandon {
			return // leaves the cart unpurchased
		}
		bought += lr.buy(code, lr.cfg.DoubleFire, rng)
	}
}

// fillCart checks out up to k random unsold items for user and returns the
// cart's code, "" when nothing could be added. It stops early at the user's
// limit, when nothing is left to pick, or when the load stops.
func (lr *loadRun) fillCart(user string, k int, rng *rand.Rand) (code string) {
	inCart := map[int64]bool{}
	for failures := 0; len(inCart) < k && failures < maxFailures && !lr.stopped(); {
		item, ok := lr.pickNotIn(inCart, rng)
		if !ok {
			return code
		}
		a, res := lr.c.Checkout(lr.ctx, user, item)
		if lr.checkouts {
			lr.ledger.CheckedOut(item, a, res)
		}
		switch {
		case res.OK():
			code, inCart[item], failures = a.Code, true, 0
		case res.Code == "item_sold":
			lr.itemSold(item)
		case res.Code == "already_in_cart":
			inCart[item] = true
		case res.Code == "user_limit_reached":
			return code
		case res.Code == "sale_ended":
			lr.endLoad(errSaleEnded)
		default:
			failures++
			lr.pause(res.Backoff())
		}
	}
	return code
}

// pickNotIn picks a random unsold item that is not in cart; false when none
// is left, as far as a few draws can tell.
func (lr *loadRun) pickNotIn(cart map[int64]bool, rng *rand.Rand) (int64, bool) {
	for range 16 {
		id, ok := lr.pool.Pick(rng)
		if !ok {
			return 0, false
		}
		if !cart[id] {
			return id, true
		}
	}
	return 0, false
}

// Crowd is the flash profile's crowd for a test that brings its own
// client, items and ledger, which is told every checkout's answer too.
type Crowd struct {
	Client     *Client
	Pool       *ItemPool // the sale's items, all believed unsold
	Ledger     *Ledger
	Users      int
	WantMax    int     // each buyer wants 1 to WantMax items
	DoubleFire float64 // share of purchases fired twice at once
	Abandon    float64 // share of carts left unpurchased, their buyer gone
	Seed       uint64
}

// Run releases the crowd and returns when every buyer is done or ctx ends.
func (c Crowd) Run(ctx context.Context) {
	lr := &loadRun{
		cfg:   Config{Users: c.Users, WantMax: c.WantMax, DoubleFire: c.DoubleFire, Seed: c.Seed},
		runID: newRunID(), c: c.Client, pool: c.Pool, ledger: c.Ledger,
		ctx: ctx, checkouts: true, abandon: c.Abandon,
	}
	lr.stop, lr.endLoad = context.WithCancelCause(ctx)
	defer lr.endLoad(nil)
	runFlash(lr)
}
