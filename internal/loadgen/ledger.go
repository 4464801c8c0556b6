package loadgen

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"slices"
	"sync"
)

// Ledger keeps what the service told its buyers: the checkouts it answered,
// the carts it accepted items into, and its 200 purchases. It checks what a
// client can see of the guarantees as answers come (a replay answers as the
// first purchase did, an answer is consistent, no item is reported sold to
// two carts, no more items are reported sold than the sale holds), and
// [Ledger.Check] looks for all of it in PostgreSQL.
type Ledger struct {
	mu    sync.Mutex
	total int // the sale's items; 0: unknown
	// mustRows counts checkouts answered 200 or with a domain error: each
	// has its attempt row. mayRows counts those whose fate the client cannot
	// know (no answer, 5xx): each may have one.
	mustRows, mayRows int
	accepted          map[string]map[int64]int  // code -> item -> 200 checkouts
	purchases         map[string]PurchaseAnswer // code -> its first 200 answer
	soldTo            map[int64]string          // item -> the code whose purchase sold it
	sold              int
	replays           int
	doubleFires       int
	violations        []string
}

// NewLedger returns an empty ledger of a sale of total items (0: unknown).
func NewLedger(total int) *Ledger {
	return &Ledger{total: total, accepted: map[string]map[int64]int{},
		purchases: map[string]PurchaseAnswer{}, soldTo: map[int64]string{}}
}

// maxViolations keeps a broken service from filling the report.
const maxViolations = 20

func (l *Ledger) violate(format string, args ...any) {
	if len(l.violations) < maxViolations {
		l.violations = append(l.violations, fmt.Sprintf(format, args...))
	}
}

func (l *Ledger) doubleFired() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.doubleFires++
}

// CheckedOut notes the answer to a checkout of item.
func (l *Ledger) CheckedOut(item int64, a CheckoutAnswer, res Response) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case res.OK():
		l.mustRows++
		if l.accepted[a.Code] == nil {
			l.accepted[a.Code] = map[int64]int{}
		}
		l.accepted[a.Code][item]++
	case res.Status == http.StatusTooManyRequests:
		// Rate-limited checkouts are not passed to the service: no row.
	case res.Status >= 400 && res.Status < 500:
		l.mustRows++
	default:
		l.mayRows++
	}
}

// Purchased notes a 200 answer to a purchase of code and returns the items
// it sold and those it failed to sell; none when it replays an earlier
// answer, which must then be the same.
func (l *Ledger) Purchased(code string, a PurchaseAnswer) (sold, failed []int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.purchases[code]; ok {
		l.replays++
		if fmt.Sprint(prev) != fmt.Sprint(a) {
			l.violate("purchase of code %s answered differently on replay: %+v, then %+v", code, prev, a)
		}
		return nil, nil
	}
	l.purchases[code] = a
	listed := 0
	for _, it := range a.Items {
		if !it.Sold {
			failed = append(failed, it.ID)
			continue
		}
		listed++
		if other, ok := l.soldTo[it.ID]; ok {
			l.violate("item %d reported sold to two carts: %s and %s", it.ID, other, code)
			continue
		}
		l.soldTo[it.ID] = code
		sold = append(sold, it.ID)
	}
	if listed != a.TotalPurchased || a.TotalPurchased+a.FailedCount != len(a.Items) || a.Success != (a.TotalPurchased > 0) {
		l.violate("inconsistent purchase answer for code %s: %+v", code, a)
	}
	if l.sold += len(sold); l.total > 0 && l.sold > l.total && len(sold) > 0 {
		l.violate("purchases reported %d items sold of a sale of %d", l.sold, l.total)
	}
	return sold, failed
}

// Sold returns how many items 200 purchases reported sold.
func (l *Ledger) Sold() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sold
}

// Purchase returns the first 200 answer to a purchase of code.
func (l *Ledger) Purchase(code string) (PurchaseAnswer, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.purchases[code]
	return p, ok
}

// Carts returns the codes of the carts items were accepted into.
func (l *Ledger) Carts() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	codes := make([]string, 0, len(l.accepted))
	for code := range l.accepted {
		codes = append(codes, code)
	}
	return codes
}

// state returns the items purchases reported sold, the double fires and the
// violations seen.
func (l *Ledger) state() (sold, doubleFires int, violations []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sold, l.doubleFires, slices.Clone(l.violations)
}

// LedgerCheck is what [Ledger.Check] found.
type LedgerCheck struct {
	Problems []string // what PostgreSQL or the answers contradict; none when the guarantees hold
	// Rows counts the sale's checkout attempt rows; MustRows of them are
	// certain, MayRows more are possible.
	Rows, MustRows, MayRows int
	Carts                   int // carts items were accepted into
	Purchases, Replays      int // 200 purchases, and 200 replays of them
	Acked                   int // items 200 purchases reported sold
	Unacked                 int // items sold in PostgreSQL that no 200 purchase reported
}

func (c LedgerCheck) String() string {
	return fmt.Sprintf("%d carts, %d purchases (+%d replays); %d items acknowledged sold, %d committed without an acknowledgement the client kept; %d checkout rows (%d answered, %d unknown)",
		c.Carts, c.Purchases, c.Replays, c.Acked, c.Unacked, c.Rows, c.MustRows, c.MayRows)
}

// maxPerKind bounds the problems of one kind a check lists.
const maxPerKind = 5

// Check looks for what the buyers were told in the sale's rows in the
// database db: every checkout answered has its attempt row; every accepted
// checkout its accepted row in that cart; every item accepted into a
// purchased cart is listed in its purchase's answer; every purchased cart is
// stored with the items its answer reported sold, each a purchase of that
// cart. With exact, nothing was hidden from the buyers (no fault lost an
// answer): the accepted rows are exactly the accepted checkouts, and every
// item sold was acknowledged. It only reads.
func (l *Ledger) Check(ctx context.Context, db *sql.DB, saleID int64, exact bool) (LedgerCheck, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := LedgerCheck{MustRows: l.mustRows, MayRows: l.mayRows, Carts: len(l.accepted), Purchases: len(l.purchases), Replays: l.replays}
	counts := map[string]int{}
	problem := func(kind, format string, args ...any) {
		if counts[kind]++; counts[kind] <= maxPerKind {
			c.Problems = append(c.Problems, fmt.Sprintf(format, args...))
		}
	}
	c.Problems = append(c.Problems, l.violations...)

	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM checkout_attempts WHERE sale_id = $1`, saleID).Scan(&c.Rows); err != nil {
		return c, err
	}
	if c.Rows < l.mustRows || c.Rows > l.mustRows+l.mayRows {
		problem("rows", "%d checkout attempt rows; %d checkouts answered must have one, %d more may", c.Rows, l.mustRows, l.mayRows)
	}

	accepted := map[string]map[int64]int{}
	if err := scanRows(ctx, db, `SELECT checkout_code, item_id, count(*) FROM checkout_attempts
		WHERE sale_id = $1 AND outcome = 'accepted' GROUP BY 1, 2`, saleID, func(scan func(...any) error) error {
		var code string
		var item int64
		var n int
		if err := scan(&code, &item, &n); err != nil {
			return err
		}
		if accepted[code] == nil {
			accepted[code] = map[int64]int{}
		}
		accepted[code][item] = n
		return nil
	}); err != nil {
		return c, err
	}
	for code, items := range l.accepted {
		p, purchased := l.purchases[code]
		for item, n := range items {
			if got := accepted[code][item]; got < n || exact && got != n {
				problem("accepted", "checkout of item %d into cart %s acknowledged %d times, %d accepted rows", item, code, n, got)
			}
			if purchased && !p.Lists(item) {
				problem("listed", "item %d was acknowledged into cart %s, and the purchase of %s does not list it (sold or failed): %+v", item, code, code, p)
			}
		}
	}

	soldTo := map[int64]string{}
	if err := scanRows(ctx, db, `SELECT item_id, checkout_code FROM purchases WHERE sale_id = $1`, saleID, func(scan func(...any) error) error {
		var item int64
		var code string
		err := scan(&item, &code)
		soldTo[item] = code
		return err
	}); err != nil {
		return c, err
	}
	stored := map[string]int{}
	if err := scanRows(ctx, db, `SELECT code, items_purchased FROM carts WHERE sale_id = $1 AND state = 'purchased'`, saleID, func(scan func(...any) error) error {
		var code string
		var n int
		err := scan(&code, &n)
		stored[code] = n
		return err
	}); err != nil {
		return c, err
	}
	for code, p := range l.purchases {
		if n, ok := stored[code]; !ok || n != p.TotalPurchased {
			problem("stored", "purchase of %s acknowledged with %d items; stored: %d (present: %v)", code, p.TotalPurchased, n, ok)
		}
		for _, it := range p.Items {
			if !it.Sold {
				continue
			}
			c.Acked++
			if got, ok := soldTo[it.ID]; !ok {
				problem("sold", "acknowledged sale of item %d (cart %s) is not in purchases", it.ID, code)
			} else if got != code {
				problem("sold", "item %d acknowledged sold to cart %s, recorded for %s", it.ID, code, got)
			}
		}
	}
	c.Unacked = len(soldTo) - c.Acked
	if exact && c.Unacked != 0 {
		problem("unacked", "%d items acknowledged sold, %d purchases", c.Acked, len(soldTo))
	}
	for kind, n := range counts {
		if n > maxPerKind {
			c.Problems = append(c.Problems, fmt.Sprintf("... %d problems of kind %q in all", n, kind))
		}
	}
	return c, nil
}

// scanRows runs query with arg and hands each row's Scan to row.
func scanRows(ctx context.Context, db *sql.DB, query string, arg any, row func(scan func(...any) error) error) error {
	rows, err := db.QueryContext(ctx, query, arg)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}
