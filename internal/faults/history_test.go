package faults

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/flashsale/flashsale/internal/loadgen"
)

// The history check, as Jepsen-style testing does it: the client records
// every checkout and purchase it sends — invocation, answer and their times —
// and after the scenario every user's history is checked for
// linearizability (github.com/anishathalye/porcupine) against a small
// sequential model of one user's carts:
//
//   - a user has at most one open cart; a checkout answered 200 with code C
//     added the item to the open cart, whose code is C, or, when none was
//     open, opened a new cart C (a code never seen before) holding the item;
//     items_count is the number of items in the cart; already_in_cart means
//     the item is in the open cart;
//   - a purchase of C answered 200 closed the cart: its items are exactly the
//     items accepted into C (sold or failed: whether each sold is free, other
//     users compete for them); a later purchase of C replays that result;
//     a code issued to the user is never answered 404 code_not_found;
//   - an answer that does not say what happened (503 service_unavailable, a
//     timeout, no answer, 409 purchase_in_progress) may or may not have taken
//     effect: the model branches (porcupine's NondeterministicModel). When
//     the service answered 409, the effect happened before the answer; when
//     it did not answer, or answered 503 (which may leave work under way),
//     any time after the invocation. 503 overloaded and 429 rate_limited are
//     refusals: the request was shed before any work (docs/API.md, errors). A
//     checkout of unknown effect whose item no answer of the user mentions
//     again is checked as a refusal (trace.invisible says why that is sound).
//
// Users are independent, so the history is partitioned by user: a purchase
// belongs to the user whose checkout was answered with its code.

// history keeps the client's operations.
type history struct {
	base time.Time // times are kept relative to it, on the monotonic clock

	mu  sync.Mutex
	ops []histOp
}

func newHistory() *history { return &history{base: time.Now()} }

// histOp is one request and its answer.
type histOp struct {
	Purchase bool
	User     string // checkout: the user
	Item     int64  // checkout: the item
	Code     string // purchase: the code purchased
	Answer   answer
	Checkout loadgen.CheckoutAnswer // checkout answered 200
	Result   loadgen.PurchaseAnswer // purchase answered 200
}

func (h *history) add(op histOp) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func (h *history) all() []histOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// effect is what an answer says about a request's effect.
type effect int

const (
	effectDone  effect = iota // 200: it happened, before the answer
	effectNone                // a definite refusal: it did not happen
	effectMaybe               // it may or may not have happened
)

// cartInput is an operation of the model.
type cartInput struct {
	User     string
	Purchase bool
	Item     int64  // checkout
	Code     string // purchase
}

// cartOutput is an answer, as the model reads it.
type cartOutput struct {
	Effect effect
	Label  string  // the answer, for the visualisation
	Err    string  // the error code of a refusal
	Code   string  // checkout 200: the cart's code
	Count  int     // checkout 200: items_count
	Items  []int64 // purchase 200: the result's items, sorted
	Result string  // purchase 200: the result, canonical
}

// classify reads an answer: its effect, and whether it bounds when the
// effect happened (the service answered, and not with a 503 that may leave
// work under way).
func classify(a answer) (e effect, bounded bool) {
	switch {
	case a.ok():
		return effectDone, true
	case a.Status == 409 && a.Code == "purchase_in_progress":
		return effectMaybe, true
	case a.Status >= 400 && a.Status < 500, a.Status == 503 && a.Code == "overloaded":
		return effectNone, true
	}
	return effectMaybe, false
}

// canonicalResult is a purchase result whose replays must be the same.
func canonicalResult(p loadgen.PurchaseAnswer) (items []int64, result string) {
	its := slices.Clone(p.Items)
	slices.SortFunc(its, func(a, b loadgen.PurchasedItem) int { return cmp.Compare(a.ID, b.ID) })
	var b strings.Builder
	for i, it := range its {
		items = append(items, it.ID)
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(it.ID, 10))
		if it.Sold {
			b.WriteString("+")
		} else {
			b.WriteString("-")
		}
	}
	return items, fmt.Sprintf("%s; purchased %d, failed %d", b.String(), p.TotalPurchased, p.FailedCount)
}

// modelCart is one cart of the model.
type modelCart struct {
	Code      string  // "" while no answer named it (opened by an ambiguous checkout)
	Items     []int64 // sorted
	Purchased bool
	Result    string // the stored result, "" while no answer showed it
}

// userCarts is the model's state: a user's carts in the order they were
// opened. Every cart but the last is purchased; the last is the open cart
// unless it is purchased too. States are values: a step copies.
type userCarts struct {
	Carts []modelCart
}

func (s userCarts) open() int {
	if n := len(s.Carts); n > 0 && !s.Carts[n-1].Purchased {
		return n - 1
	}
	return -1
}

func (s userCarts) index(code string) int {
	return slices.IndexFunc(s.Carts, func(c modelCart) bool { return c.Code == code })
}

func (s userCarts) clone() userCarts {
	c := userCarts{Carts: slices.Clone(s.Carts)}
	for i := range c.Carts {
		c.Carts[i].Items = slices.Clone(c.Carts[i].Items)
	}
	return c
}

func (s userCarts) withItem(i int, item int64) userCarts {
	n := s.clone()
	items := append(n.Carts[i].Items, item)
	slices.Sort(items)
	n.Carts[i].Items = items
	return n
}

func (s userCarts) withCart(code string, item int64) userCarts {
	n := s.clone()
	n.Carts = append(n.Carts, modelCart{Code: code, Items: []int64{item}})
	return n
}

func (s userCarts) withPurchase(i int, result string) userCarts {
	n := s.clone()
	n.Carts[i].Purchased, n.Carts[i].Result = true, result
	return n
}

func (s userCarts) String() string {
	var parts []string
	for _, c := range s.Carts {
		code := c.Code
		if code == "" {
			code = "(unnamed)"
		}
		state := "open"
		if c.Purchased {
			state = "purchased"
			if c.Result != "" {
				state += " [" + c.Result + "]"
			}
		}
		parts = append(parts, fmt.Sprintf("%s %v %s", shortCode(code), c.Items, state))
	}
	return "{" + strings.Join(parts, "; ") + "}"
}

func shortCode(code string) string {
	if len(code) > 10 {
		return "…" + code[len(code)-8:]
	}
	return code
}

// step is the model: the states a user's carts may be in after op answered
// out, none when that answer is impossible.
func (s userCarts) step(in cartInput, out cartOutput) []userCarts {
	if in.Purchase {
		return s.stepPurchase(in.Code, out)
	}
	return s.stepCheckout(in.Item, out)
}

func (s userCarts) stepCheckout(item int64, out cartOutput) []userCarts {
	open := s.open()
	switch out.Effect {
	case effectMaybe:
		next := []userCarts{s}
		switch {
		case open < 0:
			next = append(next, s.withCart("", item))
		case !slices.Contains(s.Carts[open].Items, item):
			next = append(next, s.withItem(open, item))
		}
		return next
	case effectNone:
		if out.Err == "already_in_cart" && (open < 0 || !slices.Contains(s.Carts[open].Items, item)) {
			return nil
		}
		return []userCarts{s}
	}
	if open < 0 {
		if s.index(out.Code) >= 0 || out.Count != 1 {
			return nil // a code of a purchased cart, or a new cart of more than this item
		}
		return []userCarts{s.withCart(out.Code, item)}
	}
	c := s.Carts[open]
	switch {
	case c.Code == "" && s.index(out.Code) >= 0, c.Code != "" && c.Code != out.Code:
		return nil // not the open cart's code
	case slices.Contains(c.Items, item):
		return nil // already in the cart, yet accepted again
	case len(c.Items)+1 != out.Count:
		return nil
	}
	n := s.withItem(open, item)
	n.Carts[open].Code = out.Code
	return []userCarts{n}
}

func (s userCarts) stepPurchase(code string, out cartOutput) []userCarts {
	i := s.index(code)
	switch out.Effect {
	case effectMaybe:
		next := []userCarts{s}
		if i >= 0 && !s.Carts[i].Purchased {
			next = append(next, s.withPurchase(i, ""))
		}
		return next
	case effectNone:
		if out.Err == "code_not_found" {
			return nil // the code was issued to this user
		}
		return []userCarts{s}
	}
	if i < 0 {
		return nil
	}
	c := s.Carts[i]
	switch {
	case c.Purchased && c.Result != "":
		if out.Result != c.Result {
			return nil // a replay answered differently
		}
		return []userCarts{s}
	case !slices.Equal(c.Items, out.Items):
		return nil // not exactly the items accepted into the cart
	}
	return []userCarts{s.withPurchase(i, out.Result)}
}

// cartModel is the model for porcupine, one user per partition.
var cartModel = porcupine.NondeterministicModel{
	Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
		byUser := map[string][]porcupine.Operation{}
		var users []string
		for _, op := range ops {
			u := op.Input.(cartInput).User
			if byUser[u] == nil {
				users = append(users, u)
			}
			byUser[u] = append(byUser[u], op)
		}
		out := make([][]porcupine.Operation, 0, len(users))
		for _, u := range users {
			out = append(out, byUser[u])
		}
		return out
	},
	Init: func() []any { return []any{userCarts{}} },
	Step: func(state, input, output any) []any {
		next := state.(userCarts).step(input.(cartInput), output.(cartOutput))
		out := make([]any, len(next))
		for i, n := range next {
			out[i] = n
		}
		return out
	},
	Equal: func(a, b any) bool { return a.(userCarts).String() == b.(userCarts).String() },
	Hash: func(state any) uint64 {
		h := fnv.New64a()
		h.Write([]byte(state.(userCarts).String()))
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(cartInput), output.(cartOutput)
		if in.Purchase {
			return fmt.Sprintf("purchase %s → %s", shortCode(in.Code), out.Label)
		}
		return fmt.Sprintf("checkout %d → %s", in.Item, out.Label)
	},
	DescribeState: func(state any) string { return state.(userCarts).String() },
}

// operations turns the history into porcupine's operations, each with its
// user; purchases of codes no checkout answer named are left out (counted).
func (h *history) operations() (ops []porcupine.Operation, orphans int, problems []string) {
	all := h.all()
	owner := map[string]string{}
	for _, op := range all {
		if op.Purchase || !op.Answer.ok() {
			continue
		}
		code := op.Checkout.Code
		if u, ok := owner[code]; ok && u != op.User {
			if len(problems) < 5 {
				problems = append(problems, fmt.Sprintf("code %s was issued to users %s and %s", code, u, op.User))
			}
			continue
		}
		owner[code] = op.User
	}
	seen := traces(all, owner)
	for _, op := range all {
		in := cartInput{User: op.User, Purchase: op.Purchase, Item: op.Item, Code: op.Code}
		if op.Purchase {
			u, ok := owner[op.Code]
			if !ok {
				orphans++
				continue
			}
			in.User = u
		}
		e, bounded := classify(op.Answer)
		out := cartOutput{Effect: e, Label: op.Answer.label()}
		if e == effectMaybe && !op.Purchase && seen[in.User].invisible(op.Item) {
			e, bounded, out.Effect = effectNone, true, effectNone
			out.Label += " (no trace: no effect)"
		}
		switch {
		case e == effectNone:
			out.Err = op.Answer.Code
		case e == effectDone && op.Purchase:
			out.Items, out.Result = canonicalResult(op.Result)
			out.Label = "200 [" + out.Result + "]"
		case e == effectDone:
			out.Code, out.Count = op.Checkout.Code, op.Checkout.ItemsCount
			out.Label = fmt.Sprintf("200 %s (%d items)", shortCode(out.Code), out.Count)
		}
		ret := int64(math.MaxInt64)
		if bounded {
			ret = op.Answer.End.Sub(h.base).Nanoseconds()
		}
		ops = append(ops, porcupine.Operation{
			Input: in, Output: out,
			Call: op.Answer.Start.Sub(h.base).Nanoseconds(), Return: ret,
			Metadata: fmt.Sprintf("%s, answered after %s", op.Answer.Target, op.Answer.End.Sub(op.Answer.Start).Round(time.Millisecond)),
		})
	}
	return ops, orphans, problems
}

// trace is what a user's answers show of the items in their carts.
type trace struct {
	items map[int64]bool // in a purchase answered 200, or answered already_in_cart
	open  bool           // a code a checkout was answered with has no purchase answered 200
}

// invisible reports whether a checkout of item of unknown effect left no
// trace in the user's answers: the item is in no purchase result and was
// never answered already_in_cart, and every cart a checkout named was
// purchased with a 200. Had it added the item to a cart, that cart would
// be named by a later answer and its purchase would list the item; so the
// only states it can have led to are ones no answer tells apart from no
// effect. Checking it as a refusal keeps the search small: without this,
// every such request (a user meets dozens while PostgreSQL is down) could
// take effect at any later point, and the check's work grows exponentially
// with their number.
func (t *trace) invisible(item int64) bool { return t == nil || !t.open && !t.items[item] }

// traces gathers each user's trace.
func traces(ops []histOp, owner map[string]string) map[string]*trace {
	out := map[string]*trace{}
	get := func(user string) *trace {
		if out[user] == nil {
			out[user] = &trace{items: map[int64]bool{}}
		}
		return out[user]
	}
	purchased := map[string]bool{}
	for _, op := range ops {
		switch {
		case op.Purchase && op.Answer.ok():
			purchased[op.Code] = true
			if u, ok := owner[op.Code]; ok {
				for _, it := range op.Result.Items {
					get(u).items[it.ID] = true
				}
			}
		case !op.Purchase && op.Answer.Code == "already_in_cart":
			get(op.User).items[op.Item] = true
		}
	}
	for code, u := range owner {
		if !purchased[code] {
			get(u).open = true
		}
	}
	return out
}

// lanes gives each operation of one user a client lane of the
// visualisation, so that concurrent ones (a double-fired purchase, a racing
// checkout) are drawn side by side.
func lanes(ops []porcupine.Operation) {
	slices.SortStableFunc(ops, func(a, b porcupine.Operation) int {
		switch {
		case a.Call < b.Call:
			return -1
		case a.Call > b.Call:
			return 1
		}
		return 0
	})
	var busyUntil []int64
	for i := range ops {
		lane := slices.IndexFunc(busyUntil, func(t int64) bool { return t < ops[i].Call })
		if lane < 0 {
			lane = len(busyUntil)
			busyUntil = append(busyUntil, 0)
		}
		busyUntil[lane] = ops[i].Return
		ops[i].ClientId = lane
	}
}

// describeOps lists one user's operations, one a line, in the order they
// were sent, with their times since the first.
func describeOps(ops []porcupine.Operation) string {
	var b strings.Builder
	first := ops[0].Call
	for _, op := range ops {
		end := "…"
		if op.Return != math.MaxInt64 {
			end = time.Duration(op.Return - first).Round(time.Microsecond).String()
		}
		fmt.Fprintf(&b, "  %s–%s %s (%s)\n", time.Duration(op.Call-first).Round(time.Microsecond), end,
			cartModel.DescribeOperation(op.Input, op.Output), op.Metadata)
	}
	return b.String()
}

// Checking is NP-hard: a user's history with many requests of unknown
// effect can take long to decide, mostly when it is not linearizable.
// historyTimeout bounds the check of one user's history and historyBudget
// the whole check (past it, each user gets historyTail); a user whose check
// times out is reported as undecided, not failed.
const (
	historyTimeout = 5 * time.Second
	historyBudget  = time.Minute
	historyTail    = 100 * time.Millisecond
)

// checkHistory checks every user's history for linearizability and fails
// the test when one is not, writing porcupine's visualisation of the first
// failing users to an HTML file (under FLASHSALE_FAULTS_LOGDIR when set)
// whose path it logs.
func checkHistory(t *testing.T, h *history) {
	t.Helper()
	ops, orphans, problems := h.operations()
	for _, p := range problems {
		t.Errorf("history: %s", p)
	}
	model := cartModel.ToModel()
	start := time.Now()
	parts := model.Partition(ops)
	var illegal [][]porcupine.Operation
	var undecided []string
	for _, part := range parts {
		timeout := historyTimeout
		if time.Since(start) > historyBudget {
			timeout = historyTail
		}
		switch porcupine.CheckOperationsTimeout(model, part, timeout) {
		case porcupine.Illegal:
			illegal = append(illegal, part)
		case porcupine.Unknown:
			undecided = append(undecided, part[0].Input.(cartInput).User)
		}
	}
	verdict := "linearizable"
	if len(illegal) > 0 {
		verdict = fmt.Sprintf("NOT linearizable for %d users", len(illegal))
	}
	t.Logf("history: %d operations of %d users checked in %s: %s; %d users undecided within the time given %v; %d purchases of codes no answer named left out",
		len(ops), len(parts), time.Since(start).Round(time.Millisecond), verdict, len(undecided), undecided[:min(len(undecided), 5)], orphans)
	if len(illegal) == 0 {
		return
	}
	var shown []porcupine.Operation
	var users []string
	for _, part := range illegal[:min(len(illegal), 10)] {
		lanes(part)
		shown = append(shown, part...)
		users = append(users, part[0].Input.(cartInput).User)
	}
	t.Errorf("history: %d users' histories are not linearizable against the cart model, among them %s; the first:\n%s",
		len(illegal), strings.Join(users, ", "), describeOps(illegal[0]))
	_, info := porcupine.CheckOperationsVerbose(model, shown, historyTimeout)
	dir := os.Getenv("FLASHSALE_FAULTS_LOGDIR")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "flashsale-history-"); err != nil {
			t.Log(err)
			return
		}
	}
	path := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-history.html")
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		t.Logf("history visualisation: %v", err)
		return
	}
	t.Logf("history: the visualisation of %d of these users' histories is in %s", len(users), path)
}

// TestCartModel checks the model on small histories of one user: what a
// correct service may answer is linearizable, the answers of a lost racing
// checkout, of a replay that differs and of a 404 for an issued code are
// not.
func TestCartModel(t *testing.T) {
	base := time.Now()
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	ok := answer{Status: 200}
	checkout := func(from, to int, item int64, a answer, code string, n int) histOp {
		a.Start, a.End = at(from), at(to)
		return histOp{User: "u", Item: item, Answer: a, Checkout: loadgen.CheckoutAnswer{Code: code, ItemsCount: n}}
	}
	purchase := func(from, to int, code string, a answer, items ...int64) histOp {
		a.Start, a.End = at(from), at(to)
		p := loadgen.PurchaseAnswer{}
		for _, id := range items {
			p.Items = append(p.Items, loadgen.PurchasedItem{ID: id, Sold: id%2 == 1})
			if id%2 == 1 {
				p.TotalPurchased++
			} else {
				p.FailedCount++
			}
		}
		p.Success = p.TotalPurchased > 0
		return histOp{Purchase: true, Code: code, Answer: a, Result: p}
	}
	unavailable := answer{Status: 503, Code: "service_unavailable"}
	for _, tc := range []struct {
		name string
		ops  []histOp
		want bool
	}{
		{"one cart filled and purchased, then a new cart", []histOp{
			checkout(0, 1, 1, ok, "A", 1), checkout(2, 3, 2, ok, "A", 2), purchase(4, 5, "A", ok, 1, 2),
			checkout(6, 7, 3, ok, "B", 1),
		}, true},
		{"a racing checkout lands in the cart before its purchase", []histOp{
			checkout(0, 1, 1, ok, "A", 1), purchase(2, 6, "A", ok, 1, 2), checkout(2, 5, 2, ok, "A", 2),
		}, true},
		{"a racing checkout lands after the purchase, in a new cart", []histOp{
			checkout(0, 1, 1, ok, "A", 1), purchase(2, 6, "A", ok, 1), checkout(2, 5, 2, ok, "B", 1),
		}, true},
		{"a racing checkout answered with the purchased code is missing from its result", []histOp{
			checkout(0, 1, 1, ok, "A", 1), purchase(2, 6, "A", ok, 1), checkout(2, 5, 2, ok, "A", 2),
		}, false},
		{"a double-fired purchase and its replay answer the same", []histOp{
			checkout(0, 1, 1, ok, "A", 1), purchase(2, 4, "A", ok, 1),
			purchase(2, 5, "A", answer{Status: 409, Code: "purchase_in_progress"}), purchase(6, 7, "A", ok, 1),
		}, true},
		{"a replay answers differently", []histOp{
			checkout(0, 1, 1, ok, "A", 1), checkout(2, 3, 2, ok, "A", 2), purchase(4, 5, "A", ok, 1, 2), purchase(6, 7, "A", ok, 1),
		}, false},
		{"a 503 checkout may have added its item", []histOp{
			checkout(0, 1, 1, ok, "A", 1), checkout(2, 3, 2, unavailable, "", 0), purchase(4, 5, "A", ok, 1, 2),
		}, true},
		{"a 503 checkout may have added nothing", []histOp{
			checkout(0, 1, 1, ok, "A", 1), checkout(2, 3, 2, unavailable, "", 0), purchase(4, 5, "A", ok, 1),
		}, true},
		{"a 503 checkout may have opened the cart a later checkout names", []histOp{
			checkout(0, 1, 1, unavailable, "", 0), checkout(2, 3, 2, ok, "A", 2), purchase(4, 5, "A", ok, 1, 2),
		}, true},
		{"a 503 checkout counted in a cart not purchased yet", []histOp{
			checkout(0, 1, 1, ok, "A", 1), checkout(2, 3, 2, unavailable, "", 0), checkout(4, 5, 3, ok, "A", 3),
		}, true},
		{"a 503 checkout counted, but not in the purchase", []histOp{
			checkout(0, 1, 1, ok, "A", 1), checkout(2, 3, 2, unavailable, "", 0), checkout(4, 5, 3, ok, "A", 3), purchase(6, 7, "A", ok, 1, 3),
		}, false},
		{"a timed-out purchase may have happened, and its replay shows it", []histOp{
			checkout(0, 1, 1, ok, "A", 1), purchase(2, 3, "A", answer{Code: loadgen.CodeTimeout}),
			checkout(4, 5, 2, ok, "B", 1), purchase(6, 7, "A", ok, 1),
		}, true},
		{"a checkout accepted twice into one cart", []histOp{
			checkout(0, 1, 1, ok, "A", 1), checkout(2, 3, 1, ok, "A", 2),
		}, false},
		{"already_in_cart for an item not in the open cart", []histOp{
			checkout(0, 1, 1, ok, "A", 1), purchase(2, 3, "A", ok, 1), checkout(4, 5, 1, answer{Status: 409, Code: "already_in_cart"}, "", 0),
		}, false},
		{"a second open cart", []histOp{
			checkout(0, 1, 1, ok, "A", 1), checkout(2, 3, 2, ok, "B", 1),
		}, false},
		{"an issued code answered 404", []histOp{
			checkout(0, 1, 1, ok, "A", 1), purchase(2, 3, "A", answer{Status: 404, Code: "code_not_found"}),
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &history{base: base, ops: tc.ops}
			ops, orphans, problems := h.operations()
			if orphans > 0 || len(problems) > 0 {
				t.Fatalf("operations: %d orphans, %q", orphans, problems)
			}
			model := cartModel.ToModel()
			if got := porcupine.CheckOperations(model, ops); got != tc.want {
				t.Errorf("linearizable = %v, want %v", got, tc.want)
			}
		})
	}
}
