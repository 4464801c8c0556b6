package loadgen

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
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
	failedBuys := 0
	for bought := 0; bought < want && !lr.stopped(); {
		if lr.crowd.MaxFailedBuys > 0 && failedBuys >= lr.crowd.MaxFailedBuys {
			return
		}
		var conn Conn = lr.c
		if lr.crowd.Dial != nil {
			conn = lr.crowd.Dial(rng) // each cart through a fresh choice
		}
		ct := lr.fillCart(conn, user, want-bought, rng)
		if ct.code == "" {
			return // at the limit, nothing left, or the load is over
		}
		if lr.crowd.Abandon > 0 && rng.Float64() < lr.crowd.Abandon {
			return // leaves the cart unpurchased
		}
		sold, answered := lr.buy(ct, lr.cfg.DoubleFire, rng)
		if !answered {
			failedBuys++
		}
		bought += sold
	}
}

// cart is a buyer's cart: its code, the items in it and the connection it
// was filled through.
type cart struct {
	conn  Conn
	user  string
	code  string
	items map[int64]bool
}

// fillCart checks out up to k random unsold items for user through conn and
// returns the cart, whose code is "" when nothing could be added. It stops
// early at the user's limit, when nothing is left to pick, or when the load
// stops.
func (lr *loadRun) fillCart(conn Conn, user string, k int, rng *rand.Rand) cart {
	ct := cart{conn: conn, user: user, items: map[int64]bool{}}
	for failures := 0; len(ct.items) < k && failures < maxFailures && !lr.stopped(); {
		item, ok := lr.pickNotIn(ct.items, rng)
		if !ok {
			return ct
		}
		a, res := conn.Checkout(lr.ctx, user, item)
		if lr.crowd.Ledger != nil {
			lr.ledger.CheckedOut(item, a, res)
		}
		switch {
		case res.OK():
			ct.code, ct.items[item], failures = a.Code, true, 0
		case res.Code == "item_sold":
			lr.itemSold(item)
		case res.Code == "already_in_cart":
			ct.items[item] = true
		case res.Code == "user_limit_reached":
			return ct
		case res.Code == "sale_ended":
			lr.endLoad(errSaleEnded)
		default:
			failures++
			lr.pause(lr.backoff(res))
		}
	}
	return ct
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

// raceCheckout checks out one more item while the purchase of ct is in
// flight, through the connection's second tab when it has one.
func (lr *loadRun) raceCheckout(ct cart, item int64) {
	conn := ct.conn
	if t, ok := conn.(interface{ SecondTab() Conn }); ok {
		conn = t.SecondTab()
	}
	a, res := conn.Checkout(lr.ctx, ct.user, item)
	lr.ledger.CheckedOut(item, a, res)
	if lr.crowd.Raced != nil {
		lr.crowd.Raced(ct.code, item, a, res)
	}
	if res.Code == "item_sold" {
		lr.itemSold(item)
	}
}

// Conn is how a buyer's requests reach the service: a [Client], or a
// test's client that records every answer and fails over. A Conn with a
// method SecondTab() Conn sends racing checkouts through what it returns.
type Conn interface {
	Checkout(ctx context.Context, user string, itemID int64) (CheckoutAnswer, Response)
	Purchase(ctx context.Context, code string) (PurchaseAnswer, Response)
}

// Crowd is the flash profile's crowd for a test that brings its own
// client, items and ledger, which is told every checkout's answer too.
// The fields after Seed are what a test steers; their zero values are the
// flash profile's behaviour.
type Crowd struct {
	Client     *Client
	Pool       *ItemPool // the sale's items, all believed unsold
	Ledger     *Ledger
	Users      int
	WantMax    int     // each buyer wants 1 to WantMax items
	DoubleFire float64 // share of purchases fired twice at once
	Abandon    float64 // share of carts left unpurchased, their buyer gone
	Seed       uint64

	// Dial, when set, gives each cart the connection it is filled and
	// purchased through, in place of Client.
	Dial func(rng *rand.Rand) Conn
	// RaceShare is the share of purchases during which the buyer checks
	// out one more item, as a second tab does; Raced is told each such
	// checkout's answer, with the code of the cart being purchased.
	RaceShare float64
	Raced     func(cart string, item int64, a CheckoutAnswer, res Response)
	// PurchaseAttempts bounds the tries of one purchase while the answers
	// are retryable (3 when 0); with RetryAfterStop they go on after the
	// crowd stops, so that an acknowledgement a fault hid is replayed.
	PurchaseAttempts int
	RetryAfterStop   bool
	// Backoff is the wait after a failed request ([Response.Backoff] when nil).
	Backoff func(Response) time.Duration
	// MaxFailedBuys: a buyer whose purchases got no 200 this many times
	// gives up (0: never).
	MaxFailedBuys int
	// ForgetUnsold takes the items a purchase could not sell (they went to
	// another cart) out of the pool.
	ForgetUnsold bool
	// Sold, when set, is told whenever items leave the pool.
	Sold func()
}

// Run releases the crowd and returns when every buyer is done or ctx ends.
func (c Crowd) Run(ctx context.Context) {
	lr := &loadRun{
		cfg:   Config{Users: c.Users, WantMax: c.WantMax, DoubleFire: c.DoubleFire, Seed: c.Seed},
		runID: newRunID(), c: c.Client, pool: c.Pool, ledger: c.Ledger,
		ctx: ctx, crowd: c,
	}
	lr.stop, lr.endLoad = context.WithCancelCause(ctx)
	defer lr.endLoad(nil)
	runFlash(lr)
}
