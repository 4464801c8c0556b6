package faults

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/invariants"
	"github.com/flashsale/flashsale/internal/loadgen"
)

// The flash crowd of loadgen's flash profile, with what the scenarios
// steer: it spreads buyers over several instances, fails over when one
// is gone, and records every answer — status, error code, Retry-After, time —
// and every acknowledgement (200 checkouts and purchases), which the checks
// then look for in PostgreSQL.

// answer is one request and what came back.
type answer struct {
	Start, End time.Time
	Target     string // the instance's URL
	Endpoint   loadgen.Endpoint
	Status     int    // 0: no answer
	Code       string // the JSON error code, or one of the client's (loadgen.Code...)
	RetryAfter time.Duration
	Detail     string // transport error or undecodable body
}

// label names the answer in status tallies: "200", "503 service_unavailable",
// "transport".
func (a answer) label() string {
	switch {
	case a.Status == 0:
		return a.Code
	case a.Code == "":
		return strconv.Itoa(a.Status)
	}
	return strconv.Itoa(a.Status) + "_" + a.Code
}

func (a answer) response() loadgen.Response {
	return loadgen.Response{Status: a.Status, Code: a.Code, RetryAfter: a.RetryAfter}
}

func (a answer) ok() bool { return a.Status >= 200 && a.Status < 300 && a.Code == "" }

// retryable: the request may succeed when sent again.
func (a answer) retryable() bool {
	switch a.Code {
	case "service_unavailable", "overloaded", "purchase_in_progress", "rate_limited", loadgen.CodeTimeout, loadgen.CodeTransport:
		return true
	}
	return a.Status == http.StatusServiceUnavailable || a.Status == http.StatusTooManyRequests
}

// recorder keeps every answer.
type recorder struct {
	mu      sync.Mutex
	answers []answer
}

func (r *recorder) add(a answer) {
	r.mu.Lock()
	r.answers = append(r.answers, a)
	r.mu.Unlock()
}

func (r *recorder) all() []answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]answer(nil), r.answers...)
}

// between returns the answers to requests started in [from, to).
func (r *recorder) between(from, to time.Time) []answer {
	var out []answer
	for _, a := range r.all() {
		if !a.Start.Before(from) && a.Start.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

// recovery is how long after t the first checkout or purchase sent after t
// was answered below 500: the service was serving again.
// With target set, only answers of that instance count.
func (r *recorder) recovery(t time.Time, target string) (time.Duration, bool) {
	first := time.Time{}
	for _, a := range r.all() {
		if target != "" && a.Target != target {
			continue
		}
		if a.Status > 0 && a.Status < 500 && !a.Start.Before(t) && (a.Endpoint == loadgen.EndpointCheckout || a.Endpoint == loadgen.EndpointPurchase) {
			if first.IsZero() || a.End.Before(first) {
				first = a.End
			}
		}
	}
	return first.Sub(t), !first.IsZero()
}

// client speaks the API to one of several instances, and records every
// answer and, for the history check, every checkout and purchase.
type client struct {
	targets []string
	api     []*loadgen.Client // one per target
	hc      *http.Client
	rec     *recorder
	hist    *history
}

// newClient returns a client whose requests time out after timeout: an
// answer slower than that is a hang.
func newClient(targets []string, timeout time.Duration) *client {
	c := &client{
		targets: targets,
		hc: &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				Proxy:               nil,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 4096,
				IdleConnTimeout:     30 * time.Second,
				DisableCompression:  true,
			},
		},
		rec:  &recorder{},
		hist: newHistory(),
	}
	for _, t := range targets {
		c.api = append(c.api, loadgen.NewClient(c.hc, t))
	}
	return c
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// do sends a request to target i through send and records its answer.
func (c *client) do(i int, ep loadgen.Endpoint, send func(*loadgen.Client) loadgen.Response) answer {
	a := answer{Start: time.Now(), Target: c.targets[i], Endpoint: ep}
	res := send(c.api[i])
	a.End = time.Now()
	a.Status, a.Code, a.RetryAfter = res.Status, res.Code, res.RetryAfter
	if res.Err != nil {
		a.Detail = res.Err.Error()
	}
	c.rec.add(a)
	return a
}

func (c *client) checkout(i int, user string, item int64) (out loadgen.CheckoutAnswer, a answer) {
	a = c.do(i, loadgen.EndpointCheckout, func(api *loadgen.Client) (res loadgen.Response) {
		out, res = api.Checkout(context.Background(), user, item)
		return res
	})
	c.hist.add(histOp{User: user, Item: item, Answer: a, Checkout: out})
	return out, a
}

func (c *client) purchase(i int, code string) (out loadgen.PurchaseAnswer, a answer) {
	a = c.do(i, loadgen.EndpointPurchase, func(api *loadgen.Client) (res loadgen.Response) {
		out, res = api.Purchase(context.Background(), code)
		return res
	})
	c.hist.add(histOp{Purchase: true, Code: code, Answer: a, Result: out})
	return out, a
}

// ledger is what the service told the crowd, and the checkouts buyers
// raced against their own purchases.
type ledger struct {
	*loadgen.Ledger
	mu    sync.Mutex
	races []race
}

func newLedger() *ledger { return &ledger{Ledger: loadgen.NewLedger(0)} }

// race is a checkout a buyer sent while its purchase of cart was in flight,
// as a second tab or a double click does.
type race struct {
	cart string
	item int64
	out  loadgen.CheckoutAnswer
	a    answer
}

func (l *ledger) raced(r race) {
	l.mu.Lock()
	l.races = append(l.races, r)
	l.mu.Unlock()
}

// checkedOut notes a checkout's answer.
func (l *ledger) checkedOut(item int64, out loadgen.CheckoutAnswer, a answer) {
	l.CheckedOut(item, out, loadgen.Response{Status: a.Status, Code: a.Code})
}

// newPool returns the n items of sale saleID, all believed unsold.
func newPool(saleID int64, n int) *loadgen.ItemPool {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = saleID*1_000_000 + int64(i+1)
	}
	return loadgen.NewItemPool(ids)
}

// Flash-crowd behaviour, as cmd/loadgen's flash profile, and buyers who race
// their own purchases.
const (
	wantMax      = 14  // each buyer wants 1 to 14 items: above the limit of 10 for some
	doubleFire   = 0.1 // share of purchases fired twice at once
	raceShare    = 0.2 // share of purchases during which the buyer checks out one more item, through another instance when there are several
	buyAttempts  = 5   // tries of one purchase while the answers are retryable
	maxRetryWait = time.Second
)

// crowd is loadgen's flash crowd running against a sale through the
// recording client, each cart through an instance of its own.
type crowd struct {
	led     *ledger
	done    chan struct{}
	soldNow chan struct{} // poked when an item sells
}

// startCrowd releases users buyers at sale saleID of items items; the crowd
// stops when every item is sold, every buyer is done, or deadline elapses.
// A purchase is retried even after the crowd stopped: an acknowledgement
// lost to a fault is replayed by the next try. A buyer gives up after three
// purchases no 200 answered; an item a purchase could not sell went to
// another cart (or the user is at the limit): the crowd leaves it, the
// sweep finds whatever is really left.
func startCrowd(t *testing.T, c *client, led *ledger, saleID int64, items, users int, deadline time.Duration) *crowd {
	t.Helper()
	cr := &crowd{led: led, done: make(chan struct{}), soldNow: make(chan struct{}, 1)}
	seed := uint64(time.Now().UnixNano())
	t.Logf("crowd: %d buyers on sale %d of %d items over %d instance(s), seed %d", users, saleID, items, len(c.targets), seed)
	lc := loadgen.Crowd{
		Pool: newPool(saleID, items), Ledger: led.Ledger, Users: users, WantMax: wantMax, DoubleFire: doubleFire, Seed: seed,
		Dial:      func(rng *mrand.Rand) loadgen.Conn { return newConn(c, rng.IntN(len(c.targets))) },
		RaceShare: raceShare,
		Raced: func(cart string, item int64, out loadgen.CheckoutAnswer, res loadgen.Response) {
			led.raced(race{cart: cart, item: item, out: out, a: answer{Status: res.Status, Code: res.Code}})
		},
		PurchaseAttempts: buyAttempts, RetryAfterStop: true, MaxFailedBuys: 3, ForgetUnsold: true,
		Backoff: retryWait,
		Sold: func() {
			select {
			case cr.soldNow <- struct{}{}:
			default:
			}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	go func() {
		lc.Run(ctx)
		cancel()
		close(cr.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-cr.done
	})
	return cr
}

// wait waits until the crowd is done.
func (cr *crowd) wait() { <-cr.done }

// waitSold waits until purchases acknowledged n items sold, or the crowd is
// done; false in the latter case.
func (cr *crowd) waitSold(n int) bool {
	for cr.led.Sold() < n {
		select {
		case <-cr.done:
			return cr.led.Sold() >= n
		case <-cr.soldNow:
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}

// retryWait is how long to wait after a failed request: Retry-After, at
// most a second; a short pause otherwise.
func retryWait(a loadgen.Response) time.Duration {
	if a.RetryAfter > 0 {
		return min(a.RetryAfter, maxRetryWait)
	}
	switch a.Code {
	case loadgen.CodeTransport, loadgen.CodeTimeout:
		return 200 * time.Millisecond
	case "purchase_in_progress":
		return 50 * time.Millisecond
	}
	return 20 * time.Millisecond
}

// conn is the way of one buyer's cart to the service: the instance a load
// balancer chose, moved on when it does not answer. Its requests are not
// cut short when the crowd stops: one in flight at the deadline is answered
// and recorded.
type conn struct {
	c    *client
	home atomic.Int64
}

func newConn(c *client, home int) *conn {
	b := &conn{c: c}
	b.home.Store(int64(home))
	return b
}

func (b *conn) Checkout(_ context.Context, user string, item int64) (loadgen.CheckoutAnswer, loadgen.Response) {
	home := b.home.Load()
	out, a := b.c.checkout(int(home), user, item)
	b.failover(home, a)
	return out, a.response()
}

func (b *conn) Purchase(_ context.Context, code string) (loadgen.PurchaseAnswer, loadgen.Response) {
	home := b.home.Load()
	out, a := b.c.purchase(int(home), code)
	b.failover(home, a)
	return out, a.response()
}

// SecondTab is where a checkout raced against the cart's purchase goes: the
// next instance, as a second tab behind a load balancer.
func (b *conn) SecondTab() loadgen.Conn {
	return newConn(b.c, int(b.home.Load()+1)%len(b.c.targets))
}

func (b *conn) failover(home int64, a answer) {
	if a.Code == loadgen.CodeTransport || a.Code == loadgen.CodeTimeout {
		b.home.CompareAndSwap(home, (home+1)%int64(len(b.c.targets)))
	}
}

// raceFigures counts what the racing checkouts were answered.
type raceFigures struct {
	Tried, IntoCart, Lost, Unresolved, NewCart, Refused int
	Refusals                                            map[string]int // answer label -> count
}

func (r raceFigures) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.Refusals)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, r.Refusals[k]))
	}
	return fmt.Sprintf("%d tried; %d answered 200 with the code being purchased, of which %d lost (not in that purchase's result) and %d whose purchase no 200 answered; %d answered with a new code; %d refused or unanswered {%s}",
		r.Tried, r.IntoCart, r.Lost, r.Unresolved, r.NewCart, r.Refused, strings.Join(parts, ", "))
}

// raceFigures counts the racing checkouts' answers. Call with l.mu held.
func (l *ledger) raceFigures() raceFigures {
	f := raceFigures{Refusals: map[string]int{}}
	for _, r := range l.races {
		f.Tried++
		switch {
		case !r.a.ok():
			f.Refused++
			f.Refusals[r.a.label()]++
		case r.out.Code != r.cart:
			f.NewCart++
		default:
			f.IntoCart++
			if p, ok := l.Purchase(r.cart); !ok {
				f.Unresolved++
			} else if !p.Lists(r.item) {
				f.Lost++
			}
		}
	}
	return f
}

// sweep buys every item PostgreSQL says is unsold with fresh users, ten
// items each, through the service, until the sale is sold out or rounds run
// out. It shows that the service sells again after the fault.
func sweep(t *testing.T, c *client, led *ledger, db *sql.DB, saleID int64) {
	t.Helper()
	ctx := context.Background()
	var swept atomic.Int64
	for round := range 5 {
		var unsold []int64
		rows, err := db.QueryContext(ctx, `SELECT id FROM items WHERE sale_id = $1 AND NOT sold ORDER BY id`, saleID)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			unsold = append(unsold, id)
		}
		rows.Close()
		if len(unsold) == 0 {
			break
		}
		work := make(chan []int64)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				n := 0
				for chunk := range work {
					n++
					target := (w + n) % len(c.targets)
					user := fmt.Sprintf("sweep%d-%d-%d-%d", round, w, n, time.Now().UnixNano())
					sweepCart(c, led, target, user, chunk, &swept)
				}
			})
		}
		for i := 0; i < len(unsold); i += 10 {
			work <- unsold[i:min(i+10, len(unsold))]
		}
		close(work)
		wg.Wait()
	}
	t.Logf("sweep: %d items sold after the crowd", swept.Load())
}

func sweepCart(c *client, led *ledger, target int, user string, items []int64, swept *atomic.Int64) {
	code := ""
	for _, id := range items {
		for try := 0; try < 20; try++ {
			out, a := c.checkout(target, user, id)
			led.checkedOut(id, out, a)
			if a.ok() {
				code = out.Code
			}
			if !a.retryable() {
				break
			}
			time.Sleep(retryWait(a.response()))
		}
	}
	if code == "" {
		return
	}
	for try := 0; try < 20; try++ {
		out, a := c.purchase(target, code)
		if a.ok() {
			sold, _ := led.Purchased(code, out)
			swept.Add(int64(len(sold)))
			return
		}
		if !a.retryable() {
			return
		}
		time.Sleep(retryWait(a.response()))
	}
}

// checkSale checks the sale in PostgreSQL against the guarantees (the
// invariants and, when soldOut, every item sold) and against what the crowd
// was told, tolerating the answers a fault hid ([loadgen.Ledger.Check]).
// With a nil ledger only the invariants and the sell-out are checked.
func checkSale(t *testing.T, db *sql.DB, saleID int64, led *ledger, soldOut bool) {
	t.Helper()
	ctx := context.Background()
	rep, err := invariants.Check(ctx, db, saleID)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep.Violations {
		t.Errorf("invariant broken: %s", v)
	}
	if soldOut && rep.ItemsSold != rep.TotalItems {
		t.Errorf("%d of %d items sold: the service did not sell every item after the fault", rep.ItemsSold, rep.TotalItems)
	}
	if led == nil {
		t.Logf("sale %d: %d/%d sold, %d purchases by %d buyers", saleID, rep.ItemsSold, rep.TotalItems, rep.Purchases, rep.Buyers)
		return
	}

	check, err := led.Check(ctx, db, saleID, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range check.Problems {
		t.Error(p)
	}
	led.mu.Lock()
	t.Logf("racing checkouts (sent while the buyer's purchase of the cart was in flight): %s", led.raceFigures())
	led.mu.Unlock()
	t.Logf("sale %d: %d/%d sold, %d purchases by %d buyers; %s", saleID, rep.ItemsSold, rep.TotalItems, rep.Purchases, rep.Buyers, check)
}
