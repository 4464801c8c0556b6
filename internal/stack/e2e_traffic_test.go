package stack

// Scripted traffic of the end-to-end test: a short flash sale driven through the public
// API only, with a tally of what was sent and answered to compare with the metrics.

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
)

// tally counts the API calls of the traffic and their answers, as the service's counters
// should: every POST /checkout that got an answer is one checkout attempt and exactly one
// success (200) or failure (the error code); every POST /purchase likewise, a 200 that
// bought nothing being the failure "nothing_available".
type tally struct {
	mu              sync.Mutex
	checkouts       int
	checkoutSuccess int
	checkoutFailure map[string]int
	purchases       int
	purchaseSuccess int
	purchaseFailure map[string]int
	errs            []string // transport errors and unexpected answers
}

func newTally() *tally {
	return &tally{checkoutFailure: map[string]int{}, purchaseFailure: map[string]int{}}
}

func (t *tally) fail(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.errs) < 20 {
		t.errs = append(t.errs, fmt.Sprintf(format, args...))
	}
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("checkouts %d (success %d, failures %s); purchases %d (success %d, failures %s)",
		t.checkouts, t.checkoutSuccess, fmtCounts(t.checkoutFailure), t.purchases, t.purchaseSuccess, fmtCounts(t.purchaseFailure))
}

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// apiClient calls the service's API and keeps the tally.
type apiClient struct {
	base  string
	hc    *http.Client
	tally *tally
}

func newAPIClient(base string) *apiClient {
	return &apiClient{
		base: base,
		hc: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
		},
		tally: newTally(),
	}
}

// do sends a request and returns the status and body; a transport error is status 0.
func (a *apiClient) do(method, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, a.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// getJSON GETs path and decodes a 200 answer into out.
func (a *apiClient) getJSON(path string, out any) error {
	status, body, err := a.do(http.MethodGet, path)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, status, body)
	}
	return json.Unmarshal(body, out)
}

type apiError struct {
	Error string `json:"error"`
}

// checkout sends POST /checkout?user_id=user&id=item and returns the answer's status,
// code (on 200) and error code (otherwise). Not tallied when tallied is false.
func (a *apiClient) checkoutRaw(user, item string, tallied bool) (status int, code, errCode string) {
	status, body, err := a.do(http.MethodPost, "/checkout?"+url.Values{"user_id": {user}, "id": {item}}.Encode())
	if err != nil {
		a.tally.fail("POST /checkout user=%q id=%q: %v", user, item, err)
		return 0, "", ""
	}
	if status == http.StatusOK {
		var ok struct {
			Code string `json:"code"`
		}
		if err := json.Unmarshal(body, &ok); err != nil || ok.Code == "" {
			a.tally.fail("POST /checkout: 200 with body %.200q", body)
		}
		code = ok.Code
	} else {
		var e apiError
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
			a.tally.fail("POST /checkout: %d with body %.200q", status, body)
		}
		errCode = e.Error
	}
	if tallied {
		a.tally.mu.Lock()
		a.tally.checkouts++
		if status == http.StatusOK {
			a.tally.checkoutSuccess++
		} else {
			a.tally.checkoutFailure[errCode]++
		}
		a.tally.mu.Unlock()
	}
	return status, code, errCode
}

func (a *apiClient) checkout(user string, item int64) (code string) {
	_, code, _ = a.checkoutRaw(user, fmt.Sprint(item), true)
	return code
}

// purchase sends POST /purchase?code=code, tallied.
func (a *apiClient) purchase(code string) {
	status, body, err := a.do(http.MethodPost, "/purchase?"+url.Values{"code": {code}}.Encode())
	if err != nil {
		a.tally.fail("POST /purchase: %v", err)
		return
	}
	reason := ""
	if status == http.StatusOK {
		var res struct {
			TotalPurchased *int `json:"total_purchased"`
		}
		if err := json.Unmarshal(body, &res); err != nil || res.TotalPurchased == nil {
			a.tally.fail("POST /purchase: 200 with body %.200q", body)
			return
		}
		if *res.TotalPurchased == 0 {
			reason = "nothing_available"
		}
	} else {
		var e apiError
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
			a.tally.fail("POST /purchase: %d with body %.200q", status, body)
		}
		reason = e.Error
	}
	a.tally.mu.Lock()
	defer a.tally.mu.Unlock()
	a.tally.purchases++
	if reason == "" {
		a.tally.purchaseSuccess++
	} else {
		a.tally.purchaseFailure[reason]++
	}
}

// items lists a sale's items page by page.
func (a *apiClient) items(saleID int64) ([]loadgen.Item, error) {
	const limit = 100
	var all []loadgen.Item
	for offset := 0; ; offset += limit {
		var page []loadgen.Item
		if err := a.getJSON(fmt.Sprintf("/sales/%d/items?offset=%d&limit=%d", saleID, offset, limit), &page); err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < limit {
			return all, nil
		}
	}
}

// unknownCode is a well-formed code of the sale that no cart has (code_not_found): the
// sale id, big-endian, and 16 random bytes, URL-safe base64 as the service makes them.
func unknownCode(saleID int64) string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:8], uint64(saleID))
	for i := 8; i < len(b); i++ {
		b[i] = byte(rand.IntN(256))
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Shape of the crowd.
const (
	crowdUsers   = 100
	crowdWorkers = 20
	userLimit    = 10 // the service's default USER_ITEM_LIMIT
)

// prelude runs, before the crowd and one request at a time, the answers that the crowd
// only gives by chance: already_in_cart, user_limit_reached, nothing_available and
// item_sold, each checked.
func prelude(t *testing.T, a *apiClient, ids []int64) {
	t.Helper()
	expect := func(what string, gotStatus int, gotCode, want string) {
		t.Helper()
		if gotCode != want || (want == "" && gotStatus != http.StatusOK) {
			t.Errorf("prelude: %s answered %d %q, want %q", what, gotStatus, gotCode, want)
		}
	}
	item := func(i int) string { return fmt.Sprint(ids[i]) }
	st, code, ec := a.checkoutRaw("e2e-limit", item(0), true)
	expect("first checkout", st, ec, "")
	st, _, ec = a.checkoutRaw("e2e-limit", item(0), true)
	expect("the same item again", st, ec, "already_in_cart")
	for i := 1; i < userLimit; i++ {
		st, _, ec = a.checkoutRaw("e2e-limit", item(i), true)
		expect(fmt.Sprintf("checkout %d of %d", i+1, userLimit), st, ec, "")
	}
	st, _, ec = a.checkoutRaw("e2e-limit", item(userLimit), true)
	expect("one item more than the limit", st, ec, "user_limit_reached")
	st, late, ec := a.checkoutRaw("e2e-late", item(0), true)
	expect("an item in another user's cart", st, ec, "")
	a.purchase(code) // sells items 0..limit-1
	a.purchase(late) // item 0 is gone: nothing_available
	st, _, ec = a.checkoutRaw("e2e-later", item(0), true)
	expect("a sold item", st, ec, "item_sold")
	a.tally.mu.Lock()
	defer a.tally.mu.Unlock()
	if a.tally.purchaseSuccess != 1 || a.tally.purchaseFailure["nothing_available"] != 1 {
		t.Errorf("prelude: purchases answered %d successes and failures %s, want 1 success and 1 nothing_available",
			a.tally.purchaseSuccess, fmtCounts(a.tally.purchaseFailure))
	}
}

// driveSale runs the prelude and the crowd on the sale, then sweeps what is left unsold with fresh users
// until the sale is sold out (or three sweeps have run). Every crowd user checks out 3-6
// random items (every tenth wants 13, more than the limit) and buys its cart; every
// fifth fires its purchase twice at once (the second may meet the first's lock: the
// purchase_in_progress answer and a contended lock), every seventh checks out its first
// item twice (already_in_cart), every eleventh buys its code again (a replay), and every
// ninth also sends malformed and unknown ids and codes.
func driveSale(t *testing.T, a *apiClient, s loadgen.Sale, items []loadgen.Item) {
	t.Helper()
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	prelude(t, a, ids)
	users := make(chan int)
	var wg sync.WaitGroup
	for range crowdWorkers {
		wg.Go(func() {
			for i := range users {
				crowdUser(a, s.ID, ids, i)
			}
		})
	}
	for i := range crowdUsers {
		users <- i
	}
	close(users)
	wg.Wait()
	t.Logf("prelude and crowd done: %s", a.tally)

	for round := 1; round <= 3; round++ {
		left, err := a.items(s.ID)
		if err != nil {
			t.Fatalf("list items for the sweep: %v", err)
		}
		var unsold []int64
		for _, it := range left {
			if !it.Sold {
				unsold = append(unsold, it.ID)
			}
		}
		if len(unsold) == 0 {
			break
		}
		t.Logf("sweep %d: %d items unsold", round, len(unsold))
		var swg sync.WaitGroup
		sem := make(chan struct{}, 5)
		for u := 0; len(unsold) > 0; u++ {
			n := min(userLimit, len(unsold))
			batch := unsold[:n]
			unsold = unsold[n:]
			user := fmt.Sprintf("e2e-sweep-%d-%03d", round, u)
			sem <- struct{}{}
			swg.Go(func() {
				defer func() { <-sem }()
				code := ""
				for _, id := range batch {
					if c := a.checkout(user, id); c != "" {
						code = c
					}
				}
				if code != "" {
					a.purchase(code)
				}
			})
		}
		swg.Wait()
	}
}

func crowdUser(a *apiClient, saleID int64, ids []int64, i int) {
	rng := rand.New(rand.NewPCG(uint64(i), 0xe2e))
	user := fmt.Sprintf("e2e-user-%03d", i)
	want := 3 + i%4
	if i%10 == 0 {
		want = userLimit + 3
	}
	code := ""
	for k, idx := range rng.Perm(len(ids))[:want] {
		if c := a.checkout(user, ids[idx]); c != "" {
			code = c
		}
		if i%7 == 0 && k == 0 {
			a.checkout(user, ids[idx]) // already_in_cart (or item_sold)
		}
	}
	if i%9 == 0 {
		a.checkoutRaw(strings.Repeat("u", 65), fmt.Sprint(ids[0]), true) // invalid_user_id
		a.checkoutRaw(user, "abc", true)                                 // invalid_item_id
		a.checkoutRaw(user, fmt.Sprint(saleID*1_000_000+999_999), true)  // item_not_found
		a.purchase("not-a-code")                                         // invalid_code
		a.purchase(unknownCode(saleID))                                  // code_not_found
	}
	if code == "" {
		return
	}
	if i%5 == 0 {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				<-start
				a.purchase(code)
			})
		}
		close(start)
		wg.Wait()
	} else {
		a.purchase(code)
	}
	if i%11 == 0 {
		a.purchase(code) // replay
	}
}
